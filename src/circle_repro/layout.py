"""File names inside a run folder, shared by the steps that write and read them, the working tree's folders
(data, runs, reports) and the repository's input paths."""

from collections.abc import Mapping
from pathlib import Path

WEIGHTS_FILENAME = "model.pth"  # state dict only, loadable with torch.load(weights_only=True)
INITIAL_WEIGHTS_FILENAME = "model_init.pth"  # the seeded weights before training: the untrained reference
TRAIN_RECORD_FILENAME = "train.json"  # resolved config, MLflow run id, timings
HISTORY_FILENAME = "history.csv"  # per-iteration training loss and batch s_p / s_n
EVALUATION_DIRNAME = "evaluation"  # the run folder's sub-folder of evaluation outputs, replaced as a whole
METRICS_FILENAME = "metrics.json"  # evaluation result of the run, with its identifiers and provenance
SCORES_FILENAME = "scores.json"  # the run's headline test metrics alone: the file `dvc metrics show` prints
SIMILARITIES_FILENAME = "similarities.npz"  # sampled test s_p / s_n for the report's figures
ROC_FILENAME = "roc.csv"  # far / tar / threshold of the sampled test similarities, for `dvc plots` (verification)
PER_QUERY_FILENAME = "per_query.npz"  # per test query / pair: `ids` plus one array per metric it averages to
EVALUATION_FILES = (METRICS_FILENAME, SCORES_FILENAME, SIMILARITIES_FILENAME, ROC_FILENAME, PER_QUERY_FILENAME)
"""What ``circle-repro evaluate`` writes into a run's evaluation folder; metrics.json holds the sha256 of its .npz files."""

MANIFEST_FILENAME = "manifest.parquet"  # a prepared data set's table of images (circle_repro.data.manifest)

CHECKPOINTS_KEPT = (
    2  # mmengine checkpoints a run keeps in work/: the newest, and the one before in case it is unreadable
)

SPREAD_SUFFIX = "_std"  # a metric named with it is the per-fold spread of another metric, not a result itself


def evaluation_dir(run_dir: str | Path) -> Path:
    """Where a run's evaluation outputs (:data:`EVALUATION_FILES`) live inside its run folder."""
    return Path(run_dir) / EVALUATION_DIRNAME


def run_dir_of(metrics_file: str | Path) -> Path:
    """The run folder of a run's metrics.json (the folder above its evaluation folder)."""
    return Path(metrics_file).parent.parent


def headline_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics a results table shows: every metric but the per-fold spreads, in evaluation order."""
    return {name: value for name, value in metrics.items() if not name.endswith(SPREAD_SUFFIX)}


# The working tree's folders, relative to the repository root (the workflow's working directory).
DATA_ROOT = Path("data")  # raw/<data set>/: downloaded or placed files; prepared/<data set>/: manifest and images
RAW_ROOT = DATA_ROOT / "raw"
PREPARED_ROOT = DATA_ROOT / "prepared"
RUNS_ROOT = Path("runs")  # runs/<experiment>/<loss>/seed<N>/: one run's weights, records and evaluation/
REPORT_DIR = Path("reports")  # report.md, report.html, results.csv, metrics.json, figures/


def raw_dir(data_root: str | Path, name: str) -> Path:
    """A data set's raw files under a data root (``data/raw/<name>`` for the default one)."""
    return Path(data_root) / RAW_ROOT.name / name


def prepared_dir(data_root: str | Path, name: str) -> Path:
    """A prepared data set under a data root (``data/prepared/<name>`` for the default one)."""
    return Path(data_root) / PREPARED_ROOT.name / name


# Inputs of the planner and of the Snakefile's resource estimates, relative to the repository root.
DEFAULT_THROUGHPUT = Path("benchmarks/results/train_throughput_cuda_h100_bf16.json")  # measured training img/s
DEFAULT_RATES = Path("benchmarks/job_rates.yaml")  # measured decode, preparation and metric rates

STEPS = ("prepare_data", "train", "evaluate")
"""The Snakefile's rules that make one run's result, in the order the DAG runs them (``report`` gathers them)."""

BENCHMARK_DIR = "logs/benchmarks"
TRAIN_BENCHMARK = BENCHMARK_DIR + "/train/{experiment}/{loss}/seed{seed}.tsv"
EVALUATE_BENCHMARK = BENCHMARK_DIR + "/evaluate/{experiment}/{loss}/seed{seed}.tsv"
DATA_BENCHMARK = BENCHMARK_DIR + "/data/{dataset}.tsv"
"""Where the rules' ``benchmark:`` directives write and the planner reads, relative to the workflow's working
directory (under logs/, so that the outputs stay git-ignored and ``make clean`` removes them)."""

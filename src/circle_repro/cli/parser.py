"""The argument parser of ``circle-repro``: its verbs, their options and help."""

from __future__ import annotations

import argparse
from pathlib import Path

from circle_repro import __version__
from circle_repro.cli import commands
from circle_repro.data.stamp import VERIFY_LEVELS
from circle_repro.layout import DATA_ROOT, DEFAULT_RATES, DEFAULT_THROUGHPUT, EVALUATION_DIRNAME, REPORT_DIR, STEPS


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _params_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    parser.add_argument(
        "--profile", default=None, help="profile of scale: demo, mini, paper (default: the params file's profile key)"
    )


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], got {text}")
    return value


def _tables(text: str) -> list[str]:
    from circle_repro.data.sources import TABLE_IDS

    tables = [f"table{item.strip().removeprefix('table')}" for item in text.split(",") if item.strip()]
    unknown = [table for table in tables if table not in TABLE_IDS]
    if not tables or unknown:
        raise argparse.ArgumentTypeError(f"expected paper table numbers 1-5 separated by commas, got {text!r}")
    return tables


def _verify_data_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verify-data", choices=VERIFY_LEVELS, default="sizes",
        help="check the prepared data against what was recorded when it was prepared, before starting: sizes "
        "(file count and sizes, default), full (also every file's sha256), none",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``circle-repro``."""
    parser = argparse.ArgumentParser(
        prog="circle-repro",
        description="The Circle Loss reproduction pipeline, one verb per step: data, train, evaluate, report. "
        "Run it from the repository root; make reproduce (snakemake --cores all) runs every step of params.yaml.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)

    validate = verbs.add_parser("validate", help="check params.yaml against its schema")
    validate.add_argument(
        "--stamp", type=Path, default=None,
        help="when valid, also write this file (its text depends on the params path only): a DVC stage's output "
        "that every other stage depends on, so that no stage's command line is built from unchecked params",
    )  # fmt: skip
    _params_arg(validate)
    validate.set_defaults(func=commands.validate)

    runs = verbs.add_parser("runs", help="list the run ids the params define")
    _params_arg(runs)
    runs.set_defaults(func=commands.runs)

    plan = verbs.add_parser(
        "plan",
        help="per paper table: preparation, training and evaluation hours, each job against its declared resources, disk, missing data",
    )
    plan.add_argument(
        "--throughput", type=Path, default=DEFAULT_THROUGHPUT,
        help="a benchmarks/train_throughput.py --out file: images/s per backbone on one GPU",
    )  # fmt: skip
    plan.add_argument(
        "--rates", type=Path, default=DEFAULT_RATES,
        help="measured CPU rates: decode and preparation images/s per core, metric speed (default: %(default)s)",
    )  # fmt: skip
    plan.add_argument("--data-root", type=Path, default=DATA_ROOT, help="holds raw/ and prepared/ (default: data)")
    plan.add_argument("--out", type=Path, default=None, help="also write the plan as JSON here")
    _params_arg(plan)
    plan.set_defaults(func=commands.plan)

    data = verbs.add_parser("data", help="data set steps").add_subparsers(dest="data_verb", required=True)
    fetch = data.add_parser(
        "fetch", help="download (or copy from the params' mirror) and verify a data set's raw files; nothing else"
    )
    fetch.add_argument("dataset")
    fetch.add_argument("--raw", type=Path, default=None, help="raw files folder (default: data/raw/<dataset>)")
    _params_arg(fetch)
    fetch.set_defaults(func=commands.data_fetch)
    prepare = data.add_parser("prepare", help="turn a data set's raw layout into a manifest")
    prepare.add_argument("dataset")
    prepare.add_argument("--out", type=Path, required=True, help="prepared data folder")
    prepare.add_argument("--raw", type=Path, default=None, help="raw files folder (default: data/raw/<dataset>)")
    _params_arg(prepare)
    prepare.set_defaults(func=commands.data_prepare)
    status = data.add_parser("status", help="show which data sets are missing, downloaded, verified or prepared")
    status.add_argument("--data-root", type=Path, default=DATA_ROOT, help="holds raw/ and prepared/ (default: data)")
    status.add_argument("--sources", type=Path, default=None, help="sources file (default: the package's sources.yaml)")
    status.set_defaults(func=commands.data_status)
    info = data.add_parser(
        "info", help="where a data set's raw files go and how to obtain them (no NAME: a table of every data set)"
    )
    info.add_argument("dataset", nargs="?", default=None, metavar="NAME", help="data set name, e.g. cub200")
    info.add_argument("--sources", type=Path, default=None, help="sources file (default: the package's sources.yaml)")
    info.set_defaults(func=commands.data_info)

    train = verbs.add_parser("train", help="train one run")
    train.add_argument("--run", required=True, help="run id: experiment/loss/seedN")
    train.add_argument("--data", type=Path, required=True, help="prepared data folder")
    train.add_argument("--out", type=Path, required=True, help="run folder")
    train.add_argument(
        "--prepared-root",
        type=Path,
        help="holds the prepared train.validation sets (default: the folder holding --data)",
    )
    train.add_argument(
        "--launcher",
        choices=("none", "pytorch", "slurm"),
        default="none",
        help="none: one process; pytorch: one rank of a torchrun launch; slurm: one task of an srun launch "
        "(data-parallel; the params' P x K batch is per rank; rank 0 writes the outputs)",
    )
    _verify_data_arg(train)
    _params_arg(train)
    train.set_defaults(func=commands.train)

    evaluate = verbs.add_parser("evaluate", help="evaluate one trained run")
    evaluate.add_argument("--run", required=True, help="run id: experiment/loss/seedN")
    evaluate.add_argument("--data", type=Path, required=True, help="prepared data folder")
    evaluate.add_argument(
        "--run-dir", type=Path, required=True, help="the folder of the run that trained the weights (model.pth)"
    )
    evaluate.add_argument(
        "--out",
        type=Path,
        help=f"the evaluation folder: metrics.json and the arrays, replaced as one (default: --run-dir/{EVALUATION_DIRNAME})",
    )
    evaluate.add_argument("--batch-size", type=_positive_int, help="images per embedding batch (default: 512)")
    evaluate.add_argument(
        "--cpus",
        type=_positive_int,
        default=1,
        help="CPUs of the job: one embedding loader worker per CPU beyond the first",
    )
    _verify_data_arg(evaluate)
    _params_arg(evaluate)
    evaluate.set_defaults(func=commands.evaluate)

    rehearse = verbs.add_parser(
        "rehearse",
        help="the paper DAG on synthetic data in the real raw formats at a fraction of the real sizes: each job's "
        "throughput, extrapolated to full scale against its declared resources",
    )
    rehearse.add_argument("--scale", type=_fraction, required=True, help="fraction F of each data set's real counts")
    rehearse.add_argument("--out", type=Path, default=None, help="a new folder (default: rehearsal/scale<F>)")
    rehearse.add_argument(
        "--tables", type=_tables, default=None, help="only these paper tables, e.g. 1,4 (default: every table)"
    )
    rehearse.add_argument("--iterations", type=_positive_int, default=2, help="iterations per training (default: 2)")
    rehearse.add_argument(
        "--max-p", type=_positive_int, default=None, help="at most this many classes per batch (default: the paper's P)"
    )
    rehearse.add_argument(
        "--every-run", action="store_true",
        help="every loss and the first seed of each experiment (default: one run per experiment)",
    )  # fmt: skip
    rehearse.add_argument(
        "--until", choices=STEPS, default=STEPS[-1],
        help="run the DAG up to this step (default: %(default)s); prepare_data sizes the CPU preparation jobs "
        "at a larger scale in minutes",
    )  # fmt: skip
    rehearse.add_argument("--throughput", type=Path, default=DEFAULT_THROUGHPUT, help="as for plan")
    rehearse.add_argument("--rates", type=Path, default=DEFAULT_RATES, help="as for plan")
    rehearse.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="params file whose paper profile is rehearsed"
    )
    rehearse.set_defaults(func=commands.rehearse)

    recipe_card = verbs.add_parser(
        "recipe-card", help="print each paper table's settings with their sources (paper, reference file, deviation)"
    )
    recipe_card.add_argument("--out", type=Path, default=None, help="write the Markdown here instead of printing it")
    recipe_card.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)"
    )
    recipe_card.add_argument("--profile", default="paper", help="profile whose experiments get cards (default: paper)")
    recipe_card.set_defaults(func=commands.recipe_card)

    report = verbs.add_parser(
        "report", help="build reports/ (md, html, results.csv) from the MLflow store, metrics files as the fallback"
    )
    report.add_argument(
        "metrics", nargs="*", type=Path, help="metrics.json files (default: every run the params define)"
    )
    report.add_argument("--out", type=Path, default=REPORT_DIR)
    report.add_argument(
        "--data-root", type=Path, default=DATA_ROOT, help="holds raw/ and prepared/: which data sets are on disk"
    )
    report.add_argument(
        "--throughput", type=Path, default=DEFAULT_THROUGHPUT,
        help="measured training throughput for the planned hours (a missing file: nothing estimated)",
    )  # fmt: skip
    report.add_argument(
        "--rates", type=Path, default=DEFAULT_RATES,
        help="measured CPU rates for the planned hours' data loading (a missing file: compute only)",
    )  # fmt: skip
    report.add_argument(
        "--benchmarks", type=Path, default=Path("."),
        help="the workflow's working directory: its logs/benchmarks/ holds the jobs' Snakemake benchmark files",
    )  # fmt: skip
    _params_arg(report)
    report.set_defaults(func=commands.report)

    summary = verbs.add_parser(
        "summary", help="print the headline results of a built report and where it is (the end of make reproduce)"
    )
    summary.add_argument("--reports", type=Path, default=REPORT_DIR, help="the report's folder (default: reports)")
    summary.set_defaults(func=commands.summary)
    return parser

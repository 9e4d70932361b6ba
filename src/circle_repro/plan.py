"""What a profile costs before it runs, and what it cost after: GPU-hours, disk and missing data per table.

Planned GPU-hours of an experiment = seeds x losses x (images one run trains on) / (measured images/s of
its backbone on one GPU). The images come from the ``train:`` schedule (``iterations``, or ``epochs`` x
iterations per epoch) times the P x K batch of each of its ``resources.gpus`` ranks; an epoch of a P x K
sampler is about (train images) / (P x K) batches per rank. The train-set size is the prepared manifest's
train split where the data set is prepared, else the count ``data/sources.yaml`` documents. The throughput
is a ``benchmarks/train_throughput.py --out`` file: forward + pair-wise loss + backward + optimizer step at
the benchmark's batch, so data loading and evaluation are not in the estimate. An experiment with
``trained_by`` trains nothing: its trainer's GPU-hours and checkpoints are counted once, at the trainer.

Disk: each data set's declared download size (``size_bytes`` of its required files in sources.yaml),
and per run the files training keeps: ``model_init.pth`` and ``model.pth`` (the state dict each) plus
``CHECKPOINTS_KEPT`` mmengine checkpoints (the state dict and the optimizer's per-parameter state).

Actual hours come from the Snakemake ``benchmark:`` files of the train, evaluate and prepare_data jobs
(``*_BENCHMARK`` below, the paths in ``workflow/rules/*.smk``), read where they lie, not as inputs of the
report job. A job that was killed and resubmitted keeps only its last attempt's file.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from circle_repro.config import RunSpec, expand_runs, experiment_datasets, train_config, train_dataset
from circle_repro.data.sources import Source, load_sources
from circle_repro.data.status import MANIFEST_NAME, dataset_status, format_size, prepared_dir, unavailable_reason
from circle_repro.io import write_json
from circle_repro.workflow import TABLES, train_resource_request

DEFAULT_THROUGHPUT = Path("benchmarks/results/train_throughput_cuda_h100_bf16.json")
"""The measured training throughput the plan uses unless told otherwise (relative to the working directory)."""
FIGURES = "figures"
"""The group of sweep experiments (Fig. 3), which fill no table."""
GROUPS = (*TABLES, FIGURES)

BENCHMARK_DIR = "logs/benchmarks"
TRAIN_BENCHMARK = BENCHMARK_DIR + "/train/{experiment}/{loss}/seed{seed}.tsv"
EVALUATE_BENCHMARK = BENCHMARK_DIR + "/evaluate/{experiment}/{loss}/seed{seed}.tsv"
DATA_BENCHMARK = BENCHMARK_DIR + "/data/{dataset}.tsv"
"""Where the rules' ``benchmark:`` directives write, relative to the workflow's working directory (under
logs/, so that the outputs stay git-ignored and ``make clean`` removes them)."""

CHECKPOINTS_KEPT = 2
"""mmengine checkpoints a run keeps (``max_keep_ckpts`` of the checkpoint hook in engine/train.py)."""
WEIGHT_FILES = 2
"""State-dict files a run keeps beside its checkpoints: model_init.pth and model.pth."""
OPTIMIZER_STATE_BYTES = 4
"""Bytes per element of the optimizer's state (float32, also under bf16/fp16 autocast)."""


# --- Inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """Measured training images/s per backbone on one GPU, and how they were measured."""

    source: str
    device: str
    amp: str
    batch: int
    images_per_s: dict[str, float]
    inputs: dict[str, tuple[int, ...]]


def load_throughput(path: str | Path) -> Throughput:
    """Read a ``benchmarks/train_throughput.py --out`` file; each backbone's rate is its mmengine loop's
    (what training runs) where measured, else the plain PyTorch loop's."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rates, inputs = {}, {}
        for result in data["results"]:
            measured = result["images_per_s"]
            rates[result["model"]] = float(measured.get("mmengine", measured["plain"]))
            inputs[result["model"]] = tuple(result["input"])
        return Throughput(str(path), data["device"], data["amp"], int(data["batch"]), rates, inputs)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: throughput file not found; run benchmarks/train_throughput.py --out") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a benchmarks/train_throughput.py result ({exc!r})") from None


def download_bytes(source: Source) -> int | None:
    """The declared size of a data set's required raw files (0 for one embedded in a Python package); None
    when a size is not declared, or the data set accepts alternative packagings (every file optional)."""
    if source.access == "embedded":
        return 0
    required = [file for file in source.files if not file.optional]
    if not required or any(file.size_bytes is None for file in required):
        return None
    return sum(file.size_bytes for file in required)  # type: ignore[misc]


def train_image_count(params: dict[str, Any], dataset: str, source: Source, data_root: Path | None) -> tuple[int | None, str]:
    """The train split's image count and where it was read: the prepared manifest, else sources.yaml's
    count (:attr:`Source.train_images`) unless params.yaml narrows the data set's classes."""
    manifest_dir = prepared_dir(data_root, dataset) if data_root is not None else None
    if manifest_dir is not None and (manifest_dir / MANIFEST_NAME).is_file():
        from circle_repro.data.manifest import read_manifest

        return len(read_manifest(manifest_dir, split="train")), f"{manifest_dir / MANIFEST_NAME}"
    if "train_classes" in params["datasets"].get(dataset, {}):
        unprepared = "no prepared manifest was looked for" if data_root is None else "it is not prepared"
        return None, f"params.yaml narrows {dataset}'s classes and {unprepared}"
    if source.train_images is None:
        return None, f"sources.yaml gives no train image count for {dataset}"
    return source.train_images, "sources.yaml"


def train_class_count(params: dict[str, Any], dataset: str, source: Source) -> int | None:
    """Training classes of a data set: params.yaml's ``train_classes``, else sources.yaml's count."""
    narrowed = params["datasets"].get(dataset, {}).get("train_classes")
    return len(narrowed) if narrowed is not None else source.train_classes


def training_input(dataset: str, probe: tuple[int, ...]) -> tuple[int, ...]:
    """The (channels, height, width) the data set's train transform makes of an image of ``probe`` size."""
    from PIL import Image

    from circle_repro.data.datasets import get_dataset
    from circle_repro.data.transforms import IMAGE_MODES, build_transform

    transform = get_dataset(dataset).transform
    image = Image.new(IMAGE_MODES[transform], (probe[2], probe[1]))
    return tuple(build_transform(transform, train=True)(image).shape)


@cache
def _state_bytes(model_json: str, optimizer_slots: int) -> tuple[int, int]:
    from mmengine.registry import MODELS

    from circle_repro.engine import registrations as _registrations  # noqa: F401  (registers EmbeddingModel)

    model = MODELS.build(json.loads(model_json))
    weights = sum(tensor.numel() * tensor.element_size() for tensor in model.state_dict().values())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return weights, optimizer_slots * trainable * OPTIMIZER_STATE_BYTES


def optimizer_slots(optimizer: dict[str, Any]) -> int:
    """Tensors of state the optimizer keeps per parameter: Adam/AdamW 2 (both moments), SGD 1 with momentum."""
    if optimizer["type"] in ("Adam", "AdamW"):
        return 2
    return 1 if optimizer.get("momentum", 0) > 0 else 0


def run_disk_bytes(params: dict[str, Any], run: RunSpec, num_classes: int) -> int:
    """Bytes one run keeps: ``WEIGHT_FILES`` state dicts + ``CHECKPOINTS_KEPT`` checkpoints (state dict +
    optimizer state), counted on the model built from the experiment's config as training builds it."""
    from circle_repro.engine.train import model_config

    config = train_config(params, run)
    model = model_config(config, num_classes, load_pretrained=False)
    weights, optimizer = _state_bytes(json.dumps(model, sort_keys=True), optimizer_slots(config["train"]["optimizer"]))
    return WEIGHT_FILES * weights + CHECKPOINTS_KEPT * (weights + optimizer)


# --- The plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentPlan:
    """One experiment's runs, schedule, estimated GPU-hours and checkpoint disk (None: not estimated)."""

    name: str
    group: str
    train_dataset: str
    trained_by: str | None
    backbone: str
    losses: tuple[str, ...]
    seeds: tuple[int, ...]
    runs: int
    gpus: int
    batch_per_gpu: int
    train_images: int | None
    train_images_from: str
    iterations_per_run: int | None
    images_per_run: int | None
    images_per_s: float | None
    gpu_hours_per_run: float | None
    gpu_hours: float | None
    runtime_limit_min: int
    checkpoint_bytes: int | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class DatasetPlan:
    """One data set a table needs: its state under the data root and why it is missing, if it is."""

    name: str
    title: str
    access: str
    state: str
    download_bytes: int | None
    on_disk_bytes: int
    missing: str | None


@dataclass(frozen=True)
class TablePlan:
    """One paper table (or the figures' sweeps) of a profile: its experiments, data and totals."""

    table: str
    experiments: tuple[ExperimentPlan, ...]
    datasets: tuple[DatasetPlan, ...]
    runs: int
    gpu_hours: float
    not_estimated: tuple[str, ...]
    data_bytes: int
    data_size_unknown: tuple[str, ...]
    checkpoint_bytes: int | None


@dataclass(frozen=True)
class Plan:
    """The cost of a profile, table by table."""

    profile: str
    throughput: Throughput | None
    tables: tuple[TablePlan, ...]

    @property
    def runs(self) -> int:
        return sum(table.runs for table in self.tables)

    @property
    def trained_runs(self) -> int:
        """Runs that train (the others evaluate a ``trained_by`` experiment's weights)."""
        return sum(e.runs for table in self.tables for e in table.experiments if e.trained_by is None)

    @property
    def gpu_hours(self) -> float:
        return sum(table.gpu_hours for table in self.tables)

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data, with the profile's totals."""
        return {"runs": self.runs, "trained_runs": self.trained_runs, "gpu_hours": round(self.gpu_hours, 4), **asdict(self)}


def experiment_group(spec: dict[str, Any]) -> str:
    """The table an experiment fills, or ``FIGURES`` for a sweep."""
    return FIGURES if "sweep" in spec else spec["table"]


def plan_experiment(
    params: dict[str, Any],
    name: str,
    throughput: Throughput | None,
    *,
    data_root: Path | None = None,
    sources: dict[str, Source] | None = None,
    checkpoints: bool = True,
) -> ExperimentPlan:
    """The plan of one experiment of ``params``; ``checkpoints=False`` skips building its models.

    An experiment with ``trained_by`` trains nothing: its GPU-hours and checkpoints are its trainer's.
    """
    sources = load_sources() if sources is None else sources
    spec = params["experiments"][name]
    dataset, train, backbone = train_dataset(spec), spec["train"], spec["model"]["backbone"]
    request = train_resource_request(params, name)
    gpus, batch = request["gpus"], spec["sampler"]["p"] * spec["sampler"]["k"]
    runs = [run for run in expand_runs(params) if run.experiment == name]
    images, images_from = train_image_count(params, dataset, sources[dataset], data_root)
    if images is not None and train.get("max_images") is not None:
        images = min(images, train["max_images"])
    common = dict(
        name=name, group=experiment_group(spec), train_dataset=dataset, trained_by=spec.get("trained_by"),
        backbone=backbone, losses=tuple(spec["losses"]),
        seeds=tuple(spec["seeds"]), runs=len(runs), gpus=gpus, batch_per_gpu=batch, train_images=images,
        train_images_from=images_from, runtime_limit_min=request["runtime_min"],
    )  # fmt: skip
    if "trained_by" in spec:
        note = f"evaluates the weights of {spec['trained_by']}: its GPU-hours and checkpoints are counted there"
        return ExperimentPlan(
            **common, iterations_per_run=None, images_per_run=None, images_per_s=None, gpu_hours_per_run=0.0,
            gpu_hours=0.0, checkpoint_bytes=0, notes=(note,),
        )  # fmt: skip

    notes: list[str] = []
    ranks = max(gpus, 1)
    if "iterations" in train:
        iterations: int | None = int(train["iterations"])
    elif images is not None:
        iterations = int(train["epochs"]) * (images // batch // ranks)
    else:
        iterations = None
        notes.append(f"train images unknown: {images_from}")
    images_per_run = iterations * batch * ranks if iterations is not None else None

    rate = throughput.images_per_s.get(backbone) if throughput is not None else None
    hours_per_run: float | None = None
    if gpus == 0:
        notes.append("trains on the CPU (resources.gpus 0): no GPU-hours")
        hours_per_run = 0.0
    elif throughput is None or rate is None:
        where = f" in {throughput.source}" if throughput is not None else " (no throughput file)"
        notes.append(f"no throughput measured for {backbone}{where}")
    elif images_per_run is not None:
        hours_per_run = images_per_run / rate / 3600
        measured = throughput.inputs[backbone]
        trains_at = training_input(dataset, measured)
        if trains_at != measured:
            shape = "x".join(map(str, measured))
            notes.append(f"throughput measured at {shape} input; trains at {'x'.join(map(str, trains_at))}")
        if train.get("amp", "none") != throughput.amp:
            notes.append(f"throughput measured with amp {throughput.amp}; trains with amp {train.get('amp', 'none')}")
        minutes = hours_per_run / ranks * 60
        if minutes > request["runtime_min"]:
            notes.append(f"estimated {minutes:.0f} min per run exceeds resources.runtime_min {request['runtime_min']}")

    checkpoint_bytes = None
    if checkpoints:
        classes = train_class_count(params, dataset, sources[dataset])
        if classes is None:
            notes.append(f"checkpoint size unknown: no training class count for {dataset}")
        else:
            checkpoint_bytes = sum(run_disk_bytes(params, run, classes) for run in runs)
    return ExperimentPlan(
        **common, iterations_per_run=iterations, images_per_run=images_per_run, images_per_s=rate,
        gpu_hours_per_run=hours_per_run, gpu_hours=hours_per_run * len(runs) if hours_per_run is not None else None,
        checkpoint_bytes=checkpoint_bytes, notes=tuple(notes),
    )  # fmt: skip


def plan_dataset(source: Source, data_root: Path) -> DatasetPlan:
    """A data set's state under ``data_root``, its download size and why it is missing (None: it is not)."""
    status = dataset_status(source, data_root)
    missing = unavailable_reason(source, data_root)
    if missing is None and status.state == "missing" and source.access == "download":
        size = download_bytes(source)
        missing = f"not downloaded: the prepare_data job fetches it ({format_size(size) if size else 'size not declared'})"
    return DatasetPlan(source.name, source.title, source.access, status.state, download_bytes(source), status.size_bytes, missing)


def make_plan(
    params: dict[str, Any],
    throughput: Throughput | None,
    data_root: str | Path = "data",
    *,
    sources: dict[str, Source] | None = None,
    checkpoints: bool = True,
) -> Plan:
    """The plan of every table of the params' profile (tables without an experiment included, empty)."""
    sources = load_sources() if sources is None else sources
    data_root = Path(data_root)
    experiments = [
        plan_experiment(params, name, throughput, data_root=data_root, sources=sources, checkpoints=checkpoints)
        for name in params["experiments"]
    ]
    tables = []
    for group in GROUPS:
        members = tuple(e for e in experiments if e.group == group)
        if group == FIGURES and not members:
            continue
        names = [d for e in members for d in experiment_datasets(params["experiments"][e.name])]
        datasets = tuple(plan_dataset(sources[name], data_root) for name in dict.fromkeys(names))
        disk = [e.checkpoint_bytes for e in members]
        tables.append(
            TablePlan(
                table=group,
                experiments=members,
                datasets=datasets,
                runs=sum(e.runs for e in members),
                gpu_hours=sum(e.gpu_hours for e in members if e.gpu_hours is not None),
                not_estimated=tuple(e.name for e in members if e.gpu_hours is None),
                data_bytes=sum(d.download_bytes for d in datasets if d.download_bytes is not None),
                data_size_unknown=tuple(d.name for d in datasets if d.download_bytes is None),
                checkpoint_bytes=None if None in disk else sum(disk),  # type: ignore[arg-type]
            )
        )
    return Plan(params["profile"], throughput, tuple(tables))


def write_plan(plan: Plan, path: str | Path) -> Path:
    """Write the plan as JSON, atomically."""
    write_json(path, plan.as_dict())
    return Path(path)


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _aligned(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [(indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths))).rstrip() for row in rows]


def _schedule(e: ExperimentPlan) -> str:
    if e.trained_by is not None:
        return f"trained by {e.trained_by}"
    if e.iterations_per_run is None:
        return "unknown"
    return f"{e.iterations_per_run:,} it x {e.batch_per_gpu}" + (f" x {e.gpus} GPU" if e.gpus else " on the CPU")


def format_plan(plan: Plan) -> str:
    """The plan as plain text: a header, then per table its runs, GPU-hours, disk and missing data."""
    runs = f"{plan.runs} runs"
    if plan.trained_runs != plan.runs:
        runs += f" ({plan.trained_runs} train; {plan.runs - plan.trained_runs} evaluate another experiment's weights)"
    lines = [f"Plan for profile {plan.profile}: {runs}, {plan.gpu_hours:.2f} GPU-hours estimated"]
    if plan.throughput is not None:
        t = plan.throughput
        lines.append(
            f"Throughput: {t.device}, amp {t.amp}, batch {t.batch} ({t.source}); compute only (forward, loss, "
            "backward, step): data loading and evaluation are not in the estimate."
        )
    else:
        lines.append("Throughput: none given: no GPU-hours estimated.")
    for table in plan.tables:
        lines.append("")
        if not table.experiments:
            lines.append(f"{table.table}: no experiment in profile {plan.profile}")
            continue
        gpu = f"{table.gpu_hours:.2f} GPU-hours"
        if table.not_estimated:
            gpu += f" + {len(table.not_estimated)} experiment(s) not estimated"
        data = format_size(table.data_bytes) if table.data_bytes or not table.data_size_unknown else ""
        if table.data_size_unknown:
            data += (" + " if data else "") + f"size not declared for {', '.join(table.data_size_unknown)}"
        ckpt = format_size(table.checkpoint_bytes) if table.checkpoint_bytes is not None else "unknown"
        lines.append(f"{table.table}: {table.runs} runs, {gpu}; disk: data download {data}, checkpoints {ckpt}")
        rows = [("experiment", "backbone", "runs", "GPUs", "schedule per run", "img/s/GPU", "GPU-h/run", "GPU-h", "checkpoints")]
        rows += [
            (
                e.name, e.backbone, str(e.runs), str(e.gpus) if e.trained_by is None else "-", _schedule(e),
                f"{e.images_per_s:,.0f}" if e.images_per_s is not None else "-",
                _hours(e.gpu_hours_per_run), _hours(e.gpu_hours),
                format_size(e.checkpoint_bytes) if e.checkpoint_bytes is not None else "-",
            )  # fmt: skip
            for e in table.experiments
        ]
        lines += _aligned(rows)
        for d in table.datasets:
            size = format_size(d.download_bytes) if d.download_bytes is not None else "size not declared"
            size = "nothing to download" if d.access == "embedded" else size
            state = f"{d.state}, {format_size(d.on_disk_bytes)} on disk" if d.on_disk_bytes else d.state
            lines.append(f"  data {d.name} ({d.access}, {size}): " + (f"MISSING: {d.missing}" if d.missing else state))
        lines += [f"  note {e.name}: {note}" for e in table.experiments for note in e.notes]
    return "\n".join(lines)


# --- Actual hours from Snakemake benchmark files --------------------------------------------------


@dataclass(frozen=True)
class Benchmark:
    """One Snakemake benchmark file: wall seconds (all its rows, i.e. repeats, summed) and peak RSS."""

    path: str
    seconds: float
    max_rss_mb: float | None


def read_benchmark(path: str | Path) -> Benchmark:
    """Parse a Snakemake benchmark TSV (columns ``s``, ``h:m:s``, ``max_rss``, ...; one row per repeat)."""
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no rows or no 's' column)")
    try:
        seconds = sum(float(row["s"]) for row in rows)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: column 's' holds a value that is not a number") from None
    rss = [_number(row.get("max_rss")) for row in rows]
    known = [value for value in rss if value is not None]
    return Benchmark(str(path), seconds, max(known) if known else None)


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class ActualHours:
    """What one table's jobs took, from their benchmark files (wall hours; GPU-hours = train wall x GPUs)."""

    table: str
    runs: int
    runs_measured: int
    train_hours: float
    train_gpu_hours: float
    evaluate_hours: float
    data_hours: float
    unreadable: tuple[str, ...]


def actual_hours(params: dict[str, Any], root: str | Path | None = ".") -> dict[str, ActualHours]:
    """Per table (and ``FIGURES``) of the params: the benchmark files under ``root`` of its runs' train and
    evaluate jobs and of its data sets' prepare_data jobs, summed (a data set several tables use counts in
    each). A run counts as measured once a file of its own jobs exists (a ``trained_by`` run has no train
    job); unreadable files are listed, not counted. ``root`` None: no file is looked for."""
    totals = {group: dict(runs=0, measured=0, train=0.0, gpu=0.0, evaluate=0.0, data=0.0) for group in GROUPS}
    unreadable: dict[str, list[str]] = {group: [] for group in GROUPS}

    def hours(pattern: str, group: str, **names: Any) -> float | None:
        path = Path(root, pattern.format(**names)) if root is not None else None
        if path is None or not path.is_file():
            return None
        try:
            return read_benchmark(path).seconds / 3600
        except (OSError, ValueError, UnicodeDecodeError):
            unreadable[group].append(str(path))
            return None

    for run in expand_runs(params):
        spec = params["experiments"][run.experiment]
        group, names = experiment_group(spec), dict(experiment=run.experiment, loss=run.loss, seed=run.seed)
        found = totals[group]
        found["runs"] += 1
        train = None if "trained_by" in spec else hours(TRAIN_BENCHMARK, group, **names)
        evaluate = hours(EVALUATE_BENCHMARK, group, **names)
        found["measured"] += train is not None or evaluate is not None
        found["train"] += train or 0.0
        found["gpu"] += (train or 0.0) * train_resource_request(params, run.experiment)["gpus"]
        found["evaluate"] += evaluate or 0.0
    for group in GROUPS:
        specs = [spec for spec in params["experiments"].values() if experiment_group(spec) == group]
        datasets = dict.fromkeys(name for spec in specs for name in experiment_datasets(spec))
        totals[group]["data"] = sum(hours(DATA_BENCHMARK, group, dataset=name) or 0.0 for name in datasets)
    return {
        group: ActualHours(
            group, int(t["runs"]), int(t["measured"]), t["train"], t["gpu"], t["evaluate"], t["data"], tuple(unreadable[group])
        )
        for group, t in totals.items()
        if t["runs"] or group != FIGURES
    }


@dataclass(frozen=True)
class PlannedVsActual:
    """One table's planned GPU-hours (over the experiments not in ``not_estimated``), the notes of its
    experiments' estimates, and its actual hours."""

    table: str
    planned_gpu_hours: float
    not_estimated: tuple[str, ...]
    notes: dict[str, str]
    actual: ActualHours


def planned_vs_actual(
    params: dict[str, Any],
    throughput: Throughput | None,
    benchmark_root: str | Path | None = ".",
    data_root: str | Path | None = None,
) -> list[PlannedVsActual]:
    """Per table of :func:`actual_hours`, the planned GPU-hours beside the actual ones (no models built)."""
    data_root = Path(data_root) if data_root is not None else None
    plans = [plan_experiment(params, name, throughput, data_root=data_root, checkpoints=False) for name in params["experiments"]]
    rows = []
    for table, actual in actual_hours(params, benchmark_root).items():
        members = [e for e in plans if e.group == table]
        rows.append(
            PlannedVsActual(
                table=table,
                planned_gpu_hours=sum(e.gpu_hours for e in members if e.gpu_hours is not None),
                not_estimated=tuple(e.name for e in members if e.gpu_hours is None),
                notes={e.name: "; ".join(e.notes) for e in members if e.notes},
                actual=actual,
            )
        )
    return rows


__all__ = [
    "BENCHMARK_DIR", "CHECKPOINTS_KEPT", "DATA_BENCHMARK", "DEFAULT_THROUGHPUT", "EVALUATE_BENCHMARK", "FIGURES", "GROUPS",
    "TRAIN_BENCHMARK", "ActualHours", "Benchmark", "DatasetPlan", "ExperimentPlan", "Plan", "PlannedVsActual",
    "TablePlan", "Throughput", "actual_hours", "download_bytes", "experiment_group", "format_plan", "load_throughput",
    "make_plan", "optimizer_slots", "plan_dataset", "plan_experiment", "planned_vs_actual", "read_benchmark",
    "run_disk_bytes", "train_class_count", "train_image_count", "training_input", "write_plan",
]

"""What the plan reads: measured GPU throughput, data set counts, transforms and the bytes a run keeps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from circle_repro.config import RunSpec, Study
from circle_repro.data.sources import Source
from circle_repro.layout import CHECKPOINTS_KEPT, MANIFEST_FILENAME, prepared_dir

WEIGHT_FILES = 2
"""State-dict files a run keeps beside its checkpoints: model_init.pth and model.pth."""
OPTIMIZER_STATE_BYTES = 4
"""Bytes per element of the optimizer's state (float32, also under bf16/fp16 autocast)."""


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
        raise FileNotFoundError(
            f"{path}: throughput file not found; run benchmarks/train_throughput.py --out"
        ) from None
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


def train_image_count(study: Study, dataset: str, source: Source, data_root: Path | None) -> tuple[int | None, str]:
    """The train split's image count and where it was read: the prepared manifest, else sources.yaml's
    count (:attr:`Source.train_images`) unless params.yaml narrows the data set's classes."""
    manifest_dir = prepared_dir(data_root, dataset) if data_root is not None else None
    if manifest_dir is not None and (manifest_dir / MANIFEST_FILENAME).is_file():
        from circle_repro.data.manifest import read_manifest

        return len(read_manifest(manifest_dir, split="train")), f"{manifest_dir / MANIFEST_FILENAME}"
    if "train_classes" in study.dataset_options(dataset):
        unprepared = "no prepared manifest was looked for" if data_root is None else "it is not prepared"
        return None, f"params.yaml narrows {dataset}'s classes and {unprepared}"
    if source.train_images is None:
        return None, f"sources.yaml gives no train image count for {dataset}"
    return source.train_images, "sources.yaml"


@dataclass(frozen=True)
class EvaluationCounts:
    """Images of a data set's test split, and how many of them are queries (probes); where counted."""

    images: int
    queries: int | None
    counted_from: str


def _documented_evaluation_counts(source: Source) -> tuple[int, int | None] | None:
    counts = source.expected_counts
    queries = counts.get("query_images", counts.get("probe_images"))
    for key in ("test_images", "bin_images", "frames"):
        if key in counts:
            return counts[key], None
    if "query_images" in counts and "gallery_images" in counts:
        return counts["query_images"] + counts["gallery_images"], queries
    if "distractor_images" in counts and "probe_images" in counts:
        return counts["distractor_images"] + counts["probe_images"], queries
    if "images" in counts and not source.training_only:
        return counts["images"], None
    return None


def evaluation_image_counts(dataset: str, source: Source, data_root: Path | None) -> EvaluationCounts | None:
    """The test split's images (and queries, from the ``role`` column or the documented query/probe
    count): the prepared manifest where it exists, else sources.yaml's counts; None where neither says."""
    manifest_dir = prepared_dir(data_root, dataset) if data_root is not None else None
    if manifest_dir is not None and (manifest_dir / MANIFEST_FILENAME).is_file():
        from circle_repro.data.manifest import read_manifest

        frame = read_manifest(manifest_dir, split="test")
        queries = int((frame["role"] == "query").sum()) if "role" in frame.columns else None
        return EvaluationCounts(len(frame), queries, str(manifest_dir / MANIFEST_FILENAME))
    documented = _documented_evaluation_counts(source)
    return None if documented is None else EvaluationCounts(*documented, "sources.yaml")


def preparation_image_count(source: Source) -> int | None:
    """Images a data set's preparation decodes, from sources.yaml: a verification pack's ``bin_images``,
    a video set's ``frames``, ``images``, else its train and test images together."""
    counts = source.expected_counts
    for key in ("bin_images", "frames", "images"):
        if key in counts:
            return counts[key]
    test = _documented_evaluation_counts(source)
    if source.train_images is None and test is None:
        return None
    return (source.train_images or 0) + (test[0] if test is not None else 0)


def train_class_count(study: Study, dataset: str, source: Source) -> int | None:
    """Training classes of a data set: params.yaml's ``train_classes``, else sources.yaml's count."""
    narrowed = study.dataset_options(dataset).get("train_classes")
    return len(narrowed) if narrowed is not None else source.train_classes


def training_input(dataset: str, probe: tuple[int, ...], image_size: list[int] | None = None) -> tuple[int, ...]:
    """The (channels, height, width) the data set's train transform (at ``model.image_size``, if set)
    makes of an image of ``probe`` size."""
    from PIL import Image

    from circle_repro.data.datasets import get_dataset
    from circle_repro.data.transforms import IMAGE_MODES, build_transform

    transform = get_dataset(dataset).transform
    image = Image.new(IMAGE_MODES[transform], (probe[2], probe[1]))
    return tuple(build_transform(transform, train=True, image_size=image_size)(image).shape)


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


def run_disk_bytes(study: Study, run: RunSpec, num_classes: int) -> int:
    """Bytes one run keeps: ``WEIGHT_FILES`` state dicts + ``CHECKPOINTS_KEPT`` checkpoints (state dict +
    optimizer state), counted on the model built from the experiment's config as training builds it."""
    from circle_repro.engine.runner_config import model_config

    config = study.train_config(run)
    model = model_config(config, num_classes, load_pretrained=False)
    weights, optimizer = _state_bytes(json.dumps(model, sort_keys=True), optimizer_slots(config["train"]["optimizer"]))
    return WEIGHT_FILES * weights + CHECKPOINTS_KEPT * (weights + optimizer)

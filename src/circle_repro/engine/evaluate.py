"""Evaluate one trained run on its data set's test split: the orchestrator.

Load the run's model (trained and initial weights), build an :data:`~circle_repro.engine.protocols.Embedder`
from it (the data set's test transform, uint8 batches through a DataLoader normalised on the model's
device, flip = horizontal flip of the input tensor), run the data set's protocol
(:mod:`circle_repro.engine.protocols`) on both, and write metrics.json, scores.json, per_query.npz,
similarities.npz and (verification) roc.csv atomically, before logging to the run's MLflow run.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mmengine.registry import MODELS
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as TF

from circle_repro.data.datasets import get_dataset
from circle_repro.data.image_decode import decode_image
from circle_repro.data.image_reader import ImageReader
from circle_repro.data.manifest import verify_prepared
from circle_repro.data.manifest_dataset import ManifestDataset
from circle_repro.data.transforms import IMAGE_MODES, PixelTransform, build_pixel_transform
from circle_repro.engine import registrations as _registrations  # noqa: F401
from circle_repro.engine.batch_transfer import NetworkInput
from circle_repro.engine.loader import LoaderSettings, process_loader_settings
from circle_repro.engine.model import EmbeddingModel
from circle_repro.engine.protocols import Embedder, ProtocolResult, TestSet, get_protocol
from circle_repro.engine.tracking import check_tracking_store, log_to_child_run, log_to_run
from circle_repro.evaluation.similarity import roc_points, sample_anchor_pairs, sample_pair_similarities
from circle_repro.generations import check_outputs_folder, file_digest, staged_outputs
from circle_repro.io import write_json
from circle_repro.layout import (
    EVALUATION_FILES,
    HISTORY_FILENAME,
    INITIAL_WEIGHTS_FILENAME,
    METRICS_FILENAME,
    PER_QUERY_FILENAME,
    ROC_FILENAME,
    SCORES_FILENAME,
    SIMILARITIES_FILENAME,
    TRAIN_RECORD_FILENAME,
    WEIGHTS_FILENAME,
    headline_metrics,
)
from circle_repro.progress import Progress
from circle_repro.records import MetricsRecord, TrainRecord

#: Keys of an ``evaluation:`` mapping that the orchestrator reads; the rest are the protocol's settings.
ORCHESTRATOR_KEYS = ("protocol",)
SIMILARITY_PAIRS = 20_000
SIMILARITY_ANCHORS = 5_000
EMBED_BATCH_SIZE = 512
"""Images per embedding batch unless told otherwise."""


class TrivialMetricWarning(UserWarning):
    """A metric is trivial for its test input (one class, all pairs matching): it says nothing of the model."""


class NonFiniteFeaturesError(ValueError):
    """A model gave NaN or infinite features: no metric can be computed from them."""


class NoUntrainedReferenceWarning(UserWarning):
    """The initial weights give no usable features, so a run has no untrained reference metrics."""


def load_trained_model(run_dir: str | Path, weights_file: str = WEIGHTS_FILENAME) -> EmbeddingModel:
    """Rebuild a run's model from its train record and load its weights (``weights_only=True``)."""
    run_dir = Path(run_dir)
    record = TrainRecord.read(run_dir / TRAIN_RECORD_FILENAME)
    model = MODELS.build(record.model)
    state = torch.load(run_dir / weights_file, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def _loader_settings(loader: LoaderSettings | None, model: torch.nn.Module) -> LoaderSettings:
    """``loader``, or (None) the settings of a process that uses all its CPUs to feed ``model``'s device."""
    return loader if loader is not None else process_loader_settings(next(model.parameters()).device)


@torch.no_grad()
def embed_split(
    model: EmbeddingModel, dataset: ManifestDataset, batch_size: int = 512, loader: LoaderSettings | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm embeddings and labels of every image of a dataset, in manifest order (``loader``: the
    DataLoader settings, default: from this process's CPUs)."""
    model.eval()
    device = next(model.parameters()).device
    settings = _loader_settings(loader, model).dataloader_kwargs()
    network_input = NetworkInput.of(dataset.pipeline)
    chunks = []
    with Progress("embedding", len(dataset)) as progress:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, **settings):
            chunks.append(model.embed(network_input(batch["inputs"], device)).cpu())
            progress.update(len(batch["inputs"]))
    return torch.cat(chunks).numpy(), dataset.labels


class _RowImages(Dataset):
    """The images of some manifest rows through a pipeline's pixel half (uint8), in row order."""

    def __init__(self, root: Path, paths: list[str], pipeline: PixelTransform, image_mode: str) -> None:
        self.images, self.pixels, self.image_mode = ImageReader(root, paths), pipeline.pixels, image_mode

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.pixels(decode_image(self.images.read(index), self.image_mode))


def model_embedder(
    model: torch.nn.Module,
    data_root: str | Path,
    transform: str,
    *,
    batch_size: int = EMBED_BATCH_SIZE,
    loader: LoaderSettings | None = None,
) -> Embedder:
    """An :data:`~circle_repro.engine.protocols.Embedder` of ``model`` on a prepared data set's images.

    Images go through the test version of ``transform`` (a key of ``data.transforms.TRANSFORMS``) for
    the model's ``backbone_name`` and ``image_size`` (when it has them), in uint8 batches of ``batch_size``
    through a DataLoader with ``loader``'s settings (default: from this process's CPUs), normalised on the
    model's device (:class:`~circle_repro.engine.batch_transfer.NetworkInput`); ``flip`` flips each input tensor horizontally (torchvision). Features are the
    backbone's output in at least float32, before the L2 normalisation of ``EmbeddingModel.embed``
    (a model without a ``backbone`` gives ``embed``).
    """
    root = Path(data_root)
    pipeline = build_pixel_transform(
        transform,
        train=False,
        backbone=getattr(model, "backbone_name", None),
        image_size=getattr(model, "image_size", None),
    )
    network_input = NetworkInput.of(pipeline)
    image_mode = IMAGE_MODES[transform]
    backbone = getattr(model, "backbone", None)
    features_of = backbone if backbone is not None else model.embed

    @torch.no_grad()
    def embed(rows: pd.DataFrame, flip: bool = False) -> np.ndarray:
        if len(rows) == 0:
            raise ValueError("embed: no rows to embed")
        model.eval()
        device = next(model.parameters()).device
        images = _RowImages(root, rows["path"].tolist(), pipeline, image_mode)
        settings = _loader_settings(loader, model).dataloader_kwargs()
        chunks = []
        with Progress("embedding" + (" (flipped)" if flip else ""), len(images)) as progress:
            for batch in DataLoader(images, batch_size=batch_size, shuffle=False, **settings):
                inputs = network_input(batch, device)
                if flip:
                    inputs = TF.horizontal_flip(inputs)
                features = features_of(inputs)
                chunks.append(features.to(torch.promote_types(features.dtype, torch.float32)).cpu())
                progress.update(len(inputs))
        features = torch.cat(chunks)
        bad_rows = int((~torch.isfinite(features).all(dim=1)).sum())
        if bad_rows:
            raise NonFiniteFeaturesError(f"{bad_rows} of {len(features)} images have NaN or infinite features")
        return features.numpy()

    return embed


def evaluate_model(
    model: torch.nn.Module,
    test: TestSet,
    dataset: str,
    evaluation: dict[str, Any],
    *,
    batch_size: int = EMBED_BATCH_SIZE,
    loader: LoaderSettings | None = None,
) -> ProtocolResult:
    """The ``evaluation`` protocol (an ``evaluation:`` mapping of params.yaml) of data set ``dataset``'s
    prepared test set, on ``model``'s embeddings as it is now (on its device; ``batch_size`` and
    ``loader``: see :func:`model_embedder`)."""
    protocol = get_protocol(evaluation["protocol"])
    settings = {key: value for key, value in evaluation.items() if key not in ORCHESTRATOR_KEYS}
    embedder = model_embedder(model, test.root, get_dataset(dataset).transform, batch_size=batch_size, loader=loader)
    return protocol(embedder, test, settings)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def _has_identity_pairs(labels: np.ndarray) -> bool:
    """At least two labels, one of them on two or more items: positive and negative pairs exist."""
    _, counts = np.unique(labels, return_counts=True)
    return len(counts) >= 2 and int(counts.max()) >= 2


def _similarity_arrays(result: ProtocolResult) -> dict[str, np.ndarray] | None:
    """Sampled s_p / s_n of the protocol's identity-labelled features (None: no identity pairs)."""
    inputs = result.similarity_inputs
    if inputs is None or not _has_identity_pairs(inputs[1]):
        return None
    features, labels = inputs
    positives, negatives = sample_pair_similarities(features, labels, n_pairs=SIMILARITY_PAIRS, seed=0)
    anchor_s_n, anchor_s_p = sample_anchor_pairs(features, labels, n_anchors=SIMILARITY_ANCHORS, seed=0)
    return {"s_p": positives, "s_n": negatives, "anchor_s_n": anchor_s_n, "anchor_s_p": anchor_s_p}


def write_outputs(
    out_dir: Path,
    record: MetricsRecord,
    per_query: dict[str, np.ndarray],
    similarities: dict[str, np.ndarray] | None,
    roc: dict[str, np.ndarray] | None = None,
) -> MetricsRecord:
    """Write the evaluation folder ``out_dir`` (:data:`~circle_repro.layout.EVALUATION_FILES`) as one
    generation: similarities.npz and roc.csv where there are any, per_query.npz, scores.json (the headline
    metrics alone) and metrics.json, holding the sha256 of each array file (``arrays``), are written into a
    staging folder that then replaces ``out_dir`` in one step (:func:`~circle_repro.generations.staged_outputs`;
    other files in ``out_dir`` are kept). A failure or a kill at any point leaves the earlier evaluation
    whole. Returns the record as written."""
    with staged_outputs(out_dir, EVALUATION_FILES) as staging:
        arrays = {PER_QUERY_FILENAME: per_query} | (
            {SIMILARITIES_FILENAME: similarities} if similarities is not None else {}
        )
        for name, written in arrays.items():
            _write_npz(staging / name, written)
        if roc is not None:
            pd.DataFrame(roc).to_csv(staging / ROC_FILENAME, index=False)
        record = replace(record, arrays={name: file_digest(staging / name) for name in sorted(arrays)})
        write_json(staging / SCORES_FILENAME, headline_metrics(record.metrics))
        record.write(staging / METRICS_FILENAME)
    return record


def evaluate_run(
    run_dir: str | Path,
    data_root: str | Path,
    eval_config: dict[str, Any],
    out_dir: str | Path,
    *,
    device: str | torch.device | None = None,
    batch_size: int = EMBED_BATCH_SIZE,
    loader: LoaderSettings | None = None,
    verify_data: str = "sizes",
) -> MetricsRecord:
    """Run the data set's protocol on the run's trained and initial weights; write metrics.json (with
    the run's training provenance), per_query.npz and similarities.npz into the evaluation folder ``out_dir``
    (:func:`write_outputs`); log metrics.json and per_query.npz to the run's MLflow run.

    The same metrics of the run's initial (untrained, seeded) weights go beside them as the reference
    that shows what training added. A run that evaluates another run's weights (``trained_by`` in
    ``eval_config``, the run of ``run_dir``) logs to a new MLflow run nested under that run's. similarities.npz is written only where the test labels are
    identities with pairs (not IJB-C). ``device``: where the model runs (default: CUDA if available);
    ``batch_size`` images per embedding batch; ``loader``: the DataLoader settings (default: from this
    process's CPUs).
    ``verify_data``: how the prepared data is checked against its stamp first (``sizes``, ``full``, ``none``).
    A tracking store that does not answer fails first, within seconds, naming its URI
    (:class:`~circle_repro.engine.errors.TrackingStoreUnreachable`).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    record = TrainRecord.read(run_dir / TRAIN_RECORD_FILENAME)
    if record.run_id != eval_config["trained_by"]:
        raise ValueError(
            f"{run_dir / TRAIN_RECORD_FILENAME}: holds run {record.run_id!r}, but {eval_config['run_id']} "
            f"evaluates the weights of {eval_config['trained_by']!r}; pass that run's folder as --run-dir"
        )
    check_tracking_store(record.tracking_uri)  # before the embedding, not when logging after it
    check_outputs_folder(out_dir, EVALUATION_FILES)
    evaluation = eval_config["evaluation"]
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    test = TestSet.load(data_root)
    verify_prepared(data_root, verify_data)

    def run_on(weights_file: str) -> ProtocolResult:
        model = load_trained_model(run_dir, weights_file).to(device)
        return evaluate_model(model, test, eval_config["dataset"], evaluation, batch_size=batch_size, loader=loader)

    try:
        trained = run_on(WEIGHTS_FILENAME)
    except NonFiniteFeaturesError as err:
        raise NonFiniteFeaturesError(
            f"{run_dir / WEIGHTS_FILENAME}: {err}; the training diverged: see its loss in {HISTORY_FILENAME}"
        ) from None
    try:
        untrained_metrics = run_on(INITIAL_WEIGHTS_FILENAME).metrics
    except NonFiniteFeaturesError as err:
        # A deep network straight from its initialisation can overflow in eval mode, where BatchNorm uses
        # running statistics that no batch has updated yet: IResNet-100 with insightface's N(0, 0.1) conv init.
        warnings.warn(
            f"{eval_config['run_id']}: no untrained reference: the initial weights ({INITIAL_WEIGHTS_FILENAME}) "
            f"give unusable features in eval mode ({err})",
            NoUntrainedReferenceWarning,
            stacklevel=2,
        )
        untrained_metrics = {}
    similarities = _similarity_arrays(trained)
    roc = None
    if similarities is not None and evaluation["protocol"] == "verification_pairs":  # the report's ROC, as data
        roc = roc_points(similarities["s_p"], similarities["s_n"])
    for reason in trained.trivial:
        warnings.warn(f"{eval_config['run_id']} on {data_root}: {reason}", TrivialMetricWarning, stacklevel=2)
    result = MetricsRecord(
        run_id=eval_config["run_id"],
        experiment=eval_config["experiment"],
        loss=eval_config["loss_name"],
        seed=eval_config["seed"],
        table=eval_config["table"],
        trained_by=record.run_id,
        dataset=eval_config["dataset"],
        protocol=evaluation["protocol"],
        split="test",
        n_images=len(test.frame),
        metrics=trained.metrics,
        untrained_metrics=untrained_metrics,
        trivial=tuple(trained.trivial),
        mlflow_run_id=record.mlflow_run_id,
        weights_uri=record.weights_uri,
        config_hash=record.config_hash,
        provenance=record.provenance,
    )
    logged = trained.metrics | {f"untrained_{name}": value for name, value in untrained_metrics.items()}
    if record.run_id == eval_config["run_id"]:
        result = write_outputs(out_dir, result, trained.per_query, similarities, roc)
        artifacts = (out_dir / METRICS_FILENAME, out_dir / PER_QUERY_FILENAME)
        log_to_run(record.tracking_uri, record.mlflow_run_id, logged, artifacts=artifacts)
        return result
    # Another test set of a training run's weights: its own MLflow run, nested under the training run.
    tags = {key: str(eval_config[key]) for key in ("run_id", "experiment", "table", "dataset", "trained_by")}
    with tempfile.TemporaryDirectory() as folder:
        staged = Path(folder) / METRICS_FILENAME, Path(folder) / PER_QUERY_FILENAME
        result.write(staged[0])
        _write_npz(staged[1], trained.per_query)
        child = log_to_child_run(record.tracking_uri, record.mlflow_run_id, tags, logged, artifacts=staged)
    return write_outputs(out_dir, replace(result, mlflow_run_id=child), trained.per_query, similarities, roc)

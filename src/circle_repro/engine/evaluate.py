"""Evaluate one trained run on its data set's test split."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mmengine.registry import MODELS
from torch.utils.data import DataLoader

from circle_repro.data.datasets import get_dataset
from circle_repro.data.manifest_dataset import ManifestDataset
from circle_repro.engine import registrations as _registrations  # noqa: F401
from circle_repro.engine.model import EmbeddingModel
from circle_repro.engine.tracking import log_to_run
from circle_repro.data.pairs import read_pairs
from circle_repro.evaluation.retrieval import retrieval_metrics
from circle_repro.evaluation.verification import kfold_accuracy, tar_at_far
from circle_repro.evaluation.similarity import sample_pair_similarities
from circle_repro.io import atomic_path, write_json
from circle_repro.layout import (
    INITIAL_WEIGHTS_FILENAME,
    METRICS_FILENAME,
    SIMILARITIES_FILENAME,
    TRAIN_RECORD_FILENAME,
    WEIGHTS_FILENAME,
)


def load_trained_model(run_dir: str | Path, weights_file: str = WEIGHTS_FILENAME) -> EmbeddingModel:
    """Rebuild a run's model from its train record and load its weights (``weights_only=True``)."""
    run_dir = Path(run_dir)
    record = json.loads((run_dir / TRAIN_RECORD_FILENAME).read_text())
    model = MODELS.build(record["model"])
    state = torch.load(run_dir / weights_file, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def embed_split(model: EmbeddingModel, dataset: ManifestDataset, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm embeddings and labels of every image of a dataset, in manifest order."""
    model.eval()
    device = next(model.parameters()).device
    chunks = [
        model.embed(batch["inputs"].to(device)).cpu()
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False)
    ]
    return torch.cat(chunks).numpy(), dataset.labels


def _retrieval(embeddings: np.ndarray, dataset: ManifestDataset, settings: dict[str, Any]) -> dict[str, float]:
    """R@K, MAP@R and R-precision with query = every test image, gallery = all others."""
    return retrieval_metrics(embeddings, dataset.labels, ks=settings["ks"])


def _verification_pairs(embeddings: np.ndarray, dataset: ManifestDataset, settings: dict[str, Any]) -> dict[str, float]:
    """10-fold accuracy and TAR@FAR on the pairs saved with the prepared data (cosine scores)."""
    pairs = read_pairs(dataset.data_root, known_paths=dataset.frame["path"])
    row_of = pd.Series(np.arange(len(dataset.frame)), index=dataset.frame["path"])
    first, second = embeddings[row_of[pairs["path_a"]].to_numpy()], embeddings[row_of[pairs["path_b"]].to_numpy()]
    scores = np.einsum("ij,ij->i", first, second)
    issame = pairs["issame"].to_numpy()
    mean, std = kfold_accuracy(scores, issame, n_folds=settings["n_folds"])
    tars = tar_at_far(scores, issame, settings["fars"])
    return {"accuracy": mean, "accuracy_std": std} | {f"TAR@FAR={far:g}": tar for far, tar in tars.items()}


PROTOCOLS: dict[str, Callable[[np.ndarray, ManifestDataset, dict[str, Any]], dict[str, float]]] = {
    "retrieval": _retrieval,
    "verification_pairs": _verification_pairs,
}


def evaluate_run(run_dir: str | Path, data_root: str | Path, eval_config: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Embed the test split, compute the protocol's metrics, write metrics.json and log to the run's MLflow run.

    The same metrics of the run's initial (untrained, seeded) weights go beside them as the reference
    that shows what training added.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    record = json.loads((run_dir / TRAIN_RECORD_FILENAME).read_text())
    entry = get_dataset(eval_config["dataset"])
    settings = eval_config["evaluation"]
    protocol = PROTOCOLS[settings["protocol"]]
    dataset = ManifestDataset(data_root, split="test", transform=entry.transform, train=False)
    embeddings, labels = embed_split(load_trained_model(run_dir), dataset)
    metrics = protocol(embeddings, dataset, settings)
    initial_embeddings, _ = embed_split(load_trained_model(run_dir, INITIAL_WEIGHTS_FILENAME), dataset)
    untrained = protocol(initial_embeddings, dataset, settings)
    positives, negatives = sample_pair_similarities(embeddings, labels, n_pairs=20_000, seed=0)
    with atomic_path(out_dir / SIMILARITIES_FILENAME) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, s_p=positives, s_n=negatives)
    result = {
        "run_id": record["run_id"],
        "experiment": record["config"]["experiment"],
        "loss": record["config"]["loss_name"],
        "seed": record["config"]["seed"],
        "table": record["config"]["table"],
        "dataset": eval_config["dataset"],
        "protocol": settings["protocol"],
        "split": "test",
        "n_images": int(len(labels)),
        "metrics": metrics,
        "untrained_metrics": untrained,
        "mlflow_run_id": record["mlflow_run_id"],
        "config_hash": record["config_hash"],
    }
    metrics_path = out_dir / METRICS_FILENAME
    write_json(metrics_path, result)
    logged = metrics | {f"untrained_{name}": value for name, value in untrained.items()}
    log_to_run(record["tracking_uri"], record["mlflow_run_id"], logged, artifacts=(metrics_path,))
    return result

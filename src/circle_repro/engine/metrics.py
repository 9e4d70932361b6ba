"""mmengine metric adapters: collect embeddings in ``process``, call the evaluation library in ``compute_metrics``.

The same library functions serve the CLI (``circle-repro evaluate``) and validation during
training; these classes only gather per-sample records and translate names.

Registered in mmengine's ``METRICS`` registry as ``RetrievalMetric``, ``ReidMetric`` and
``VerificationMetric`` (import this module, e.g. via ``custom_imports``, to register them).

Inputs (what an mmengine ``Evaluator`` passes on):

* ``data_samples`` — the model's ``predict`` output for the batch, one item per sample:
  a ``(batch, dim)`` tensor/array (mmengine iterates its rows), per-sample vectors, or
  per-sample dicts with an ``"embedding"`` key. A dict may also carry any of the per-sample
  fields below; those override ``data_batch``.
* ``data_batch`` — the collated batch dict. Per-sample fields read from it:
  ``labels`` (class / person / identity id), ``camera`` (re-ID), ``role`` (re-ID:
  ``"query"``/``"gallery"``, or ``is_query``), ``pair_id`` and ``issame`` (verification;
  optional ``embedding_flip`` in the samples for insightface's flip-sum).

One record is stored per sample, so mmengine's ``collect_results(size=...)`` drops the padding
of distributed samplers correctly. Metric values are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS

from circle_repro.evaluation import reid, verification
from circle_repro.evaluation.retrieval import retrieval_metrics


def _numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value


def _batch_field(data_batch: Any, key: str, index: int) -> Any:
    if not isinstance(data_batch, Mapping) or key not in data_batch:
        return None
    values = data_batch[key]
    value = values[index]
    value = _numpy(value)
    return value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value


def _records(data_batch: Any, data_samples: Sequence[Any], fields: Sequence[str]) -> list[dict[str, Any]]:
    """One dict per sample: its embedding plus the requested per-sample fields."""
    records = []
    for i, sample in enumerate(data_samples):
        record: dict[str, Any] = {}
        if isinstance(sample, Mapping):
            if "embedding" not in sample:
                raise ValueError("data_samples: a dict sample needs an 'embedding' entry")
            record["embedding"] = np.asarray(_numpy(sample["embedding"]), dtype=np.float32)
            if sample.get("embedding_flip") is not None:
                record["embedding_flip"] = np.asarray(_numpy(sample["embedding_flip"]), dtype=np.float32)
        else:
            record["embedding"] = np.asarray(_numpy(sample), dtype=np.float32)
        if record["embedding"].ndim != 1:
            raise ValueError(
                f"data_samples: each sample's embedding must be 1-D, got shape {record['embedding'].shape}"
            )
        for key in fields:
            value = (
                sample.get(key) if isinstance(sample, Mapping) and key in sample else _batch_field(data_batch, key, i)
            )
            record[key] = _numpy(value)
        records.append(record)
    return records


def _require(results: list[dict[str, Any]], key: str, metric: str) -> np.ndarray:
    values = [r.get(key) for r in results]
    if any(v is None for v in values):
        raise ValueError(f"{metric}: every sample needs '{key}' (in data_batch or in its data sample)")
    return np.asarray(values)


@METRICS.register_module()
class RetrievalMetric(BaseMetric):
    """Recall@K, MAP@R and R-precision (query = gallery, self excluded); keys ``R@K``, ``MAP@R``, ``R-precision``."""

    default_prefix = "retrieval"

    def __init__(self, ks: Sequence[int] = (1, 2, 4, 8), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ks = tuple(ks)

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        self.results.extend(_records(data_batch, data_samples, ("labels",)))

    def compute_metrics(self, results: list[dict[str, Any]]) -> dict[str, float]:
        embeddings = np.stack([r["embedding"] for r in results])
        return retrieval_metrics(embeddings, _require(results, "labels", "RetrievalMetric"), self.ks)


@METRICS.register_module()
class ReidMetric(BaseMetric):
    """fast-reid's CMC / mAP / mINP; keys ``Rank-k`` for ``ranks``, ``mAP``, ``mINP``.

    Queries are the samples whose ``role`` is ``"query"`` (or ``is_query`` is true); when no
    sample carries a role, the first ``num_query`` samples are the queries (fast-reid's
    ``ReidEvaluator`` convention).
    """

    default_prefix = "reid"

    def __init__(
        self, ranks: Sequence[int] = (1, 5, 10), max_rank: int = 50, num_query: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.ranks = tuple(ranks)
        self.max_rank = max_rank
        self.num_query = num_query

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        self.results.extend(_records(data_batch, data_samples, ("labels", "camera", "role", "is_query")))

    def _query_mask(self, results: list[dict[str, Any]]) -> np.ndarray:
        roles = [r.get("role") for r in results]
        flags = [r.get("is_query") for r in results]
        if all(f is not None for f in flags):
            return np.asarray(flags, dtype=bool)
        if all(role is not None for role in roles):
            unknown = {str(role) for role in roles} - {"query", "gallery"}
            if unknown:
                raise ValueError(f"ReidMetric: role must be 'query' or 'gallery', got {sorted(unknown)}")
            return np.asarray([str(role) == "query" for role in roles])
        if self.num_query is None:
            raise ValueError("ReidMetric: samples carry no role / is_query; set num_query")
        mask = np.zeros(len(results), dtype=bool)
        mask[: self.num_query] = True
        return mask

    def compute_metrics(self, results: list[dict[str, Any]]) -> dict[str, float]:
        embeddings = np.stack([r["embedding"] for r in results])
        pids = _require(results, "labels", "ReidMetric").astype(np.int64)
        cams = _require(results, "camera", "ReidMetric")
        query = self._query_mask(results)
        result = reid.evaluate(
            embeddings[query],
            pids[query],
            cams[query],
            embeddings[~query],
            pids[~query],
            cams[~query],
            max_rank=max(self.max_rank, *self.ranks),
        )
        metrics = {f"Rank-{k}": result.rank(k) for k in self.ranks if k <= len(result.cmc)}
        metrics.update(mAP=result.mAP, mINP=result.mINP)
        return metrics


@METRICS.register_module()
class VerificationMetric(BaseMetric):
    """insightface pair verification; keys ``accuracy``, ``accuracy_std``, ``TAR@FAR=<far>``.

    Each pair is two samples sharing a ``pair_id`` (if no sample has one, consecutive samples
    2i, 2i+1 form pair i, the ``.bin`` layout); ``issame`` is read from the first sample of the
    pair. With ``embedding_flip`` in the samples, embeddings are insightface's flip-sum.
    """

    default_prefix = "verification"

    def __init__(self, n_folds: int = 10, fars: Sequence[float] = (1e-3,), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_folds = n_folds
        self.fars = tuple(fars)

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        self.results.extend(_records(data_batch, data_samples, ("pair_id", "issame")))

    def compute_metrics(self, results: list[dict[str, Any]]) -> dict[str, float]:
        embeddings = np.stack([r["embedding"] for r in results])
        if all("embedding_flip" in r for r in results):
            embeddings = verification.flip_sum_embeddings(embeddings, np.stack([r["embedding_flip"] for r in results]))
        if all(r.get("pair_id") is None for r in results):
            if len(results) % 2:
                raise ValueError("VerificationMetric: an odd number of samples cannot form consecutive pairs")
            first, second = np.arange(0, len(results), 2), np.arange(1, len(results), 2)
        else:
            pair_ids = _require(results, "pair_id", "VerificationMetric")
            order = np.argsort(pair_ids, kind="stable")
            _, counts = np.unique(pair_ids, return_counts=True)
            if np.any(counts != 2):
                raise ValueError("VerificationMetric: every pair_id must occur exactly twice")
            first, second = order[0::2], order[1::2]
        issame = _require([results[i] for i in first], "issame", "VerificationMetric")
        unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        scores = np.einsum("ij,ij->i", unit[first], unit[second])
        mean, std = verification.kfold_accuracy(scores, issame, n_folds=self.n_folds)
        metrics = {"accuracy": mean, "accuracy_std": std}
        for far, tar in verification.tar_at_far(scores, issame, self.fars).items():
            metrics[f"TAR@FAR={far:g}"] = tar
        return metrics

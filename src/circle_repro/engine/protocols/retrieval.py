"""The retrieval protocol: every test image queries all others (CUB-200, Cars196, SOP; paper Table 3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from circle_repro.engine.protocols.base import (
    Embedder,
    ProtocolResult,
    TestSet,
    check_positive_ints,
    merge_settings,
    metric_floats,
    unit,
)
from circle_repro.evaluation.retrieval import retrieval_metrics
from circle_repro.evaluation.retrieval import retrieval_per_query as library_retrieval_per_query


def retrieval_per_query(embeddings: np.ndarray, labels: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per query that has a same-label item (``ids``: its row): its R@1 hit and its AP@R, from
    :func:`circle_repro.evaluation.retrieval.retrieval_per_query`, whose means are the ``R@1`` and
    ``MAP@R`` of ``retrieval_metrics(embeddings, labels, ks)`` (``ks`` is checked as it checks it)."""
    check_positive_ints("retrieval", list(ks), "ks")
    per_query = library_retrieval_per_query(embeddings, labels)
    return {
        "ids": per_query["ids"],
        "R@1": (per_query["first_hit_rank"] < 1).astype(np.float64),
        "MAP@R": per_query["AP@R"],
    }


def retrieval(embed: Embedder, test: TestSet, settings: Mapping[str, Any]) -> ProtocolResult:
    """R@K, MAP@R and R-precision with query = every test image, gallery = all others (cosine)."""
    s = merge_settings("retrieval", settings, {"ks": None}, required=("ks",))
    ks = check_positive_ints("retrieval", s["ks"], "ks")
    features = unit(embed(test.frame, False))
    labels = test.frame["label"].to_numpy()
    metrics = retrieval_metrics(features, labels, ks=ks)
    trivial = ()
    if len(np.unique(labels)) == 1:
        trivial = (
            f"the test set has one class ({labels[0]}): every neighbour matches, so R@K, MAP@R and "
            "R-precision are 1.0 for any model",
        )
    return ProtocolResult(metric_floats(metrics), retrieval_per_query(features, labels, ks), (features, labels),
                          trivial)  # fmt: skip

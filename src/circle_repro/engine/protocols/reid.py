"""The reid protocol: query rows against gallery rows, fast-reid's CMC, mAP and mINP (Market-1501, MSMT17)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from circle_repro.data.manifest import ManifestError
from circle_repro.engine.protocols.base import (
    Embedder,
    ProtocolResult,
    TestSet,
    build_options,
    check_flag,
    check_positive_ints,
    merge_settings,
    metric_floats,
    require_columns,
    unit,
)
from circle_repro.evaluation import reid as reid_eval
from circle_repro.evaluation.reranking import Reranking


def reid(embed: Embedder, test: TestSet, settings: Mapping[str, Any]) -> ProtocolResult:
    """CMC Rank-k, mAP and mINP of the ``query`` rows against the ``gallery`` rows (fast-reid's protocol,
    :func:`circle_repro.evaluation.reid.evaluate`): pids from ``label``, cameras from ``camera``."""
    name = "reid"
    defaults = {"ranks": [1, 5, 10], "flip": False, "query_expansion": None, "rerank": None}
    s = merge_settings(name, settings, defaults)
    ranks = check_positive_ints(name, s["ranks"], "ranks")
    flip = check_flag(name, s, "flip")
    expansion = build_options(
        name,
        "query_expansion",
        s["query_expansion"],
        reid_eval.QueryExpansion,
        {"k": "k", "alpha": "alpha", "times": "times"},
    )
    reranking = build_options(
        name, "rerank", s["rerank"], Reranking, {"k1": "k1", "k2": "k2", "lambda": "lambda_value"}
    )
    require_columns(name, test, ("role", "camera"))
    frame = test.frame
    is_query, is_gallery = (frame["role"] == "query").to_numpy(), (frame["role"] == "gallery").to_numpy()
    if not is_query.any() or not is_gallery.any():
        raise ManifestError(f"{test.root}: reid needs test rows with role 'query' and role 'gallery'")
    rows = frame[is_query | is_gallery]
    raw = embed(rows, False)
    flipped = embed(rows, True) if flip else None
    in_query = (rows["role"] == "query").to_numpy()
    pids, cams = rows["label"].to_numpy(dtype=np.int64), rows["camera"].to_numpy(dtype=np.int64)
    result = reid_eval.evaluate(
        raw[in_query],
        pids[in_query],
        cams[in_query],
        raw[~in_query],
        pids[~in_query],
        cams[~in_query],
        max_rank=max(ranks),
        q_flipped_feats=None if flipped is None else flipped[in_query],
        g_flipped_feats=None if flipped is None else flipped[~in_query],
        query_expansion=expansion,
        reranking=reranking,
        per_query=True,
    )
    cmc = result.cmc  # min(max_rank, n_gallery) entries; Rank-k beyond the gallery is its last value
    metrics = {f"R-{k}": cmc[min(k, len(cmc)) - 1] for k in ranks} | {"mAP": result.mAP, "mINP": result.mINP}
    details = result.per_query
    assert details is not None
    per_query = {"ids": rows.index.to_numpy()[in_query][details.query_indices]}
    per_query |= {f"R-{k}": details.hits(k) for k in ranks}
    per_query |= {"mAP": details.average_precision, "mINP": details.inverse_negative_penalty}
    features = unit(raw) if flipped is None else unit(raw + flipped)
    return ProtocolResult(metric_floats(metrics), per_query, (features, pids))

"""The ijb protocol: IJB-C 1:1 verification of media-pooled templates, insightface's TAR@FAR."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from circle_repro.data.datasets.ijbc import read_detector_scores, read_template_pairs
from circle_repro.data.manifest import ManifestError
from circle_repro.engine.protocols.base import (
    Embedder,
    ProtocolResult,
    TestSet,
    check_fars_setting,
    check_flag,
    merge_settings,
    metric_floats,
    require_columns,
)
from circle_repro.evaluation.ijb import IJB_FARS, score_pairs, tar_at_far_ijb, template_features


def ijb(embed: Embedder, test: TestSet, settings: Mapping[str, Any]) -> ProtocolResult:
    """IJB-C 1:1: media-pooled template features, cosine template-pair scores, insightface's TAR@FAR
    (:mod:`circle_repro.evaluation.ijb`). Defaults are insightface's: flip, norm score and detector
    score all on."""
    name = "ijb"
    defaults = {"flip": True, "use_norm_score": True, "use_detector_score": True, "fars": list(IJB_FARS)}
    s = merge_settings(name, settings, defaults)
    flip, norm_score, detector = (check_flag(name, s, key) for key in ("flip", "use_norm_score", "use_detector_score"))
    fars = check_fars_setting(name, s["fars"])
    require_columns(name, test, ("template", "media"))
    frame = test.frame
    pairs = read_template_pairs(test.root)
    detector_scores = None
    if detector:
        table = read_detector_scores(test.root)
        by_path = pd.Series(table["detector_score"].to_numpy(), index=table["path"])
        missing = ~frame["path"].isin(by_path.index)
        if missing.any():
            raise ManifestError(
                f"{test.root}: {int(missing.sum())} image(s) have no detector score, e.g. "
                f"{frame['path'][missing].iloc[0]!r}; re-run `circle-repro data prepare` for ijbc"
            )
        detector_scores = by_path[frame["path"]].to_numpy()
    raw = embed(frame, False)
    templates, template_feats = template_features(
        raw,
        frame["template"].to_numpy(),
        frame["media"].to_numpy(),
        flipped_feats=embed(frame, True) if flip else None,
        detector_scores=detector_scores,
        norm_score=norm_score,
    )
    scores = score_pairs(templates, template_feats, pairs["t1"].to_numpy(), pairs["t2"].to_numpy())
    tars = tar_at_far_ijb(scores, pairs["label"].to_numpy(), fars)
    metrics = {f"TAR@FAR={far:g}": tar for far, tar in tars.items()}
    return ProtocolResult(metric_floats(metrics), {"ids": np.zeros(0, dtype=np.int64)}, None)

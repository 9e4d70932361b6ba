"""The megaface protocol: MegaFace Challenge 1 identification (rank-1) and verification (TAR@FAR)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from circle_repro.data.datasets.megaface import noise_flags
from circle_repro.data.manifest import ManifestError
from circle_repro.engine.protocols.base import (
    Embedder,
    ProtocolResult,
    TestSet,
    check_fars_setting,
    check_flag,
    image_features,
    merge_settings,
    metric_floats,
    require_columns,
)
from circle_repro.evaluation import megaface as megaface_eval


def megaface(embed: Embedder, test: TestSet, settings: Mapping[str, Any]) -> ProtocolResult:
    """MegaFace Challenge 1: the ``query`` rows (FaceScrub probes, identity labels) against the
    ``gallery`` rows (distractors), with the prepared noise lists; rank-1 and TAR@FAR
    (:func:`circle_repro.evaluation.megaface.evaluate`). ``n_distractors`` keeps the first n
    distractors in manifest order (``megaface_lst`` order)."""
    name = "megaface"
    s = merge_settings(name, settings, {"flip": False, "fars": [1e-6], "n_distractors": None})
    flip = check_flag(name, s, "flip")
    fars = check_fars_setting(name, s["fars"])
    require_columns(name, test, ("role",))
    frame = test.frame
    probes, distractors = frame[frame["role"] == "query"], frame[frame["role"] == "gallery"]
    if probes.empty or distractors.empty:
        raise ManifestError(f"{test.root}: megaface needs probes (role 'query') and distractors (role 'gallery')")
    n_distractors = s["n_distractors"]
    if n_distractors is not None:
        if (
            isinstance(n_distractors, bool)
            or not isinstance(n_distractors, int | np.integer)
            or not 1 <= n_distractors <= len(distractors)
        ):
            raise ValueError(
                f"megaface: setting 'n_distractors' must be null or an integer in 1..{len(distractors)} "
                f"(the prepared distractors), got {n_distractors!r}"
            )
        distractors = distractors.iloc[: int(n_distractors)]
    probe_feats = image_features(embed, probes, flip)
    distractor_feats = image_features(embed, distractors, flip)
    probe_ids = probes["label"].to_numpy()
    noisy = dict(
        probe_noisy=noise_flags(test.root, probes["path"]), distractor_noisy=noise_flags(test.root, distractors["path"])
    )
    results = [
        megaface_eval.evaluate(probe_feats, probe_ids, distractor_feats, far=far, pair_hits=(i == 0), **noisy)
        for i, far in enumerate(fars)
    ]
    metrics = {"rank-1": results[0].rank1} | {f"TAR@FAR={r.far:g}": r.tar for r in results}
    pairs, hits = results[0].probe_pairs, results[0].pair_hits
    assert pairs is not None and hits is not None
    rows = probes.index.to_numpy()
    per_query = {"ids": rows[pairs[:, 0]] * len(frame) + rows[pairs[:, 1]], "rank-1": hits.astype(np.float64)}
    return ProtocolResult(metric_floats(metrics), per_query, (probe_feats, probe_ids))

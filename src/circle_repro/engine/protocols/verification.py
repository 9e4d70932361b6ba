"""The verification_pairs protocol: k-fold accuracy and TAR@FAR on image pairs (LFW, CFP-FP, AgeDB-30) or
YTF's video pairs; see the package docstring."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from circle_repro.data.datasets.ytf import VIDEO_PAIRS_FILENAME, read_video_pairs
from circle_repro.data.manifest import ManifestError
from circle_repro.data.pairs import PAIRS_FILENAME, read_pairs
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
    unit,
)
from circle_repro.evaluation.ijb import score_pairs, template_features
from circle_repro.evaluation.verification import flip_sum_embeddings, kfold_accuracy, kfold_pair_correctness, tar_at_far


def trivial_pairs(issame: np.ndarray) -> tuple[str, ...]:
    """Why pair accuracy and TAR@FAR say nothing of the model when every pair matches or none does."""
    same = np.asarray(issame, dtype=bool)
    if same.all():
        return (f"all {len(same)} test pairs match: accepting every pair is right, so accuracy is near 1.0 for "
                "any model, and TAR@FAR is left out (no impostor pair to set its threshold)",)  # fmt: skip
    if not same.any():
        return (f"none of the {len(same)} test pairs match: rejecting every pair is right, so accuracy is near "
                "1.0 for any model, and TAR@FAR is left out (no genuine pair)",)  # fmt: skip
    return ()


def _pair_metrics(scores: np.ndarray, issame: np.ndarray, n_folds: int, fars: list[float]) -> tuple[dict, dict]:
    mean, std = kfold_accuracy(scores, issame, n_folds=n_folds)
    one_kind = len(np.unique(np.asarray(issame, dtype=bool))) == 1
    tars = {} if one_kind else tar_at_far(scores, issame, fars)  # no impostor (or genuine) pair: no ROC
    metrics = {"accuracy": mean, "accuracy_std": std} | {f"TAR@FAR={far:g}": tar for far, tar in tars.items()}
    per_pair = {
        "ids": np.arange(len(scores)),
        "accuracy": kfold_pair_correctness(scores, issame, n_folds).astype(np.float64),
    }
    return metric_floats(metrics), per_pair


def _warn_if_folds_differ(source: Path, folds: np.ndarray, n_folds: int) -> None:
    """Warn when the file's ``fold`` column is not the positional KFold(n_folds) split."""
    positional = np.repeat(np.arange(n_folds), [len(f) for f in np.array_split(np.arange(len(folds)), n_folds)])
    same_split = len(np.unique(folds)) == n_folds and all(
        len(np.unique(folds[positional == f])) == 1 for f in range(n_folds)
    )
    if not same_split:
        warnings.warn(
            f"{source}: the 'fold' column is not {n_folds} contiguous folds of KFold sizes (pairs left out "
            "at preparation?); accuracy uses folds by pair position, as insightface",
            stacklevel=3,
        )


def verification_pairs(embed: Embedder, test: TestSet, settings: Mapping[str, Any]) -> ProtocolResult:
    """k-fold accuracy and TAR@FAR on the pairs saved with the prepared data (cosine scores).

    Image pairs (``pairs.parquet``) or, failing that, YTF's video pairs (``video_pairs.parquet``,
    one template per video); see the module docstring.
    """
    s = merge_settings("verification_pairs", settings, {"n_folds": 10, "fars": [1e-3], "flip": False})
    flip = check_flag("verification_pairs", s, "flip")
    fars = check_fars_setting("verification_pairs", s["fars"])
    n_folds = s["n_folds"]
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 2:
        raise ValueError(f"verification_pairs: setting 'n_folds' must be an integer >= 2, got {n_folds!r}")
    frame = test.frame
    labels = frame["label"].to_numpy()
    if (test.root / PAIRS_FILENAME).is_file():
        pairs = read_pairs(test.root, known_paths=frame["path"])
        features = image_features(embed, frame, flip)
        row_of = pd.Series(np.arange(len(frame)), index=frame["path"])
        first = features[row_of[pairs["path_a"]].to_numpy()]
        second = features[row_of[pairs["path_b"]].to_numpy()]
        scores = np.einsum("ij,ij->i", first, second)
        metrics, per_pair = _pair_metrics(scores, pairs["issame"].to_numpy(), n_folds, fars)
        return ProtocolResult(metrics, per_pair, (features, labels), trivial_pairs(pairs["issame"].to_numpy()))
    if not (test.root / VIDEO_PAIRS_FILENAME).is_file():
        raise ManifestError(
            f"{test.root}: neither {PAIRS_FILENAME} nor {VIDEO_PAIRS_FILENAME} found; "
            "this prepared data set has no verification pairs"
        )
    require_columns("verification_pairs", test, ("template", "media"))
    pairs = read_video_pairs(test.root, known_templates=frame["template"])
    _warn_if_folds_differ(test.root / VIDEO_PAIRS_FILENAME, pairs["fold"].to_numpy(), n_folds)
    raw = embed(frame, False)
    flipped = embed(frame, True) if flip else None
    templates, template_feats = template_features(
        raw, frame["template"].to_numpy(), frame["media"].to_numpy(), flipped_feats=flipped, norm_score=False
    )
    scores = score_pairs(templates, template_feats, pairs["template_a"].to_numpy(), pairs["template_b"].to_numpy())
    metrics, per_pair = _pair_metrics(scores, pairs["issame"].to_numpy(dtype=bool), n_folds, fars)
    frames = unit(raw) if flipped is None else flip_sum_embeddings(raw, flipped)
    return ProtocolResult(metrics, per_pair, (frames, labels), trivial_pairs(pairs["issame"].to_numpy(dtype=bool)))

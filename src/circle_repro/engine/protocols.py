"""Evaluation protocols, one function each, in one registry: ``PROTOCOLS[name](embed, test, settings)``.

A protocol gets

* ``embed``: an :data:`Embedder`, ``embed(rows, flip) -> features``: the model's features of the
  images of some manifest rows (in row order), of the horizontally flipped images when ``flip``.
  Features are **not** L2-normalised (``EmbeddingModel.embed`` is their normalisation), so that
  each protocol can do what its reference does: insightface sums the raw features of an image and
  its flip, fast-reid averages them, IJB's ``use_norm_score`` keeps their norms;
* ``test``: the prepared data set's folder and its test-split manifest rows (:class:`TestSet`);
* ``settings``: the experiment's ``evaluation:`` mapping (its ``protocol`` key may be left in).
  Unknown keys and bad values raise ValueError naming the protocol and the setting.

and returns a :class:`ProtocolResult`: metrics, per-query arrays for the report's paired bootstrap
(``ids`` plus one array per metric whose mean is that metric), the identity-labelled features
the similarity figures sample from (None where labels are not identities), and why some metrics are
trivial for this input, where they are (``trivial``: a one-class retrieval test set, verification
pairs that all match or all differ).

| protocol | settings (default) | metrics | per query |
|---|---|---|---|
| retrieval | ks (required) | R@K, MAP@R, R-precision | every non-lone image: R@1, MAP@R |
| verification_pairs | n_folds (10), fars ([1e-3]), flip (False) | accuracy, accuracy_std, TAR@FAR=x | every pair: accuracy (0/1) |
| reid | ranks ([1, 5, 10]), flip (False), query_expansion (None: {k, alpha, times}), rerank (None: {k1, k2, lambda}) | R-k, mAP, mINP | every valid query: R-k, mAP, mINP |
| ijb | flip, use_norm_score, use_detector_score (all True, insightface), fars (1e-6 .. 1e-1) | TAR@FAR=x | none (empty ids) |
| megaface | flip (False), fars ([1e-6]), n_distractors (None: all) | rank-1, TAR@FAR=x | every (probe, gallery probe) pair: rank-1 (0/1) |

``verification_pairs`` scores the image pairs of ``pairs.parquet`` or, for YTF, the video pairs of
``video_pairs.parquet`` (frame features flip-summed if ``flip``, L2-normalised, averaged per video
and normalised again: ``ijb.template_features(..., norm_score=False)``; ytf.py). Folds are
contiguous by pair position (sklearn ``KFold``, as insightface); for YTF this is the file's
``fold`` column when no pair was dropped, and a warning says when it is not.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from circle_repro.data.datasets.ijbc import read_detector_scores, read_template_pairs
from circle_repro.data.datasets.megaface import noise_flags
from circle_repro.data.datasets.ytf import VIDEO_PAIRS_FILENAME, read_video_pairs
from circle_repro.data.manifest import ManifestError, read_manifest
from circle_repro.data.pairs import PAIRS_FILENAME, read_pairs
from circle_repro.evaluation import megaface as megaface_eval
from circle_repro.evaluation import reid as reid_eval
from circle_repro.evaluation.ijb import IJB_FARS, score_pairs, tar_at_far_ijb, template_features
from circle_repro.evaluation.reranking import Reranking
from circle_repro.evaluation.retrieval import retrieval_metrics
from circle_repro.evaluation.retrieval import retrieval_per_query as library_retrieval_per_query
from circle_repro.evaluation.verification import (
    check_fars,
    flip_sum_embeddings,
    kfold_accuracy,
    kfold_pair_correctness,
    tar_at_far,
)

#: ``embed(rows, flip)``: float features (n_rows x d, not normalised) of the images of manifest rows
#: (a DataFrame with ``path``), in row order; of the horizontally flipped images when ``flip``.
Embedder = Callable[[pd.DataFrame, bool], np.ndarray]


@dataclass(frozen=True)
class TestSet:
    """A prepared data set's folder (its side files: pairs, noise lists, ...) and its test-split rows."""

    __test__ = False  # not a pytest test class

    root: Path
    frame: pd.DataFrame  # the test split of the manifest, index 0..n-1

    @classmethod
    def load(cls, root: str | Path) -> TestSet:
        root = Path(root)
        return cls(root, read_manifest(root, split="test"))


@dataclass(frozen=True, eq=False)
class ProtocolResult:
    """What a protocol measured.

    ``per_query``: ``ids`` (which queries / pairs, stable across runs of the same test set) and,
    per metric that is a mean over them, that metric's per-query values. ``similarity_inputs``:
    (unit features, identity labels) of the test images the similarity figures may sample pairs
    from, or None when the data set has no identity labels (IJB-C).
    """

    metrics: dict[str, float]
    per_query: dict[str, np.ndarray]
    similarity_inputs: tuple[np.ndarray, np.ndarray] | None = None
    trivial: tuple[str, ...] = ()  # why some metrics are trivial for this input (one class, all pairs matching)


Protocol = Callable[[Embedder, TestSet, Mapping[str, Any]], ProtocolResult]


# ---------------------------------------------------------------------------------------------
# Settings


def _settings(
    protocol: str, settings: Mapping[str, Any], defaults: Mapping[str, Any], required: Sequence[str] = ()
) -> dict[str, Any]:
    """``settings`` over ``defaults``; ValueError on an unknown or missing key."""
    given = dict(settings)
    named = given.pop("protocol", protocol)
    if named != protocol:
        raise ValueError(f"{protocol}: settings name protocol {named!r}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{protocol}: unknown setting(s) {unknown}; allowed: {sorted(defaults)}")
    missing = [key for key in required if key not in given]
    if missing:
        raise ValueError(f"{protocol}: missing setting(s) {missing}")
    return {**defaults, **given}


def _flag(protocol: str, settings: Mapping[str, Any], key: str) -> bool:
    value = settings[key]
    if not isinstance(value, bool):
        raise ValueError(f"{protocol}: setting {key!r} must be true or false, got {value!r}")
    return value


def _positive_ints(protocol: str, value: Any, key: str) -> list[int]:
    if (
        isinstance(value, (str, bytes, Mapping))
        or not isinstance(value, Sequence)
        or not value
        or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise ValueError(f"{protocol}: setting {key!r} must be a non-empty list of positive integers, got {value!r}")
    return [int(v) for v in value]


def _fars(protocol: str, value: Any) -> list[float]:
    try:
        return check_fars(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{protocol}: setting 'fars': {error}") from None


def _options(protocol: str, key: str, value: Any, build: Callable[..., Any], fields: Mapping[str, str]) -> Any:
    """None, or ``build(**options)`` from a mapping whose keys are ``fields`` (settings key -> argument)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{protocol}: setting {key!r} must be a mapping with keys {sorted(fields)} or null, got {value!r}"
        )
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ValueError(f"{protocol}: setting {key!r} has unknown key(s) {unknown}; allowed: {sorted(fields)}")
    try:
        return build(**{fields[name]: option for name, option in value.items()})
    except ValueError as error:
        raise ValueError(f"{protocol}: setting {key!r}: {error}") from None


def _columns(protocol: str, test: TestSet, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in test.frame.columns]
    if missing:
        raise ManifestError(f"{test.root}: the manifest lacks column(s) {missing} that protocol {protocol!r} needs")


# ---------------------------------------------------------------------------------------------
# Features


def unit(features: np.ndarray) -> np.ndarray:
    """Rows L2-normalised as ``EmbeddingModel.embed`` does it (``F.normalize``, same dtype)."""
    return F.normalize(torch.from_numpy(np.ascontiguousarray(features)), dim=1).numpy()


def image_features(embed: Embedder, rows: pd.DataFrame, flip: bool) -> np.ndarray:
    """Unit features of ``rows``; with ``flip`` insightface's ``emb(x) + emb(flip(x))``, normalised."""
    features = embed(rows, False)
    if not flip:
        return unit(features)
    return flip_sum_embeddings(features, embed(rows, True))


def _metric_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items()}


# ---------------------------------------------------------------------------------------------
# retrieval


def retrieval_per_query(embeddings: np.ndarray, labels: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per query that has a same-label item (``ids``: its row): its R@1 hit and its AP@R, from
    :func:`circle_repro.evaluation.retrieval.retrieval_per_query`, whose means are the ``R@1`` and
    ``MAP@R`` of ``retrieval_metrics(embeddings, labels, ks)`` (``ks`` is checked as it checks it)."""
    _positive_ints("retrieval", list(ks), "ks")
    per_query = library_retrieval_per_query(embeddings, labels)
    return {
        "ids": per_query["ids"],
        "R@1": (per_query["first_hit_rank"] < 1).astype(np.float64),
        "MAP@R": per_query["AP@R"],
    }


def retrieval(embed: Embedder, test: TestSet, settings: Mapping[str, Any]) -> ProtocolResult:
    """R@K, MAP@R and R-precision with query = every test image, gallery = all others (cosine)."""
    s = _settings("retrieval", settings, {"ks": None}, required=("ks",))
    ks = _positive_ints("retrieval", s["ks"], "ks")
    features = unit(embed(test.frame, False))
    labels = test.frame["label"].to_numpy()
    metrics = retrieval_metrics(features, labels, ks=ks)
    trivial = ()
    if len(np.unique(labels)) == 1:
        trivial = (
            f"the test set has one class ({labels[0]}): every neighbour matches, so R@K, MAP@R and "
            "R-precision are 1.0 for any model",
        )
    return ProtocolResult(_metric_floats(metrics), retrieval_per_query(features, labels, ks), (features, labels),
                          trivial)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# verification_pairs


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
    return _metric_floats(metrics), per_pair


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
    s = _settings("verification_pairs", settings, {"n_folds": 10, "fars": [1e-3], "flip": False})
    flip = _flag("verification_pairs", s, "flip")
    fars = _fars("verification_pairs", s["fars"])
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
    _columns("verification_pairs", test, ("template", "media"))
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


# ---------------------------------------------------------------------------------------------
# reid


def reid(embed: Embedder, test: TestSet, settings: Mapping[str, Any]) -> ProtocolResult:
    """CMC Rank-k, mAP and mINP of the ``query`` rows against the ``gallery`` rows (fast-reid's protocol,
    :func:`circle_repro.evaluation.reid.evaluate`): pids from ``label``, cameras from ``camera``."""
    name = "reid"
    defaults = {"ranks": [1, 5, 10], "flip": False, "query_expansion": None, "rerank": None}
    s = _settings(name, settings, defaults)
    ranks = _positive_ints(name, s["ranks"], "ranks")
    flip = _flag(name, s, "flip")
    expansion = _options(
        name,
        "query_expansion",
        s["query_expansion"],
        reid_eval.QueryExpansion,
        {"k": "k", "alpha": "alpha", "times": "times"},
    )
    reranking = _options(name, "rerank", s["rerank"], Reranking, {"k1": "k1", "k2": "k2", "lambda": "lambda_value"})
    _columns(name, test, ("role", "camera"))
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
    return ProtocolResult(_metric_floats(metrics), per_query, (features, pids))


# ---------------------------------------------------------------------------------------------
# ijb


def ijb(embed: Embedder, test: TestSet, settings: Mapping[str, Any]) -> ProtocolResult:
    """IJB-C 1:1: media-pooled template features, cosine template-pair scores, insightface's TAR@FAR
    (:mod:`circle_repro.evaluation.ijb`). Defaults are insightface's: flip, norm score and detector
    score all on."""
    name = "ijb"
    defaults = {"flip": True, "use_norm_score": True, "use_detector_score": True, "fars": list(IJB_FARS)}
    s = _settings(name, settings, defaults)
    flip, norm_score, detector = (_flag(name, s, key) for key in ("flip", "use_norm_score", "use_detector_score"))
    fars = _fars(name, s["fars"])
    _columns(name, test, ("template", "media"))
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
    return ProtocolResult(_metric_floats(metrics), {"ids": np.zeros(0, dtype=np.int64)}, None)


# ---------------------------------------------------------------------------------------------
# megaface


def megaface(embed: Embedder, test: TestSet, settings: Mapping[str, Any]) -> ProtocolResult:
    """MegaFace Challenge 1: the ``query`` rows (FaceScrub probes, identity labels) against the
    ``gallery`` rows (distractors), with the prepared noise lists; rank-1 and TAR@FAR
    (:func:`circle_repro.evaluation.megaface.evaluate`). ``n_distractors`` keeps the first n
    distractors in manifest order (``megaface_lst`` order)."""
    name = "megaface"
    s = _settings(name, settings, {"flip": False, "fars": [1e-6], "n_distractors": None})
    flip = _flag(name, s, "flip")
    fars = _fars(name, s["fars"])
    _columns(name, test, ("role",))
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
    return ProtocolResult(_metric_floats(metrics), per_query, (probe_feats, probe_ids))


PROTOCOLS: dict[str, Protocol] = {
    "retrieval": retrieval,
    "verification_pairs": verification_pairs,
    "reid": reid,
    "ijb": ijb,
    "megaface": megaface,
}


def get_protocol(name: str) -> Protocol:
    """The registered protocol ``name``; ValueError naming the known ones otherwise."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown evaluation protocol {name!r}; allowed: {sorted(PROTOCOLS)}") from None

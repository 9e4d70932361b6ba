"""Evaluation protocols, one module each, in one registry: ``PROTOCOLS[name](embed, test, settings)``.

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

from circle_repro.engine.protocols.base import Embedder, Protocol, ProtocolResult, TestSet, image_features, unit
from circle_repro.engine.protocols.ijb import ijb
from circle_repro.engine.protocols.megaface import megaface
from circle_repro.engine.protocols.reid import reid
from circle_repro.engine.protocols.retrieval import retrieval, retrieval_per_query
from circle_repro.engine.protocols.verification import trivial_pairs, verification_pairs

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


__all__ = [
    "PROTOCOLS",
    "Embedder",
    "Protocol",
    "ProtocolResult",
    "TestSet",
    "get_protocol",
    "ijb",
    "image_features",
    "megaface",
    "reid",
    "retrieval",
    "retrieval_per_query",
    "trivial_pairs",
    "unit",
    "verification_pairs",
]

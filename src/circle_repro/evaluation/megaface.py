"""MegaFace Challenge 1 (FaceScrub probes vs. up to 1M distractors): rank-1 and TAR@FAR=1e-6.

References: insightface ``recognition/_evaluation_/megaface/remove_noises.py`` and ``run.sh``
(the ArcFace "polished" protocol the paper follows), then the MegaFace devkit's
identification / verification experiment.

Noise lists (:func:`replace_noisy_probes`, :func:`remove_noises`):

* a FaceScrub probe listed in ``facescrub_noises.txt`` is replaced by its identity's
  clean-feature centre (the **sum** of the identity's clean probe features, as insightface
  accumulates it) plus ``U(-0.001, 0.001)`` noise on every dimension, then L2-normalised. The
  noise is drawn from ``np.random.default_rng(seed)``: row i of ``uniform(-0.001, 0.001,
  (n_noisy, d))`` goes to the i-th noisy probe in input order, so results are reproducible;
* a MegaFace distractor listed in ``megaface_noises.txt`` gets an extra feature dimension set to
  100 (clean features get 0 there), which pushes it far from every probe.

Scores: the devkit ranks by Euclidean distance, so the score of two features is
``-||a - b||²`` over the extended (d+1)-dim features. For unit-norm clean features this is
``2 cos - 2``, the same order as cosine similarity. :func:`evaluate` never materialises the
extra dimension: a noisy distractor just has ``100² = 10⁴`` added to its squared norm; and it
computes the halved score ``a·b - |a|²/2 - |b|²/2`` in a single matrix product of augmented
rows (same order, same decisions; ``MegaFaceResult.threshold`` is reported unhalved).

Metrics (:class:`MegaFaceResult`):

* **rank-1 identification**: for each probe p of identity i and each *other* probe g of identity
  i (g plays the gallery image hidden among the distractors), a success when
  ``score(p, g) > max_d score(p, d)`` over all distractors d; averaged over all such ordered
  (p, g) pairs;
* **TAR@FAR** (default 1e-6) **verification**: genuine pairs are the same (p, g) pairs, impostor
  pairs are all probe x distractor pairs; TAR is the largest TPR among thresholds with FAR <= the
  target (the rule of :func:`circle_repro.evaluation.verification.tar_at_far`).

Distractors are processed in chunks of columns within ``max_chunk_bytes``; per probe only the
running maximum is kept, and for the impostor side only the running top (m + 1) scores, where
m is the number of false accepts the FAR allows. Nothing of size probes x all distractors is held.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circle_repro.evaluation.inputs import binary_vector, finite_matrix, to_numpy
from circle_repro.evaluation.verification import check_fars, max_false_accepts

NOISE_EXTRA_VALUE = 100.0
PROBE_NOISE_SCALE = 0.001


@dataclass(frozen=True)
class MegaFaceResult:
    """Rank-1 identification rate and TAR at ``far`` (fractions in [0, 1])."""

    rank1: float
    tar: float
    far: float
    threshold: float
    n_probe_pairs: int
    n_distractors: int
    # Only with ``evaluate(..., pair_hits=True)``: every ordered (probe, gallery probe) pair of one
    # identity as rows of probe indices, sorted, and whether it is a rank-1 success (mean: ``rank1``).
    probe_pairs: np.ndarray | None = None
    pair_hits: np.ndarray | None = None


def _features(values: object, name: str, normalize: bool) -> np.ndarray:
    x = finite_matrix(values, name, dtype=np.float32)
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(x.dtype).tiny)
    return x


def _flags(values: object | None, name: str, n: int, n_of: str) -> np.ndarray:
    if values is None:
        return np.zeros(n, dtype=bool)
    return binary_vector(values, name, n, n_of)


def _identities(probe_ids: object, n: int) -> np.ndarray:
    ids = to_numpy(probe_ids)
    if ids.ndim != 1 or len(ids) != n:
        raise ValueError(f"probe_ids must be 1-D with one entry per probe ({n}), got shape {ids.shape}")
    return ids


def replace_noisy_probes(
    probe_feats: np.ndarray, probe_ids: np.ndarray, probe_noisy: np.ndarray, *, seed: int = 0
) -> np.ndarray:
    """insightface's FaceScrub noise handling on (already prepared) probe features; returns a copy."""
    feats = np.array(probe_feats, copy=True)
    noisy = np.flatnonzero(probe_noisy)
    if len(noisy) == 0:
        return feats
    clean = ~probe_noisy
    noise = np.random.default_rng(seed).uniform(-PROBE_NOISE_SCALE, PROBE_NOISE_SCALE, (len(noisy), feats.shape[1]))
    for row, i in enumerate(noisy):
        members = (probe_ids == probe_ids[i]) & clean
        if not members.any():
            raise ValueError(f"probe_noisy: identity {probe_ids[i]!r} has no clean probe to take a centre from")
        replaced = feats[members].sum(axis=0) + noise[row].astype(feats.dtype)
        feats[i] = replaced / np.linalg.norm(replaced)
    return feats


def remove_noises(
    probe_feats: object,
    probe_ids: object,
    probe_noisy: object,
    distractor_feats: object,
    distractor_noisy: object,
    *,
    seed: int = 0,
    normalize: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The explicit (d+1)-dim features of insightface's ``remove_noises.py``: ``(probes, distractors)``.

    Probes: noisy ones replaced (module docstring), extra dimension 0. Distractors: extra
    dimension 100 when noisy, 0 when clean. With ``normalize`` the d-dim features are
    L2-normalised first (insightface's stored features are).
    """
    probes = _features(probe_feats, "probe_feats", normalize)
    distractors = _features(distractor_feats, "distractor_feats", normalize)
    ids = _identities(probe_ids, len(probes))
    probes = replace_noisy_probes(
        probes, ids, _flags(probe_noisy, "probe_noisy", len(probes), "probe_feats"), seed=seed
    )
    extra = _flags(distractor_noisy, "distractor_noisy", len(distractors), "distractor_feats") * NOISE_EXTRA_VALUE
    return (
        np.hstack([probes, np.zeros((len(probes), 1), dtype=probes.dtype)]),
        np.hstack([distractors, extra[:, None].astype(distractors.dtype)]),
    )


def _augmented(x: np.ndarray, half_sq: np.ndarray, side: str) -> np.ndarray:
    """Rows ``[x, 1, -|x|²/2]`` (left) or ``[x, -|x|²/2, 1]`` (right): their dot product is
    ``x·y - |x|²/2 - |y|²/2 = -||x - y||² / 2``, so one matrix product yields the (halved) score
    with no elementwise pass over the block."""
    out = np.empty((len(x), x.shape[1] + 2), dtype=x.dtype)
    out[:, : x.shape[1]] = x
    ones, norms = (-2, -1) if side == "left" else (-1, -2)
    out[:, ones] = 1
    out[:, norms] = -half_sq
    return out


def _scores(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Halved scores ``-||a_i - b_j||² / 2`` of augmented rows (see ``_augmented``)."""
    return left @ right.T


def _merge_top(top: np.ndarray, block: np.ndarray, row_max: np.ndarray, keep: int) -> np.ndarray:
    """The ``keep`` largest values of ``top`` and ``block`` together (as a multiset up to ties at the minimum).

    Only values that can enter are read: those above the current minimum of a full ``top``, and
    those at or above the ``keep``-th largest row maximum of the block (the block alone has
    ``keep`` values that large), found through the rows whose maximum reaches the bar.
    """
    bar, strict = -np.inf, False
    if keep <= len(row_max):
        bar = np.partition(row_max, len(row_max) - keep)[len(row_max) - keep]
    if len(top) == keep and top.min() >= bar:
        bar, strict = top.min(), True
    rows = np.flatnonzero(row_max > bar if strict else row_max >= bar)
    values = block[rows] if len(rows) < len(block) else block
    top = np.concatenate([top, values[values > bar] if strict else values[values >= bar]])
    if len(top) > keep:
        top = np.partition(top, len(top) - keep)[len(top) - keep :]
    return top


def evaluate(
    probe_feats: object,
    probe_ids: object,
    distractor_feats: object,
    *,
    probe_noisy: object | None = None,
    distractor_noisy: object | None = None,
    seed: int = 0,
    far: float = 1e-6,
    normalize: bool = True,
    chunk_size: int | None = None,
    max_chunk_bytes: int = 256 * 2**20,
    pair_hits: bool = False,
) -> MegaFaceResult:
    """Rank-1 identification and TAR@``far`` of FaceScrub probes against MegaFace distractors.

    See the module docstring for the protocol. ``probe_noisy`` / ``distractor_noisy`` are the
    boolean noise-list flags (None: nothing listed). Distractors are validated, normalised and
    scored ``chunk_size`` at a time (default: as many as keep the probes x chunk score block, a
    boolean mask and a copy of it, plus the normalised chunk, within ``max_chunk_bytes``; at
    least one); ``distractor_feats`` is never copied whole (a memory map works). Results do not
    depend on the chunking. ``pair_hits=True`` also returns the rank-1 decision of every
    (probe, gallery probe) pair (``MegaFaceResult.probe_pairs`` / ``pair_hits``).
    """
    probes = _features(probe_feats, "probe_feats", normalize)
    distractors = to_numpy(distractor_feats)  # validated and normalised chunk by chunk: no full copy
    if distractors.ndim != 2 or len(distractors) == 0:
        raise ValueError(f"distractor_feats must be a non-empty 2-D array (n × dim), got shape {distractors.shape}")
    if probes.shape[1] != distractors.shape[1]:
        raise ValueError(
            f"probe_feats and distractor_feats must have the same dimension, got {probes.shape[1]} and {distractors.shape[1]}"
        )
    dtype = np.result_type(probes.dtype, distractors.dtype, np.float32)
    probes = probes.astype(dtype, copy=False)
    ids = _identities(probe_ids, len(probes))
    probes = replace_noisy_probes(
        probes, ids, _flags(probe_noisy, "probe_noisy", len(probes), "probe_feats"), seed=seed
    )
    noisy_distractor = _flags(distractor_noisy, "distractor_noisy", len(distractors), "distractor_feats")
    (far,) = check_fars([far], "far")
    n_p, n_d = len(probes), len(distractors)
    if chunk_size is None:
        if isinstance(max_chunk_bytes, bool) or not isinstance(max_chunk_bytes, int) or max_chunk_bytes < 1:
            raise ValueError(f"max_chunk_bytes must be a positive integer, got {max_chunk_bytes!r}")
        column_bytes = n_p * (2 * probes.itemsize + 1) + 2 * probes.shape[1] * probes.itemsize
        columns = max(1, max_chunk_bytes // column_bytes)
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    else:
        columns = chunk_size

    # Genuine pairs: every ordered pair of different probes of one identity.
    # Scores are computed halved (-||a - b||² / 2): the same order and the same decisions.
    probe_half_sq = np.einsum("ij,ij->i", probes, probes) / 2
    left = _augmented(probes, probe_half_sq, "left")
    _, codes = np.unique(ids, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1]])
    groups = [g for g in np.split(order, starts[1:]) if len(g) > 1]
    if not groups:
        raise ValueError("probe_ids: no identity has two probes, so there is no (probe, gallery) pair")

    # Distractors: per-probe maximum and the top (m + 1) impostor scores, chunk by chunk.
    n_negative = n_p * n_d
    keep = max_false_accepts(far, n_negative) + 1  # the (m+1)-th highest impostor score sets the threshold
    best = np.full(n_p, -np.inf, dtype=dtype)
    top = np.zeros(0, dtype=dtype)
    for start in range(0, n_d, columns):
        chunk = _features(distractors[start : start + columns], "distractor_feats", normalize).astype(dtype, copy=False)
        extra_sq = np.where(noisy_distractor[start : start + columns], NOISE_EXTRA_VALUE**2, 0.0)
        chunk_half_sq = ((np.einsum("ij,ij->i", chunk, chunk) + extra_sq) / 2).astype(dtype)
        block = _scores(left, _augmented(chunk, chunk_half_sq, "right"))
        row_max = block.max(axis=1)
        np.maximum(best, row_max, out=best)
        if keep <= n_negative:
            top = _merge_top(top, block, row_max, keep)
        del block

    successes = genuine_total = 0
    genuine, pairs, hits = [], [], []
    for members in groups:
        block = _scores(left[members], _augmented(probes[members], probe_half_sq[members], "right"))
        off_diagonal = ~np.eye(len(members), dtype=bool)
        beats = (block > best[members][:, None]) & off_diagonal
        successes += int(np.count_nonzero(beats))
        genuine_total += len(members) * (len(members) - 1)
        genuine.append(block[off_diagonal])
        if pair_hits:
            rows, cols = np.nonzero(off_diagonal)
            pairs.append(np.stack([members[rows], members[cols]], axis=1))
            hits.append(beats[off_diagonal])
    probe_pairs = hit_flags = None
    if pair_hits:
        probe_pairs, hit_flags = np.concatenate(pairs), np.concatenate(hits)
        order = np.lexsort((probe_pairs[:, 1], probe_pairs[:, 0]))
        probe_pairs, hit_flags = probe_pairs[order], hit_flags[order]
    genuine_scores = np.concatenate(genuine)
    if keep <= n_negative:
        threshold = float(top.min())
        tar = np.count_nonzero(genuine_scores > threshold) / len(genuine_scores)
        threshold *= 2  # back to -||a - b||²
    else:  # every impostor may be accepted
        threshold, tar = -np.inf, 1.0
    return MegaFaceResult(
        rank1=successes / genuine_total,
        tar=float(tar),
        far=far,
        threshold=threshold,
        n_probe_pairs=genuine_total,
        n_distractors=n_d,
        probe_pairs=probe_pairs,
        pair_hits=hit_flags,
    )

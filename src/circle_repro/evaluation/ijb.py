"""IJB-B / IJB-C 1:1 verification: template pooling, pair scores and TAR@FAR (insightface's rule).

Reference: insightface ``recognition/arcface_torch/eval_ijbc.py``.

* Image features (:func:`template_features`). insightface's defaults are
  ``use_flip_test=True`` (feature = f(img) + f(flip(img)): pass ``flipped_feats``),
  ``use_norm_score=True`` (image features are **not** L2-normalised, so the norm acts as a
  quality weight: ``norm_score=True`` here too) and ``use_detector_score=True`` (features are
  multiplied by the detector's faceness score: pass ``detector_scores``).
* Media pooling: within a template, the images of one media id (frames of a video) are
  averaged (a single image is kept as is), the media features are summed, and the template
  feature is L2-normalised (a zero vector stays zero, like ``sklearn.preprocessing.normalize``).
  Templates come out sorted by id (``np.unique``), as in insightface.
* Scores (:func:`score_pairs`): cosine similarity of the two template features (a dot product
  of unit vectors), computed in bounded memory.
* TAR@FAR (:func:`tar_at_far_ijb`): insightface computes ``sklearn.metrics.roc_curve(labels,
  scores)`` (default ``drop_intermediate=True``), flips both arrays, and for each target FAR
  takes the TPR of the ROC point whose FPR is **nearest** to the target (exact distance ties go
  to the larger TPR, thanks to the flip). This module reproduces that result exactly, from one
  sort of the scores and a streaming pass, without materialising the ROC. It is a different rule
  from :func:`circle_repro.evaluation.verification.tar_at_far` (largest TPR with FPR <= target).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from circle_repro.evaluation.inputs import binary_vector, finite_matrix, to_numpy, vector
from circle_repro.evaluation.verification import check_fars

ArrayLike = np.ndarray | Sequence
IJB_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
_STREAM_BLOCK = 1 << 18
# Dense blocks of the t1 x t2 similarity matrix beat gathering both rows of every pair unless
# the pairs fill fewer than 1 in this many cells of the used t1 x t2 rectangle (measured: a
# row-gathered dot product costs about 50-100x a matrix-product cell on this kind of CPU).
_DENSE_WASTE_LIMIT = 64


def template_features(
    feats: ArrayLike,
    template_ids: ArrayLike,
    media_ids: ArrayLike,
    *,
    flipped_feats: ArrayLike | None = None,
    detector_scores: ArrayLike | None = None,
    norm_score: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Media-pooled, L2-normalised template features: ``(templates, template_feats)``.

    ``feats`` are image features (n × d), one row per image, with its ``template_ids`` and
    ``media_ids``. Before pooling: ``flipped_feats`` (if given) is added; with
    ``norm_score=False`` every image feature is L2-normalised (insightface's
    ``use_norm_score=False``); ``detector_scores`` (if given) multiply the features. Pooling is
    done in float64; the result has the input's floating dtype (float32 stays float32).
    """
    x = finite_matrix(feats, "feats")
    n = len(x)
    templates_of = vector(template_ids, "template_ids", n, "feats")
    media_of = vector(media_ids, "media_ids", n, "feats")
    out_dtype = x.dtype
    x = x.astype(np.float64)
    if flipped_feats is not None:
        flipped = finite_matrix(flipped_feats, "flipped_feats")
        if flipped.shape != x.shape:
            raise ValueError(f"flipped_feats must have the shape of feats {x.shape}, got {flipped.shape}")
        x = x + flipped
    if not norm_score:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    if detector_scores is not None:
        scores = vector(detector_scores, "detector_scores", n, "feats").astype(np.float64)
        if not np.isfinite(scores).all():
            raise ValueError("detector_scores contains NaN or infinite values")
        x = x * scores[:, None]

    templates, t_codes = np.unique(templates_of, return_inverse=True)
    _, m_codes = np.unique(media_of, return_inverse=True)
    order = np.lexsort((m_codes, t_codes))
    t_sorted, m_sorted = t_codes[order], m_codes[order]
    new_media = np.r_[True, (t_sorted[1:] != t_sorted[:-1]) | (m_sorted[1:] != m_sorted[:-1])]
    media_starts = np.flatnonzero(new_media)
    media_sizes = np.diff(np.r_[media_starts, n])
    media_feats = np.add.reduceat(x[order], media_starts, axis=0) / media_sizes[:, None]
    media_template = t_sorted[media_starts]
    template_starts = np.flatnonzero(np.r_[True, media_template[1:] != media_template[:-1]])
    pooled = np.add.reduceat(media_feats, template_starts, axis=0)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    pooled = np.where(norms > 0, pooled / np.where(norms > 0, norms, 1.0), 0.0)
    return templates, pooled.astype(out_dtype, copy=False)


class _RowLookup:
    """Template id -> row of the template matrix, for chunks of pair ids."""

    def __init__(self, templates: np.ndarray) -> None:
        if len(np.unique(templates)) != len(templates):
            raise ValueError("templates must not contain duplicate ids")
        self.order = np.argsort(templates, kind="stable")
        self.sorted = templates[self.order]
        self.table = None
        if np.issubdtype(templates.dtype, np.integer) and len(templates):
            low, high = int(self.sorted[0]), int(self.sorted[-1])
            if low >= 0 and high < 8 * len(templates) + (1 << 20):
                self.table = np.full(high + 1, -1, dtype=np.int64 if len(templates) > 2**31 - 1 else np.int32)
                self.table[self.sorted] = self.order

    def mapping(self, row_values: np.ndarray):
        """A function of (already validated) ids: ``row_values[row of id]``, through one table when possible."""
        if self.table is not None:
            composed = row_values[np.maximum(self.table, 0)]
            return lambda ids: composed[ids] if np.issubdtype(ids.dtype, np.integer) else row_values[self.rows(ids, "")]
        return lambda ids: row_values[self.rows(ids, "")]

    def rows(self, ids: np.ndarray, name: str) -> np.ndarray:
        if self.table is not None and np.issubdtype(ids.dtype, np.integer):
            if len(ids) and (ids.min() < 0 or ids.max() >= len(self.table)):
                inside = (ids >= 0) & (ids < len(self.table))
                rows = np.full(len(ids), -1, dtype=self.table.dtype)
                rows[inside] = self.table[ids[inside]]
            else:
                rows = self.table[ids]
            missing = rows < 0
        else:
            pos = np.minimum(np.searchsorted(self.sorted, ids), len(self.sorted) - 1)
            missing = self.sorted[pos] != ids
            rows = self.order[pos]
        if missing.any():
            raise ValueError(f"{name} contains template ids not in templates, e.g. {ids[missing][:5].tolist()}")
        return rows


def _pair_chunks(n: int, size: int) -> Iterable[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _block_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One dense block ``a @ b.T`` of template similarities."""
    return a @ b.T


def score_pairs(
    templates: ArrayLike,
    template_feats: ArrayLike,
    pairs_t1: ArrayLike,
    pairs_t2: ArrayLike,
    *,
    max_chunk_bytes: int = 32 * 2**20,
    method: str = "auto",
) -> np.ndarray:
    """Cosine score of every template pair ``(pairs_t1[i], pairs_t2[i])``.

    ``templates`` / ``template_feats`` as returned by :func:`template_features` (rows
    unit-norm). Two exact strategies, both bounded by ``max_chunk_bytes`` of work space:

    * ``"dense"``: blocks of rows of the (used t1 templates) x (used t2 templates) similarity
      matrix by matrix product, each pair reading its cell (IJB pairs are gallery x probe
      templates, so the rectangle is well filled); the side with more templates is blocked;
    * ``"gather"``: chunks of pairs, gathering both feature rows and taking row-wise dot
      products (best when the pairs are a sparse subset of the rectangle).

    ``"auto"`` picks ``"dense"`` unless the rectangle has more than 64 cells per pair. Scores
    have the features' dtype. Besides the scores, the dense strategy holds the features of the
    smaller side and a block index per pair (1-2 bytes); the similarity block stays within
    ``max_chunk_bytes`` and the other buffers within about twice that.
    """
    ids = vector(templates, "templates")
    feats = finite_matrix(template_feats, "template_feats")
    if len(ids) != len(feats):
        raise ValueError(f"templates has {len(ids)} entries but template_feats has {len(feats)} rows")
    t1 = vector(pairs_t1, "pairs_t1")
    t2 = vector(pairs_t2, "pairs_t2", len(t1), "pairs_t1")
    if method not in ("auto", "dense", "gather"):
        raise ValueError(f"method must be 'auto', 'dense' or 'gather', got {method!r}")
    if isinstance(max_chunk_bytes, bool) or not isinstance(max_chunk_bytes, int) or max_chunk_bytes < 1:
        raise ValueError(f"max_chunk_bytes must be a positive integer, got {max_chunk_bytes!r}")
    n_pairs, dim, item = len(t1), feats.shape[1], feats.dtype.itemsize
    scores = np.empty(n_pairs, dtype=feats.dtype)
    if n_pairs == 0:
        return scores
    lookup = _RowLookup(ids)
    id_chunk = max(1024, max_chunk_bytes // 64)  # pairs whose ids are mapped at once (~40 B of temporaries each)

    # Which template rows each side uses (validates every id on the way).
    used1 = np.zeros(len(ids), dtype=bool)
    used2 = np.zeros(len(ids), dtype=bool)
    for part in _pair_chunks(n_pairs, id_chunk):
        used1[lookup.rows(t1[part], "pairs_t1")] = True
        used2[lookup.rows(t2[part], "pairs_t2")] = True
    rows1, rows2 = np.flatnonzero(used1), np.flatnonzero(used2)
    if method == "auto":
        method = "dense" if len(rows1) * len(rows2) <= _DENSE_WASTE_LIMIT * n_pairs else "gather"

    if method == "gather":
        pairs_per_chunk = max(1, max_chunk_bytes // (2 * dim * item))
        for part in _pair_chunks(n_pairs, pairs_per_chunk):
            a = feats[lookup.rows(t1[part], "pairs_t1")]
            b = feats[lookup.rows(t2[part], "pairs_t2")]
            scores[part] = np.einsum("ij,ij->i", a, b)
        return scores

    # Dense: blocks of rows of the side with more distinct templates, against all of the other
    # side (the score is symmetric), so the gathered "other" features stay small.
    if len(rows1) >= len(rows2):
        blocked, blocked_used, blocked_rows, other, other_used, other_rows = t1, used1, rows1, t2, used2, rows2
    else:
        blocked, blocked_used, blocked_rows, other, other_used, other_rows = t2, used2, rows2, t1, used1, rows1
    index_type = np.int32 if len(ids) < 2**31 else np.int64
    # id -> index among the blocked side's rows / column among the other side's rows
    position = lookup.mapping((np.cumsum(blocked_used) - 1).astype(index_type))
    column = lookup.mapping((np.cumsum(other_used) - 1).astype(index_type))
    other_feats = feats[other_rows]
    n_columns = len(other_rows)
    block_rows = max(1, max_chunk_bytes // (n_columns * item))
    n_blocks = -(-len(blocked_rows) // block_rows)
    block_dtype = next(t for t in (np.uint8, np.uint16, np.uint32) if n_blocks <= np.iinfo(t).max)
    block_of = np.empty(n_pairs, dtype=block_dtype)
    for part in _pair_chunks(n_pairs, id_chunk):
        block_of[part] = position(blocked[part]) // block_rows
    for k in range(n_blocks):
        first = k * block_rows
        sims = _block_product(feats[blocked_rows[first : first + block_rows]], other_feats).ravel()
        members = np.flatnonzero(block_of == k)
        for part in _pair_chunks(len(members), id_chunk):
            idx = members[part]
            cell = (position(blocked[idx]) - first).astype(np.int64) * n_columns + column(other[idx])
            scores[idx] = sims[cell]
        del sims
    return scores


def _roc_points_descending(sorted_scores: np.ndarray, positive_first: np.ndarray, n_positive: int):
    """sklearn's (fps, tps) per distinct threshold, highest threshold first, in blocks."""
    n = len(sorted_scores)
    top = n
    while top > 0:
        low = max(0, top - _STREAM_BLOCK)
        window = sorted_scores[max(low - 1, 0) : top]
        first = window[1:] != window[:-1] if low > 0 else np.r_[True, window[1:] != window[:-1]]
        j = low + np.flatnonzero(first)  # first index of each distinct value, ascending
        tps = n_positive - np.searchsorted(positive_first, j, side="left")
        fps = (n - j) - tps
        yield fps[::-1], tps[::-1]
        top = low


def _drop_intermediate(points):
    """sklearn's ``drop_intermediate``: keep the ends and every point where the curve bends."""
    carry_f = carry_t = np.zeros(0, dtype=np.int64)
    seen = 0
    for fps, tps in points:
        f, t = np.r_[carry_f, fps], np.r_[carry_t, tps]
        if seen == 0 and len(f):
            yield f[:1], t[:1]
        if len(f) >= 3:
            bend = (np.diff(f, 2) != 0) | (np.diff(t, 2) != 0)
            yield f[1:-1][bend], t[1:-1][bend]
        seen += len(fps)
        carry_f, carry_t = f[-2:], t[-2:]
    if seen >= 2:
        yield carry_f[-1:], carry_t[-1:]


def tar_at_far_ijb(scores: ArrayLike, labels: ArrayLike, fars: Iterable[float] = IJB_FARS) -> dict[float, float]:
    """insightface's IJB TAR@FAR: TPR of the ROC point (after ``drop_intermediate``) nearest to each FAR.

    Equal to ``fpr, tpr, _ = roc_curve(labels, scores); fpr, tpr = flipud(fpr), flipud(tpr)``
    followed by ``tpr[argmin over (|fpr - far|, index)]`` (module docstring), bit for bit, with
    one sort of the scores and O(block) extra memory.
    """
    s = to_numpy(scores)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {s.shape}")
    if len(s) == 0:
        raise ValueError("scores is empty: at least one pair is needed")
    if not np.issubdtype(s.dtype, np.number) or not np.isfinite(s).all():
        raise ValueError("scores must be finite real numbers (NaN or infinite values found)")
    y = binary_vector(labels, "labels", len(s), "scores")
    targets = np.asarray(check_fars(fars), dtype=np.float64)
    n_positive = int(np.count_nonzero(y))
    n_negative = len(s) - n_positive
    if n_positive == 0 or n_negative == 0:
        raise ValueError("labels must contain both genuine (1) and impostor (0) pairs")

    sorted_scores = np.sort(s)
    positive_first = np.searchsorted(sorted_scores, np.sort(s[y]), side="left")
    best_distance = np.full(len(targets), np.inf)
    best_tpr = np.zeros(len(targets))
    kept = _drop_intermediate(_roc_points_descending(sorted_scores, positive_first, n_positive))
    start = [(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))]  # roc_curve's (0, 0) point
    for fps, tps in itertools.chain(start, kept):
        if len(fps) == 0:
            continue
        fpr = fps.astype(np.float64) / float(n_negative)
        distance = np.abs(fpr[None, :] - targets[:, None])
        last_min = len(fpr) - 1 - np.argmin(distance[:, ::-1], axis=1)
        d_min = distance[np.arange(len(targets)), last_min]
        better = d_min <= best_distance  # later points win distance ties (flipud + min)
        best_distance[better] = d_min[better]
        best_tpr[better] = tps[last_min[better]] / float(n_positive)
    return {float(f): float(t) for f, t in zip(targets, best_tpr, strict=True)}

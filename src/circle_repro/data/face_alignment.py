"""5-point face alignment to the 112 x 112 ArcFace template (numpy; PIL for the JPEG round trip).

insightface aligns a loose face crop by estimating the least-squares similarity transform
(rotation + uniform scale + shift, no reflection: Umeyama 1991, as ``skimage``'s
``SimilarityTransform.estimate``) that maps the five detected landmarks (left eye, right eye, nose
tip, left and right mouth corners) onto :data:`ARCFACE_DST`, then warps the image with
``cv2.warpAffine(img, M, (112, 112), borderValue=0.0)`` (bilinear; pixel centres at integer
coordinates; samples outside the image read 0). References: insightface
``recognition/arcface_torch/eval_ijbc.py`` (template ``[30.2946, ...]`` with ``x + 8``) and
``python-package/insightface/utils/face_align.py`` (``arcface_dst``): the same five points.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from circle_repro.data.image_store import JPEG_QUALITY, open_raw_image

ALIGNED_SIZE = 112
# insightface's arcface_dst: the 5 reference points of a 112 x 112 aligned face, (x, y) in pixels.
ARCFACE_DST = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 matrix ``M`` of the similarity transform minimising ``sum ||M [p; 1] - q||²`` over
    point pairs ``(p, q)`` of ``src`` and ``dst`` (each n x 2, n >= 2). Raises ValueError when the
    source points coincide (no unique transform) or hold non-finite values."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"expected two n x 2 point arrays of the same shape (n >= 2), got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("landmarks contain NaN or infinite values")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centred, dst_centred = src - src_mean, dst - dst_mean
    src_variance = (src_centred**2).sum() / len(src)
    if src_variance <= 1e-12 * max(1.0, float(np.abs(src).max()) ** 2):
        raise ValueError("the source landmarks coincide: no similarity transform is defined")
    covariance = dst_centred.T @ src_centred / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    signs = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])  # a rotation, never a reflection
    rotation = u @ np.diag(signs) @ vt
    scale = float(singular @ signs) / src_variance
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """``cv2.warpAffine(image, matrix, (size, size), borderValue=0)`` in numpy: output pixel (x, y)
    is the bilinear sample of ``image`` at ``matrix⁻¹ (x, y)``, reading 0 outside the image.

    ``image`` is H x W x C (or H x W) uint8; the result has the same number of channels.
    """
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError(f"expected an H x W (x C) uint8 image, got {pixels.dtype} with shape {pixels.shape}")
    squeeze = pixels.ndim == 2
    if squeeze:
        pixels = pixels[:, :, None]
    forward = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(forward)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = sx - x0, sy - y0
    height, width, channels = pixels.shape
    flat = pixels.reshape(-1, channels)
    out = np.zeros((size, size, channels), dtype=np.float64)
    for dy, dx, weight in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        row, col = y0 + dy, x0 + dx
        inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)  # outside the image reads 0
        index = np.where(inside, row * width + col, 0)
        out += flat[index] * np.where(inside, weight, 0.0)[..., None]
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out[:, :, 0] if squeeze else out


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """The ``size`` x ``size`` ArcFace-aligned face of ``image`` given its 5 landmarks (5 x 2, x then y)."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"expected 5 landmarks as a 5 x 2 array, got shape {points.shape}")
    return warp_affine(image, estimate_similarity(points, ARCFACE_DST * (size / ALIGNED_SIZE)), size)


def aligned_jpeg(data: bytes, landmarks: np.ndarray) -> bytes:
    """An encoded image and its 5 landmarks (10 numbers, x then y per point) -> the 112 x 112 ArcFace-aligned
    face as JPEG bytes (RGB). An image over the pixel limit raises ``Image.DecompressionBombError``
    (:func:`~circle_repro.data.image_store.open_raw_image`) before it is decoded."""
    with open_raw_image(data) as image:
        image.load()
        pixels = np.asarray(image.convert("RGB"))
    buffer = io.BytesIO()
    Image.fromarray(align_face(pixels, np.asarray(landmarks).reshape(5, 2))).save(
        buffer, format="JPEG", quality=JPEG_QUALITY
    )
    return buffer.getvalue()


__all__ = ["ALIGNED_SIZE", "ARCFACE_DST", "align_face", "aligned_jpeg", "estimate_similarity", "warp_affine"]

"""face_alignment: the least-squares similarity is recovered exactly, the warp samples like cv2.warpAffine."""

import numpy as np
import pytest

from circle_repro.data.face_alignment import ALIGNED_SIZE, ARCFACE_DST, align_face, estimate_similarity, warp_affine


def similarity(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_arcface_template_is_insightfaces():
    """arcface_dst = eval_ijbc.py's [30.2946, ...] template with x + 8."""
    legacy = np.array(
        [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655], [62.7299, 92.2041]]
    )
    np.testing.assert_allclose(ARCFACE_DST, legacy + np.array([8.0, 0.0]), atol=1e-12)


@pytest.mark.parametrize(
    ("angle", "scale", "shift"), [(0.3, 1.7, (12.5, -4.0)), (-2.5, 0.42, (-30.0, 77.25)), (0.0, 1.0, (0, 0))]
)
def test_a_known_similarity_is_recovered_exactly(angle, scale, shift):
    src = np.array([[10.0, 20.0], [55.0, 18.0], [33.0, 40.0], [15.0, 61.0], [50.0, 63.0]])
    known = similarity(angle, scale, shift)
    estimated = estimate_similarity(src, apply(known, src))
    np.testing.assert_allclose(estimated, known, atol=1e-10)
    np.testing.assert_allclose(estimate_similarity(ARCFACE_DST, ARCFACE_DST), similarity(0, 1, (0, 0)), atol=1e-12)


def test_noisy_points_give_the_least_squares_similarity():
    """Against the linear least-squares solution over (a, b, tx, ty): x' = a x - b y + tx, y' = b x + a y + ty."""
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    dst = apply(similarity(0.7, 0.8, (5.0, 9.0)), src) + rng.normal(0, 1.5, (5, 2))
    design = np.zeros((10, 4))
    design[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(5), np.zeros(5)]
    design[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(5), np.ones(5)]
    a, b, tx, ty = np.linalg.lstsq(design, dst.ravel(), rcond=None)[0]
    np.testing.assert_allclose(estimate_similarity(src, dst), [[a, -b, tx], [b, a, ty]], atol=1e-9)


def test_a_mirrored_target_still_gives_a_rotation_not_a_reflection():
    src = ARCFACE_DST
    mirrored = src * [-1.0, 1.0]
    matrix = estimate_similarity(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


@pytest.mark.parametrize(
    ("src", "message"),
    [(np.zeros((5, 2)) + 3.0, "coincide"), (np.full((5, 2), np.nan), "NaN"), (np.zeros((5, 3)), "n x 2")],
)
def test_degenerate_landmarks_are_refused(src, message):
    with pytest.raises(ValueError, match=message):
        estimate_similarity(src, np.zeros(src.shape))


def test_warp_of_a_linear_ramp_is_exact_and_outside_reads_zero():
    """Bilinear sampling reproduces a linear image exactly; pixel centres sit at integer coordinates."""
    ys, xs = np.mgrid[0:60, 0:50]
    ramp = (2 * xs + ys + 10).astype(np.uint8)
    shift = similarity(0.0, 1.0, (-3.5, -7.25))  # output (x, y) <- input (x + 3.5, y + 7.25)
    out = warp_affine(ramp, shift, size=40).astype(float)
    oy, ox = np.mgrid[0:40, 0:40]
    expected = 2 * (ox + 3.5) + (oy + 7.25) + 10
    inside = (ox + 3.5 <= 48) & (oy + 7.25 <= 58)
    np.testing.assert_array_equal(out[inside], np.rint(expected[inside]))
    far = warp_affine(ramp, similarity(0.0, 1.0, (500.0, 500.0)), size=8)
    assert not far.any()


def test_align_face_matches_opencv_warp_affine():
    """Same geometry and interpolation as insightface's cv2.warpAffine(img, M, (112, 112), borderValue=0)."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (90, 80, 3), dtype=np.uint8)
    landmarks = apply(similarity(0.2, 0.6, (4.0, -2.0)), ARCFACE_DST) + rng.normal(0, 1.0, (5, 2))
    ours = align_face(image, landmarks)
    reference = cv2.warpAffine(
        image, estimate_similarity(landmarks, ARCFACE_DST), (ALIGNED_SIZE, ALIGNED_SIZE), borderValue=0.0
    )
    assert ours.shape == (112, 112, 3)
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1  # cv2 interpolates in 1/32-pixel fixed point


def test_aligned_landmarks_land_on_the_template():
    """A bright dot at each landmark of the source ends up at the template point."""
    landmarks = apply(similarity(-0.3, 0.5, (10.0, 15.0)), ARCFACE_DST)
    image = np.zeros((100, 100), dtype=np.uint8)
    for x, y in np.rint(landmarks).astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    aligned = align_face(image, np.rint(landmarks))
    for x, y in np.rint(ARCFACE_DST).astype(int):
        assert aligned[y, x] > 100
    with pytest.raises(ValueError, match="5 landmarks"):
        align_face(image, landmarks[:4])

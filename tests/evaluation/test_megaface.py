"""megaface: rank-1 and TAR@FAR against a brute-force full matrix, insightface's noise handling, chunking."""

import numpy as np
import pytest

from circle_repro.evaluation import megaface
from circle_repro.evaluation.megaface import evaluate, remove_noises, replace_noisy_probes
from circle_repro.evaluation.verification import max_false_accepts


def small_data(seed, n_ids=12, per_id=5, n_distractors=800, dim=12):
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_ids) * 10 + 3, per_id)
    centres = rng.normal(size=(n_ids, dim))
    probes = np.repeat(centres, per_id, axis=0) + rng.normal(size=(len(ids), dim)) * 0.9
    distractors = rng.normal(size=(n_distractors, dim))
    probe_noisy = rng.random(len(ids)) < 0.15
    probe_noisy[::per_id] = False  # every identity keeps a clean probe
    distractor_noisy = rng.random(n_distractors) < 0.1
    return probes, ids, distractors, probe_noisy, distractor_noisy


def brute_force(probes, ids, distractors, far):
    """The devkit's quantities from full matrices of -squared Euclidean distance on (d+1)-dim features."""
    to_distractors = -np.sum((probes[:, None, :] - distractors[None, :, :]) ** 2, axis=-1)
    among_probes = -np.sum((probes[:, None, :] - probes[None, :, :]) ** 2, axis=-1)
    genuine = (ids[:, None] == ids[None, :]) & ~np.eye(len(ids), dtype=bool)
    best_distractor = to_distractors.max(axis=1)
    rank1 = np.mean(among_probes[genuine] > np.broadcast_to(best_distractor[:, None], genuine.shape)[genuine])
    impostors = np.sort(to_distractors.ravel())[::-1]
    m = max_false_accepts(far, len(impostors))
    tar = 1.0 if m >= len(impostors) else np.mean(among_probes[genuine] > impostors[m])
    return rank1, tar


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("far", [1e-6, 1e-3, 0.02])
@pytest.mark.parametrize("chunk_size", [None, 1, 97])
def test_matches_brute_force_full_matrix(seed, far, chunk_size):
    probes, ids, distractors, probe_noisy, distractor_noisy = small_data(seed)
    extended = remove_noises(probes, ids, probe_noisy, distractors, distractor_noisy, seed=seed)
    expected_rank1, expected_tar = brute_force(*extended[:1], ids, extended[1], far)
    result = evaluate(
        probes,
        ids,
        distractors,
        probe_noisy=probe_noisy,
        distractor_noisy=distractor_noisy,
        seed=seed,
        far=far,
        chunk_size=chunk_size,
    )
    assert result.rank1 == pytest.approx(expected_rank1, abs=1e-12)
    assert result.tar == pytest.approx(expected_tar, abs=1e-12)
    assert result.n_probe_pairs == 12 * 5 * 4
    assert result.n_distractors == 800


def test_noise_handling_hand_case():
    probes = np.array([[2.0, 0, 0], [0, 3.0, 0], [0, 0, 5.0], [0, 0, 1.0], [0, 0.8, 0.6]])
    ids = np.array([7, 7, 7, 9, 9])
    noisy = np.array([False, False, True, False, False])
    distractors = np.array([[0, 0, 4.0], [1.0, 1.0, 0]])
    p, d = remove_noises(probes, ids, noisy, distractors, [True, False], seed=11)
    # The noisy probe becomes the sum of its identity's clean unit features (1, 1, 0) plus
    # U(-0.001, 0.001) noise from default_rng(11), normalised; the extra dimension is 0 for probes.
    noise = np.random.default_rng(11).uniform(-0.001, 0.001, (1, 3))[0]
    centre = np.array([1.0, 1.0, 0.0]) + noise
    np.testing.assert_allclose(p[2], np.r_[centre / np.linalg.norm(centre), 0.0])
    np.testing.assert_allclose(p[[0, 1, 3, 4]], [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0.8, 0.6, 0]])
    # Noisy distractor: extra dimension 100; clean: 0.
    np.testing.assert_allclose(d, [[0, 0, 1, 100], [2**-0.5, 2**-0.5, 0, 0]])
    # Distractor 0 points exactly where probe 3 does. Listed as noise it never wins, so identity 9
    # succeeds on both of its pairs; clean, it beats (or exactly ties) both. Identity 7 is
    # orthogonal to distractor 0, so its six pairs come out the same both ways.
    listed = evaluate(probes, ids, distractors, probe_noisy=noisy, distractor_noisy=[True, False], seed=11, far=0.5)
    clean = evaluate(probes, ids, distractors, probe_noisy=noisy, distractor_noisy=[False, False], seed=11, far=0.5)
    assert listed.rank1 == pytest.approx(brute_force(p, ids, d, 0.5)[0])
    assert listed.n_probe_pairs == 3 * 2 + 2 * 1
    assert listed.rank1 - clean.rank1 == pytest.approx(2 / 8)


def test_noise_is_seeded():
    probes, ids, _, probe_noisy, _ = small_data(3)
    unit = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    a = replace_noisy_probes(unit, ids, probe_noisy, seed=1)
    b = replace_noisy_probes(unit, ids, probe_noisy, seed=1)
    c = replace_noisy_probes(unit, ids, probe_noisy, seed=2)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c)[probe_noisy].max() > 0
    np.testing.assert_array_equal(a[~probe_noisy], unit[~probe_noisy])


def test_distractor_chunks_stay_within_the_budget(monkeypatch):
    probes, ids, distractors, _, _ = small_data(4)
    shapes = []
    original = megaface._scores

    def recording(left, right):
        shapes.append((left.shape[0], right.shape[0]))
        return original(left, right)

    monkeypatch.setattr(megaface, "_scores", recording)
    column_bytes = 60 * (8 + 1 + 8) + 2 * 12 * 8  # score block, mask, a copy; normalised distractor
    budget = 64 * column_bytes
    limited = evaluate(probes, ids, distractors, max_chunk_bytes=budget)
    distractor_blocks = [s for s in shapes if s[0] == len(probes)]
    assert len(distractor_blocks) == -(-800 // 64)
    assert all(cols * column_bytes <= budget for _, cols in distractor_blocks)
    whole = evaluate(probes, ids, distractors, chunk_size=800)
    assert (limited.rank1, limited.tar) == (whole.rank1, whole.tar)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"probe_ids": np.arange(59)}, "probe_ids"),
        ({"probe_noisy": np.zeros(3, dtype=bool)}, "probe_noisy"),
        ({"distractor_noisy": np.full(800, 2)}, "distractor_noisy"),
        ({"distractor_feats": np.full((4, 12), np.nan)}, "distractor_feats"),
        ({"probe_feats": np.zeros((0, 12))}, "probe_feats"),
        ({"distractor_feats": np.ones((4, 5))}, "dimension"),
        ({"probe_ids": np.arange(60)}, "no identity has two probes"),
        ({"probe_noisy": np.r_[np.ones(5, dtype=bool), np.zeros(55, dtype=bool)]}, "no clean probe"),
        ({"far": 2.0}, "far"),
    ],
)
def test_bad_input_raises_naming_the_argument(kwargs, message):
    probes, ids, distractors, _, _ = small_data(0)
    arguments = {"probe_feats": probes, "probe_ids": ids, "distractor_feats": distractors, **kwargs}
    with pytest.raises(ValueError, match=message):
        evaluate(**arguments)

import numpy as np
import pytest

from circle_repro.data.samplers import PKSampler, max_pk_batches


def _labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def _check_batches(sampler, labels):
    indices = list(sampler)
    assert len(indices) == len(sampler)
    p, k = sampler.p, sampler.k
    batches = np.asarray(indices).reshape(-1, p * k)
    for batch in batches:
        groups = labels[batch].reshape(p, k)
        assert (groups == groups[:, :1]).all(), "each group of K is one class"
        assert len(set(groups[:, 0])) == p, "P distinct classes per batch"
    return batches


def test_balanced_classes_use_every_image_group():
    labels = _labels([20] * 6)
    sampler = PKSampler(labels, p=3, k=4, seed=0)
    batches = _check_batches(sampler, labels)
    assert len(batches) == 6 * 5 // 3
    assert sorted(np.concatenate(batches).tolist()) == list(range(120)), "no image repeats when counts divide K"


@pytest.mark.parametrize("seed", range(30))
def test_length_is_exact_on_imbalanced_data(seed):
    rng = np.random.default_rng(seed)
    labels = _labels(rng.integers(1, 30, size=rng.integers(3, 25)))
    p = int(rng.integers(2, min(len(np.unique(labels)), 6) + 1))
    sampler = PKSampler(labels, p=p, k=int(rng.integers(2, 5)), seed=seed)
    sampler.set_epoch(seed)
    _check_batches(sampler, labels)
    # every class with at least one group appears: the greedy draw serves the largest classes first
    assert len(sampler) // (sampler.p * sampler.k) == max_pk_batches(
        [max(1, c // sampler.k) for c in np.bincount(labels)], p
    )


def test_small_classes_are_drawn_with_replacement():
    labels = _labels([2, 2, 9])
    sampler = PKSampler(labels, p=2, k=4, seed=0)
    batches = _check_batches(sampler, labels)
    assert len(batches) == 2


def test_deterministic_per_seed_and_epoch():
    labels = _labels([12] * 5)
    a, b = PKSampler(labels, 2, 3, seed=1), PKSampler(labels, 2, 3, seed=1)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)
    assert list(PKSampler(labels, 2, 3, seed=2)) != list(a)


def test_ranks_get_disjoint_equal_shares():
    labels = _labels([16] * 8)
    shares = [list(PKSampler(labels, 2, 4, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert len({len(s) for s in shares}) == 1
    flat = [i for share in shares for i in share]
    assert len(flat) == len(set(flat))
    single = list(PKSampler(labels, 2, 4, seed=3))
    assert set(flat) <= set(single)


def test_max_pk_batches_hand_cases():
    assert max_pk_batches([10, 1, 1], 2) == 2
    assert max_pk_batches([3, 3, 3], 3) == 3
    assert max_pk_batches([5, 5], 3) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": 1, "k": 4}, "p >= 2 and k >= 2"),
        ({"p": 2, "k": 1}, "p >= 2 and k >= 2"),
        ({"p": 5, "k": 2}, "at least 5 classes"),
        ({"p": 2, "k": 2, "rank": 2, "world_size": 2}, "rank must be in"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PKSampler(_labels([4, 4, 4]), **kwargs)

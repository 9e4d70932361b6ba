"""The report's intervals against scipy and hand-computed cases."""

import math

import numpy as np
import pytest
from scipy import stats

from circle_repro.report.stats import paired_bootstrap, t_interval


@pytest.mark.parametrize(
    "values", [[0.90, 0.92], [1.0, 2.0, 3.0], [0.5, 0.61, 0.47, 0.55, 0.58], list(np.linspace(0, 1, 10))]
)
def test_t_interval_matches_scipy(values):
    sem = np.std(values, ddof=1) / math.sqrt(len(values))
    low, high = stats.t.interval(0.95, df=len(values) - 1, loc=np.mean(values), scale=sem)
    interval = t_interval(values)
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-12)
    assert interval.estimate == pytest.approx(np.mean(values)) and interval.n == len(values)


def test_t_interval_by_hand():
    # Closed-form Student-t quantiles: df=1 (Cauchy) t_p = tan(pi (p - 1/2)); df=2 t_p = (2p - 1) / sqrt(2 p (1 - p)).
    p = 0.975
    # [1, 2, 3]: mean 2, sample sd 1, sem 1/sqrt(3); t(0.975, 2) = 4.3027
    half_width = (2 * p - 1) / math.sqrt(2 * p * (1 - p)) / math.sqrt(3)
    interval = t_interval([1.0, 2.0, 3.0])
    assert (interval.low, interval.high) == pytest.approx((2 - half_width, 2 + half_width), abs=1e-12)
    # [90, 92]: mean 91, sd sqrt(2), sem 1; t(0.975, 1) = 12.7062
    interval = t_interval([90.0, 92.0])
    assert (interval.low, interval.high) == pytest.approx(
        (91 - math.tan(math.pi * (p - 0.5)), 91 + math.tan(math.pi * (p - 0.5))), abs=1e-9
    )


def test_one_seed_has_no_interval_and_none_has_no_estimate():
    single = t_interval([0.7])
    assert single.estimate == 0.7 and single.n == 1 and not single.has_interval
    empty = t_interval([])
    assert empty.n == 0 and math.isnan(empty.estimate)


def test_bootstrap_of_identical_losses_is_zero():
    rng = np.random.default_rng(1)
    runs = [rng.integers(0, 2, 50).astype(float) for _ in range(3)]
    interval = paired_bootstrap(runs, runs, resamples=500)
    assert (interval.estimate, interval.low, interval.high) == (0.0, 0.0, 0.0)


def test_bootstrap_of_a_constant_shift_is_that_shift():
    rng = np.random.default_rng(2)
    base = [rng.uniform(size=40), rng.uniform(size=40)]
    # per-seed shifts 0.25 and 0.75: every replicate averages the two seeds' shifts
    interval = paired_bootstrap([base[0] + 0.25, base[1] + 0.75], base, resamples=500)
    assert (interval.estimate, interval.low, interval.high) == pytest.approx((0.5, 0.5, 0.5), abs=1e-12)


def test_bootstrap_of_two_queries_by_hand():
    # differences (0, 1): a replicate mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5 % and 97.5 % percentiles are 0 and 1
    interval = paired_bootstrap([np.array([1.0, 1.0])], [np.array([1.0, 0.0])], resamples=4000, seed=3)
    assert (interval.estimate, interval.low, interval.high) == (0.5, 0.0, 1.0)


def test_bootstrap_is_seeded_and_agrees_with_scipy():
    rng = np.random.default_rng(4)
    circle = (rng.uniform(size=400) < 0.7).astype(float)
    baseline = (rng.uniform(size=400) < 0.6).astype(float)
    first = paired_bootstrap([circle], [baseline], resamples=20_000, seed=5)
    assert paired_bootstrap([circle], [baseline], resamples=20_000, seed=5) == first
    reference = stats.bootstrap(
        (circle, baseline), lambda a, b, axis: a.mean(axis=axis) - b.mean(axis=axis), paired=True,
        vectorized=True, n_resamples=20_000, method="percentile", rng=np.random.default_rng(6),
    ).confidence_interval  # fmt: skip
    assert first.estimate == pytest.approx(circle.mean() - baseline.mean(), abs=1e-12)
    # two independent Monte-Carlo runs of the same percentile bootstrap: endpoints agree to ~0.005
    assert (first.low, first.high) == pytest.approx((reference.low, reference.high), abs=0.006)


def test_bootstrap_refuses_unpaired_inputs():
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap([np.ones(3)], [np.ones(4)])
    with pytest.raises(ValueError, match="number of seeds"):
        paired_bootstrap([np.ones(3)], [])

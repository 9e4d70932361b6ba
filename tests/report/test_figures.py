"""Each report figure: a non-blank PNG from hand-made inputs, and a clear error for a missing input."""

import importlib
import inspect
import pkgutil
from pathlib import Path

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from circle_repro.layout import run_dir_of
from circle_repro.report import figures
from circle_repro.report.figures import (
    FIGURES,
    PairSample,
    best_over_gamma,
    gradient_maps,
    load_pair_sample,
    mean_ci,
    moving_band,
    roc_curves,
    sensitivity,
    sensitivity_figure,
    similarity_distributions,
    similarity_pairs,
    training_dynamics,
)

RNG = np.random.default_rng(0)


def assert_non_blank_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)[..., :3]
    assert pixels.var() > 1e-3, f"{path} is (nearly) one colour"


def history(iterations: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    steps = np.arange(1, iterations + 1)
    return pd.DataFrame(
        {
            "iteration": steps,
            "loss": 1.0,
            "s_p": 0.3 + 0.6 * (1 - np.exp(-steps / 10)) + rng.normal(0, 0.02, iterations),
            "s_n": 0.3 * np.exp(-steps / 10) + rng.normal(0, 0.02, iterations),
        }
    )


def pair_sample(seed: int = 0) -> PairSample:
    rng = np.random.default_rng(seed)
    return PairSample(s_n=rng.normal(0.05, 0.1, 500), s_p=rng.normal(0.8, 0.08, 500), trajectory=history(seed=seed))


SAMPLES = {
    "CircleLoss": (RNG.uniform(0.5, 1, 300), RNG.uniform(-0.2, 0.4, 300)),
    "AM-Softmax": (RNG.uniform(0.3, 1, 300), RNG.uniform(-0.1, 0.6, 300)),
}


def test_every_figure_function_has_a_spec_and_every_spec_a_function():
    names = [info.name for info in pkgutil.iter_modules(figures.__path__)]
    assert sorted(names) == ["canvas", "dynamics", "gradient_maps", "sensitivity", "similarities"]
    modules = [importlib.import_module(f"{figures.__name__}.{name}") for name in names]
    writers = {
        name
        for module in modules
        for name, fn in inspect.getmembers(module, inspect.isfunction)
        if fn.__module__ == module.__name__ and name in figures.__all__ and "path" in inspect.signature(fn).parameters
    }
    assert writers == set(FIGURES)
    assert all(spec.caption for spec in FIGURES.values())


def test_similarity_distributions(tmp_path):
    assert_non_blank_png(similarity_distributions(SAMPLES, tmp_path / "d.png"))
    with pytest.raises(ValueError, match="samples"):
        similarity_distributions({}, tmp_path / "e.png")
    with pytest.raises(ValueError, match="CircleLoss has no s_n"):
        similarity_distributions({"CircleLoss": (np.ones(3), np.array([]))}, tmp_path / "e.png")


def test_gradient_maps(tmp_path, repo_params):
    settings = repo_params["report"]["gradient_maps"]
    assert_non_blank_png(gradient_maps(settings, tmp_path / "g.png", resolution=21))
    with pytest.raises(ValueError, match=r"\['circle'\]"):
        gradient_maps({k: v for k, v in settings.items() if k != "circle"}, tmp_path / "e.png")


def test_training_dynamics_with_one_frame_or_several_seeds(tmp_path):
    histories = {"CircleLoss": [history(seed=0), history(seed=1)], "AM-Softmax": history(seed=2)}
    path = training_dynamics(histories, tmp_path / "sub" / "t.png")
    assert_non_blank_png(path)
    assert [p.name for p in path.parent.iterdir()] == ["t.png"], "no temporary file is left behind"
    with pytest.raises(ValueError, match="training history"):
        training_dynamics({}, tmp_path / "e.png")
    with pytest.raises(ValueError, match="CircleLoss has an empty"):
        training_dynamics({"CircleLoss": []}, tmp_path / "e.png")
    with pytest.raises(ValueError, match=r"CircleLoss's history lacks column\(s\) \['s_n'\]"):
        training_dynamics({"CircleLoss": history().drop(columns="s_n")}, tmp_path / "e.png")


def test_moving_band_pools_seeds_and_window_by_hand():
    first = pd.DataFrame({"iteration": [1, 2, 3], "s_p": [0.0, 2.0, np.nan]})
    second = pd.DataFrame({"iteration": [1, 2, 3], "s_p": [2.0, 4.0, 6.0]})
    band = moving_band([first, second], "s_p", window=2)
    # iteration 1: {0, 2}; iteration 2: {0, 2, 2, 4}; iteration 3: {2, 4, 6} (NaN skipped)
    assert band["mean"].tolist() == pytest.approx([1.0, 2.0, 4.0])
    assert band["std"].tolist() == pytest.approx([1.0, np.sqrt(2.0), np.sqrt(8 / 3)])
    assert band["n"].tolist() == [2, 4, 3]


def test_similarity_pairs(tmp_path):
    samples = {"AM-Softmax": pair_sample(0), "CircleLoss": pair_sample(1)}
    assert_non_blank_png(similarity_pairs(samples, tmp_path / "p.png", circle_m=0.325, line_m=0.35, max_points=200))
    assert_non_blank_png(similarity_pairs({"CircleLoss": pair_sample()}, tmp_path / "q.png", circle_m=0.25))
    with pytest.raises(ValueError, match="pair sample"):
        similarity_pairs({}, tmp_path / "e.png", circle_m=0.25)
    with pytest.raises(ValueError, match="circle_m or line_m"):
        similarity_pairs(samples, tmp_path / "e.png")
    empty = PairSample(np.array([]), np.array([]), history())
    with pytest.raises(ValueError, match="CircleLoss has no test-set s_n"):
        similarity_pairs({"CircleLoss": empty}, tmp_path / "e.png", line_m=0.35)
    no_trajectory = PairSample(np.zeros(3), np.ones(3), pd.DataFrame({"iteration": [1]}))
    with pytest.raises(ValueError, match=r"CircleLoss's trajectory lacks column\(s\) \['s_n', 's_p'\]"):
        similarity_pairs({"CircleLoss": no_trajectory}, tmp_path / "e.png", line_m=0.35)


def test_load_pair_sample_reads_a_run_folder(metrics_files):
    run_dir = run_dir_of(metrics_files[0])
    sample = load_pair_sample(run_dir)
    with np.load(metrics_files[0].parent / "similarities.npz") as data:
        assert np.array_equal(sample.s_n, data["s_n"]) and np.array_equal(sample.s_p, data["s_p"])
    assert list(sample.trajectory["iteration"]) == list(range(1, 21))
    (run_dir / "history.csv").unlink()
    with pytest.raises(ValueError, match=r"has no history.csv"):
        load_pair_sample(run_dir)


def sweep_frame() -> pd.DataFrame:
    rows = [
        {
            "loss": loss,
            "parameter": "gamma",
            "value": gamma,
            "seed": seed,
            "metric": 0.9 - 0.01 * abs(np.log2(gamma / 256)) + 0.005 * seed - shift,
        }
        for loss, shift in (("CircleLoss", 0.0), ("AM-Softmax", 0.02))
        for gamma in (32, 64, 128, 256, 512, 1024)
        for seed in (0, 1, 2)
    ]
    rows += [
        {"loss": "CircleLoss", "parameter": "m", "value": m, "seed": seed, "metric": 0.9 - (m - 0.2) ** 2 + seed / 200}
        for m in np.round(np.arange(-0.2, 0.31, 0.05), 2)
        for seed in (0, 1, 2)
    ]
    return pd.DataFrame(rows)


def test_sensitivity(tmp_path):
    frame = sweep_frame()
    assert_non_blank_png(sensitivity(frame, tmp_path / "s.png", metric_label="accuracy"))
    gamma_only = frame[(frame["parameter"] == "gamma") & (frame["loss"] == "CircleLoss")].drop(columns="loss")
    assert_non_blank_png(sensitivity(gamma_only, tmp_path / "g.png"))
    with pytest.raises(ValueError, match="empty frame"):
        sensitivity(frame.iloc[:0], tmp_path / "e.png")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['seed'\]"):
        sensitivity(frame.drop(columns="seed"), tmp_path / "e.png")
    with pytest.raises(ValueError, match="more than one row per run"):
        sensitivity(pd.concat([frame, frame.iloc[:1]]), tmp_path / "e.png")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['lr'\]"):
        sensitivity(frame.assign(parameter="lr"), tmp_path / "e.png")


def figure3_frame() -> pd.DataFrame:
    """Fig. 3 as the paper sweeps it: Circle over gamma and m, AM-Softmax over gamma, ArcFace at 32, 64, 128."""
    rows = [
        {
            "loss": loss,
            "parameter": "gamma",
            "value": gamma,
            "seed": 0,
            "metric": 90 - abs(np.log2(gamma / peak)) - shift,
        }
        for loss, gammas, peak, shift in (
            ("CircleLoss", (32, 64, 128, 256, 512, 1024), 256, 0.0),
            ("AM-Softmax", (32, 64, 128, 256, 512, 1024), 64, 1.0),
            ("ArcFace", (32, 64, 128), 128, 0.5),
        )
        for gamma in gammas
    ]
    rows += [
        {"loss": "CircleLoss", "parameter": "m", "value": m, "seed": 0, "metric": 90 - 20 * (m - 0.2) ** 2}
        for m in np.round(np.arange(-0.2, 0.31, 0.05), 2)
    ]
    return pd.DataFrame(rows)


def test_sensitivity_draws_the_baselines_in_both_panels():
    figure = sensitivity_figure(figure3_frame(), metric_label="rank-1 (%)")
    gamma_axis, m_axis = figure.axes
    assert gamma_axis.get_xlabel() == "scale γ" and m_axis.get_xlabel() == "margin m"
    curves = {container.get_label(): container.lines[0].get_xydata() for container in gamma_axis.containers}
    assert set(curves) == {"CircleLoss", "AM-Softmax", "ArcFace"}
    assert curves["ArcFace"][:, 0].tolist() == [32, 64, 128]
    assert curves["AM-Softmax"][:, 0].tolist() == [32, 64, 128, 256, 512, 1024]
    assert [container.get_label() for container in m_axis.containers] == ["CircleLoss"]
    best = {line.get_label(): line.get_ydata()[0] for line in m_axis.lines if line.get_linestyle() == "--"}
    assert best == {"best AM-Softmax (γ=64)": pytest.approx(89.0), "best ArcFace (γ=128)": pytest.approx(89.5)}
    legend = {text.get_text() for text in figure.legends[0].get_texts()}
    assert {"CircleLoss", "AM-Softmax", "ArcFace", "best AM-Softmax (γ=64)", "best ArcFace (γ=128)"} <= legend
    plt.close(figure)


def test_best_over_gamma_takes_the_highest_mean_per_loss():
    frame = figure3_frame()
    frame = pd.concat([frame, frame.assign(seed=1, metric=frame["metric"] - 2)])
    best = best_over_gamma(mean_ci(frame)).set_index("loss")
    assert best.loc["AM-Softmax", "value"] == 64 and best.loc["AM-Softmax", "mean"] == pytest.approx(88.0)
    assert best.loc["CircleLoss", "value"] == 256 and best.loc["ArcFace", "value"] == 128


def test_mean_ci_is_the_t_interval_over_seeds():
    frame = pd.DataFrame(
        {"parameter": ["m"] * 3, "value": [0.25, 0.25, 0.3], "seed": [0, 1, 0], "metric": [0.8, 0.9, 0.7]}
    )
    summary = mean_ci(frame).set_index("value")
    assert summary.loc[0.25, "mean"] == pytest.approx(0.85) and summary.loc[0.25, "n"] == 2
    half_width = stats.t.ppf(0.975, df=1) * np.std([0.8, 0.9], ddof=1) / np.sqrt(2)
    assert summary.loc[0.25, ["low", "high"]].tolist() == pytest.approx([0.85 - half_width, 0.85 + half_width])
    assert summary.loc[0.3, ["low", "high"]].isna().all(), "one seed has no interval"


def test_roc_curves(tmp_path):
    assert_non_blank_png(roc_curves(SAMPLES, tmp_path / "r.png"))
    with pytest.raises(ValueError, match="samples"):
        roc_curves({}, tmp_path / "e.png")
    with pytest.raises(ValueError, match="AM-Softmax has no s_p"):
        roc_curves({"AM-Softmax": (np.array([]), np.ones(2))}, tmp_path / "e.png")

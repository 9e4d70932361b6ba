"""Hand-made evaluated runs for the report tests: deterministic and hand-checkable.

R@1 and 10-fold accuracy per (loss, seed) are exact fractions of the per-query arrays written beside
each metrics.json, so every mean, interval and paired comparison can be checked by hand.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from circle_repro.config import RunSpec, config_hash, train_config
from circle_repro.layout import evaluation_dir

N_QUERIES = 200
N_PAIRS = 300
R1 = {("CircleLoss", 0): 0.90, ("CircleLoss", 1): 0.92, ("CircleLoss", 2): 0.94,
      ("Triplet", 0): 0.80, ("Triplet", 1): 0.84, ("Triplet", 2): 0.82}  # fmt: skip
ACCURACY = {"Softmax": 0.80, "NormFace": 0.82, "AM-Softmax": 0.85, "ArcFace": 0.86, "CircleLoss": 0.87}
SEED_SHIFT = {0: 0.0, 1: 0.01, 2: -0.01}
PROVENANCE = {"git_commit": "abc1234", "data_hash": "d4t4h45h", "device": "cpu", "world_size": "1"}


def _hits(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """``n`` zeros and ones, exactly ``round(fraction * n)`` ones, in a seeded random order."""
    hits = np.zeros(n)
    hits[: round(fraction * n)] = 1.0
    return rng.permutation(hits)


def write_run(root: Path, params: dict, run: RunSpec, metrics: dict, per_query: dict, untrained: dict) -> Path:
    """One evaluated run folder as `circle-repro evaluate` leaves it; returns its metrics.json."""
    run_dir = run.run_dir(root)
    out = evaluation_dir(run_dir)
    out.mkdir(parents=True)
    rng = np.random.default_rng([run.seed, len(run.loss)])
    record = {
        "run_id": run.run_id,
        "experiment": run.experiment,
        "loss": run.loss,
        "seed": run.seed,
        "table": params["experiments"][run.experiment]["table"],
        "dataset": params["experiments"][run.experiment]["dataset"],
        "metrics": metrics,
        "untrained_metrics": untrained,
        "mlflow_run_id": f"mlflow-{run.experiment}-{run.loss}-{run.seed}",
        "weights_uri": f"mlflow-artifacts:/1/mlflow-{run.experiment}-{run.loss}-{run.seed}/artifacts/model.pth",
        "config_hash": config_hash(train_config(params, run)),
        "provenance": PROVENANCE,
    }
    (out / "metrics.json").write_text(json.dumps(record))
    np.savez(out / "per_query.npz", **per_query)
    np.savez(out / "similarities.npz", s_p=rng.uniform(0.5, 1, 100), s_n=rng.uniform(-0.2, 0.5, 100))
    pd.DataFrame({"iteration": range(1, 21), "loss": 1.0, "s_p": rng.uniform(size=20), "s_n": 0.1}).to_csv(
        run_dir / "history.csv", index=False
    )
    return out / "metrics.json"


def write_demo_runs(root: Path, params: dict) -> list[Path]:
    """Every run of the demo profile (2 retrieval losses, 5 verification losses, 3 seeds each; the sweep)."""
    files = []
    for (loss, seed), r1 in R1.items():
        rng = np.random.default_rng([seed, len(loss), 1])
        hits, ap = _hits(rng, N_QUERIES, r1), rng.uniform(0.3, 0.7, N_QUERIES)
        metrics = {"R@1": hits.mean(), "R@2": min(1.0, r1 + 0.05), "R@4": 0.99, "R@8": 1.0, "MAP@R": ap.mean()}
        untrained = {"R@1": 0.5 + seed / 10, "R@2": 0.6, "R@4": 0.7, "R@8": 0.8, "MAP@R": 0.1}
        per_query = {"ids": np.arange(N_QUERIES), "R@1": hits, "MAP@R": ap}
        files.append(write_run(root, params, RunSpec("demo_retrieval", loss, seed), metrics, per_query, untrained))
    for loss, accuracy in ACCURACY.items():
        for seed, shift in SEED_SHIFT.items():
            rng = np.random.default_rng([seed, len(loss), 2])
            correct = _hits(rng, N_PAIRS, accuracy + shift)
            metrics = {"accuracy": correct.mean(), "accuracy_std": 0.02, "TAR@FAR=0.001": 0.3, "TAR@FAR=0.01": 0.5,
                       "TAR@FAR=0.1": 0.8}  # fmt: skip
            untrained = {"accuracy": 0.6, "accuracy_std": 0.03, "TAR@FAR=0.001": 0.01, "TAR@FAR=0.01": 0.05,
                         "TAR@FAR=0.1": 0.2}  # fmt: skip
            per_query = {"ids": np.arange(N_PAIRS), "accuracy": correct}
            files.append(
                write_run(root, params, RunSpec("demo_verification", loss, seed), metrics, per_query, untrained)
            )
    sweep = params["experiments"]["demo_sensitivity"]
    for index, loss in enumerate(sweep["losses"]):
        for seed in sweep["seeds"]:
            correct = _hits(np.random.default_rng([seed, index, 3]), N_PAIRS, 0.6 + index / 100)
            metrics = {"accuracy": correct.mean(), "accuracy_std": 0.02, "TAR@FAR=0.001": 0.3, "TAR@FAR=0.01": 0.5,
                       "TAR@FAR=0.1": 0.8}  # fmt: skip
            per_query = {"ids": np.arange(N_PAIRS), "accuracy": correct}
            files.append(write_run(root, params, RunSpec("demo_sensitivity", loss, seed), metrics, per_query, {}))
    return files

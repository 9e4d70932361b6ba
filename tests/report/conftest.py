"""Hand-made evaluated runs for the report tests."""

import json

import numpy as np
import pandas as pd
import pytest

R1 = {("CircleLoss", 0): 0.90, ("CircleLoss", 1): 0.92, ("Triplet", 0): 0.80, ("Triplet", 1): 0.84}


@pytest.fixture
def metrics_files(tmp_path, repo_params):
    files = []
    rng = np.random.default_rng(0)
    for (loss, seed), r1 in R1.items():
        run_dir = tmp_path / "runs" / "demo_retrieval" / loss / f"seed{seed}"
        run_dir.mkdir(parents=True)
        record = {
            "run_id": f"demo_retrieval/{loss}/seed{seed}",
            "experiment": "demo_retrieval",
            "loss": loss,
            "seed": seed,
            "table": "table5",
            "dataset": "mnist5k",
            "metrics": {"R@1": r1, "R@2": r1 + 0.05, "R@4": 0.99, "R@8": 1.0, "MAP@R": 0.5},
            "untrained_metrics": {"R@1": 0.5 + seed / 10, "R@2": 0.6, "R@4": 0.7, "R@8": 0.8, "MAP@R": 0.1},
            "mlflow_run_id": f"mlflow-{loss}-{seed}",
            "config_hash": "abc123",
        }
        (run_dir / "metrics.json").write_text(json.dumps(record))
        np.savez(run_dir / "similarities.npz", s_p=rng.uniform(0.5, 1, 100), s_n=rng.uniform(-0.2, 0.5, 100))
        pd.DataFrame({"iteration": range(1, 21), "loss": 1.0, "s_p": rng.uniform(size=20), "s_n": 0.1}).to_csv(
            run_dir / "history.csv", index=False
        )
        files.append(run_dir / "metrics.json")
    return files



"""Validation during training (train.validation): logged per interval, and training unchanged by it."""

import copy
import json
import re
import shutil

import pytest
import torch
from mlflow.tracking import MlflowClient

from circle_repro.config import find_run, train_config
from circle_repro.data.manifest import read_manifest
from circle_repro.data.stamp import DataStampError
from circle_repro.engine.evaluate import evaluate_model, load_trained_model
from circle_repro.engine.protocols import TestSet
from circle_repro.engine.train import train_run
from support import tiny_params

PAIRS = {"protocol": "verification_pairs", "n_folds": 10, "fars": [0.01]}


def _config(repo_params, validation=None):
    params = tiny_params(repo_params, epochs=1, max_images=400)
    config = copy.deepcopy(train_config(params, find_run(params, "demo_verification/CircleLoss/seed0")))
    if validation is not None:
        config["train"]["validation"] = validation
    return config


def test_validation_is_logged_every_interval_and_leaves_training_unchanged(tmp_path, repo_params, prepared_mnist5k):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    plain = torch.load(train_run(_config(repo_params), prepared_mnist5k, tmp_path / "plain", uri), weights_only=True)
    validated_config = _config(repo_params, {"interval": 2, "sets": {"mnist5k": PAIRS}})
    run_dir = tmp_path / "validated"
    validated = torch.load(train_run(validated_config, prepared_mnist5k, run_dir, uri), weights_only=True)

    assert plain.keys() == validated.keys()
    assert all(torch.equal(plain[name], validated[name]) for name in plain), "validation changed the training"

    record = MlflowClient(tracking_uri=uri)
    mlflow_run_id = json.loads((run_dir / "train.json").read_text())["mlflow_run_id"]
    iterations = json.loads((run_dir / "train.json").read_text())["iterations"]
    history = record.get_metric_history(mlflow_run_id, "val/mnist5k/accuracy")
    expected_steps = sorted({*range(2, iterations + 1, 2), iterations})
    assert [m.step for m in history] == expected_steps
    assert {"val/mnist5k/accuracy_std", "val/mnist5k/TAR_at_FAR_0.01"} <= set(
        record.get_run(mlflow_run_id).data.metrics
    )
    # the last validation scored the final weights: the same number as evaluating them afterwards
    final = evaluate_model(load_trained_model(run_dir), TestSet.load(prepared_mnist5k), "mnist5k", PAIRS)
    assert history[-1].value == pytest.approx(final.metrics["accuracy"], abs=1e-12)


def test_a_validation_set_that_is_not_prepared_stops_before_training(tmp_path, repo_params, prepared_mnist5k):
    config = _config(repo_params, {"interval": 2, "sets": {"lfw": PAIRS}})
    with pytest.raises(
        FileNotFoundError, match=r"no prepared lfw for train.validation; run `circle-repro data prepare lfw`"
    ):
        train_run(config, prepared_mnist5k, tmp_path / "run", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert not (tmp_path / "run" / "model.pth").exists()


def test_a_validation_set_that_is_not_what_its_stamp_says_stops_before_training(
    tmp_path, repo_params, prepared_mnist5k
):
    validation_root = tmp_path / "prepared"
    shutil.copytree(prepared_mnist5k, validation_root / "mnist5k")
    image = validation_root / "mnist5k" / read_manifest(prepared_mnist5k)["path"].iloc[-1]
    image.write_bytes(image.read_bytes()[:-1])  # truncated by one byte
    config = _config(repo_params, {"interval": 2, "sets": {"mnist5k": PAIRS}})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(DataStampError, match=rf"{re.escape(str(validation_root / 'mnist5k'))}: .*\.png has"):
        train_run(config, prepared_mnist5k, tmp_path / "run", uri, validation_root=validation_root)
    assert not (tmp_path / "run").exists() and not (tmp_path / "mlflow.db").exists()  # nothing started

"""Training through mmengine's Runner, evaluation, and the MLflow records both leave."""

import copy
import hashlib
import json
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from mmengine.registry import MODELS

from circle_repro.config import eval_config, find_run, tracking_experiment, train_config
from circle_repro.data.datasets import get_dataset
from circle_repro.data.manifest import read_content_hash
from circle_repro.data.manifest_dataset import ManifestDataset
from circle_repro.engine.evaluate import (
    NonFiniteFeaturesError,
    NoUntrainedReferenceWarning,
    embed_split,
    evaluate_run,
    load_trained_model,
)
from circle_repro.engine.protocols import retrieval_per_query
from circle_repro.engine.runner_config import model_config
from circle_repro.engine.train import train_run
from circle_repro.evaluation.retrieval import recall_at_k, retrieval_metrics
from circle_repro.layout import evaluation_dir
from circle_repro.provenance import LOCK_PATH
from support import tiny_params


@pytest.fixture(scope="module")
def trained_circle(tmp_path_factory, repo_params, prepared_mnist5k):
    """The committed Circle run, cut to 2 epochs on the full training split."""
    params = tiny_params(repo_params, epochs=2, max_images=None)
    run = find_run(params, "demo_retrieval/CircleLoss/seed0")
    root = tmp_path_factory.mktemp("train")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    run_dir = root / "run"
    train_run(
        train_config(params, run), prepared_mnist5k, run_dir, tracking_uri=uri, experiment=tracking_experiment(params)
    )
    result = evaluate_run(run_dir, prepared_mnist5k, eval_config(params, run), evaluation_dir(run_dir))
    return params, run, run_dir, uri, result


def test_the_trained_weights_are_an_artifact_of_the_run_and_the_metrics_say_where(trained_circle, tmp_path):
    _params, _, run_dir, uri, result = trained_circle
    client = MlflowClient(tracking_uri=uri)
    mlflow_run = client.get_run(result.mlflow_run_id)
    assert client.get_experiment(mlflow_run.info.experiment_id).name == "circle-repro-demo"
    downloaded = client.download_artifacts(result.mlflow_run_id, "model.pth", str(tmp_path))
    assert Path(downloaded).read_bytes() == (run_dir / "model.pth").read_bytes()
    assert result.weights_uri == f"{mlflow_run.info.artifact_uri}/model.pth"
    assert json.loads((run_dir / "train.json").read_text())["weights_uri"] == result.weights_uri


def test_trained_circle_beats_an_untrained_network(trained_circle, prepared_mnist5k):
    params, run, _, _, result = trained_circle
    config = train_config(params, run)
    torch.manual_seed(config["seed"])
    untrained = MODELS.build(model_config(config, num_classes=5))
    test_set = ManifestDataset(prepared_mnist5k, "test", get_dataset("mnist5k").transform, train=False)
    untrained_r1 = recall_at_k(*embed_split(untrained, test_set), ks=[1])[1]
    trained_r1 = result.metrics["R@1"]
    print(
        f"R@1 untrained {untrained_r1:.4f} (runner-seeded: {result.untrained_metrics['R@1']:.4f}), trained {trained_r1:.4f}"
    )
    assert trained_r1 >= untrained_r1 + 0.04
    assert trained_r1 >= result.untrained_metrics["R@1"] + 0.04


def test_metrics_file_and_mlflow_run(trained_circle, prepared_mnist5k):
    _params, run, run_dir, uri, result = trained_circle
    prepared = prepared_mnist5k
    on_disk = json.loads((evaluation_dir(run_dir) / "metrics.json").read_text())
    assert on_disk == result.to_json()
    assert set(on_disk["metrics"]) >= {"R@1", "R@2", "R@4", "R@8", "MAP@R"}
    assert on_disk["n_images"] == 2500 and on_disk["protocol"] == "retrieval"
    assert (
        json.loads((evaluation_dir(run_dir) / "scores.json").read_text()) == on_disk["metrics"]
    )  # no per-fold spread to drop
    assert not (evaluation_dir(run_dir) / "roc.csv").exists(), "a ROC only for verification"

    logged = MlflowClient(tracking_uri=uri).get_run(result.mlflow_run_id)
    assert logged.data.tags["run_id"] == run.run_id
    assert logged.data.tags["config_hash"] == on_disk["config_hash"]
    assert logged.data.params["circle_repro.loss.gamma"] == "80"
    assert logged.data.params["circle_repro.seed"] == "0"
    assert not any(
        key.startswith(("work_dir", "load_from", "resume", "train_dataloader")) for key in logged.data.params
    )
    assert logged.data.metrics["R_at_1"] == pytest.approx(on_disk["metrics"]["R@1"])
    assert logged.data.metrics["untrained_R_at_1"] == pytest.approx(on_disk["untrained_metrics"]["R@1"])
    assert "loss" in logged.data.metrics and "s_p" in logged.data.metrics
    assert logged.data.metrics["throughput_images_per_s"] > 0
    record = json.loads((run_dir / "train.json").read_text())
    assert logged.data.tags["data_hash"] == record["provenance"]["data_hash"] == read_content_hash(prepared)
    assert logged.data.tags["version.torch"] == metadata.version("torch")
    assert {"git_commit", "device", "world_size"} <= set(logged.data.tags)
    lock_hash = "sha256:" + hashlib.sha256(LOCK_PATH.read_bytes()).hexdigest()
    assert logged.data.tags["environment_lock"] == record["provenance"]["environment_lock"] == lock_hash
    assert logged.data.tags["environment_matches_lock"] == "yes"
    artifacts = {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(result.mlflow_run_id)}
    assert "config.py" in artifacts and "metrics.json" in artifacts and "per_query.npz" in artifacts
    assert on_disk["provenance"] == record["provenance"]


def _poisoned_copy(run_dir: Path, to: Path, weights_file: str) -> Path:
    """A copy of a run folder whose ``weights_file`` gives NaN features (its first weight tensor all NaN)."""
    copy_dir = to / "run"
    shutil.copytree(run_dir, copy_dir, ignore=shutil.ignore_patterns("work"))
    state = torch.load(copy_dir / weights_file, weights_only=True)
    first = next(name for name, tensor in state.items() if tensor.is_floating_point() and tensor.dim() > 1)
    state[first] = torch.full_like(state[first], float("nan"))
    torch.save(state, copy_dir / weights_file)
    return copy_dir


def test_initial_weights_without_usable_features_leave_the_run_without_an_untrained_reference(
    trained_circle, prepared_mnist5k, tmp_path
):
    """IResNet-100 straight from insightface's initialisation overflows to NaN in eval mode: the trained
    metrics are still computed and recorded, the untrained reference is left out with a warning."""
    params, run, run_dir, _, result = trained_circle
    poisoned = _poisoned_copy(run_dir, tmp_path, "model_init.pth")
    with pytest.warns(NoUntrainedReferenceWarning, match="no untrained reference.*model_init.pth"):
        again = evaluate_run(poisoned, prepared_mnist5k, eval_config(params, run), tmp_path / "out")
    assert again.untrained_metrics == {}
    assert again.metrics == pytest.approx(result.metrics)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["untrained_metrics"] == {}


def test_trained_weights_without_usable_features_are_an_error_naming_the_file(
    trained_circle, prepared_mnist5k, tmp_path
):
    params, run, run_dir, _, _ = trained_circle
    poisoned = _poisoned_copy(run_dir, tmp_path, "model.pth")
    with pytest.raises(NonFiniteFeaturesError, match=r"run/model.pth: 2500 of 2500 images have NaN.*training diverged"):
        evaluate_run(poisoned, prepared_mnist5k, eval_config(params, run), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_per_query_file_averages_to_the_metrics(trained_circle):
    _, _, run_dir, _, result = trained_circle
    with np.load(evaluation_dir(run_dir) / "per_query.npz") as per_query:
        assert sorted(per_query.files) == ["MAP@R", "R@1", "ids"]
        assert np.array_equal(per_query["ids"], np.arange(2500)), "no test digit is alone in its class"
        assert per_query["R@1"].mean() == pytest.approx(result.metrics["R@1"], abs=1e-12)
        assert per_query["MAP@R"].mean() == pytest.approx(result.metrics["MAP@R"], abs=1e-12)


def test_retrieval_per_query_agrees_with_retrieval_metrics_on_lone_labels_and_ties():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(60, 8)).astype(np.float32)
    embeddings[10:20] = embeddings[0]  # exact similarity ties
    labels = np.repeat(np.arange(12), 5)
    labels[[3, 17]] = [100, 101]  # two lone queries: left out of both
    per_query = retrieval_per_query(embeddings, labels, ks=[1, 8])
    expected = retrieval_metrics(embeddings, labels, ks=[1, 8])
    assert np.array_equal(per_query["ids"], np.setdiff1d(np.arange(60), [3, 17]))
    assert per_query["R@1"].mean() == pytest.approx(expected["R@1"], abs=1e-12)
    assert per_query["MAP@R"].mean() == pytest.approx(expected["MAP@R"], abs=1e-12)


def test_weights_are_plain_tensors_loadable_with_weights_only(trained_circle):
    _, _, run_dir, _, _ = trained_circle
    state = torch.load(run_dir / "model.pth", weights_only=True)
    initial = torch.load(run_dir / "model_init.pth", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert state.keys() == initial.keys()
    assert not all(torch.equal(state[k], initial[k]) for k in state), "training changed the weights"
    model = load_trained_model(run_dir)
    assert not model.training


def test_history_has_every_iteration(trained_circle):
    _, _, run_dir, _, _ = trained_circle
    history = pd.read_csv(run_dir / "history.csv")
    record = json.loads((run_dir / "train.json").read_text())
    assert history["iteration"].tolist() == list(range(1, record["iterations"] + 1))
    assert history[["loss", "s_p", "s_n"]].notna().all().all()
    assert history["s_n"].iloc[-5:].mean() < history["s_n"].iloc[:5].mean(), "training pushes s_n down"


def test_same_seed_trains_the_same_model(trained_circle, tmp_path, prepared_mnist5k):
    params, run, _run_dir, uri, _ = trained_circle
    config = train_config(params, run) | {"train": {**train_config(params, run)["train"], "epochs": 1}}
    first = torch.load(train_run(config, prepared_mnist5k, tmp_path / "a", uri), weights_only=True)
    second = torch.load(train_run(config, prepared_mnist5k, tmp_path / "b", uri), weights_only=True)
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_class_level_head_trains_and_evaluates_on_verification_pairs(tmp_path, repo_params, prepared_mnist5k):
    params = tiny_params(repo_params, epochs=1, max_images=400)
    run = find_run(params, "demo_verification/CircleLoss/seed0")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    train_run(train_config(params, run), prepared_mnist5k, tmp_path, tracking_uri=uri)
    state = torch.load(tmp_path / "model.pth", weights_only=True)
    assert state["loss.weight"].shape == (5, 64), "one proxy per training class"
    result = evaluate_run(tmp_path, prepared_mnist5k, eval_config(params, run), evaluation_dir(tmp_path))
    assert list(result.metrics) == ["accuracy", "accuracy_std", "TAR@FAR=0.001", "TAR@FAR=0.01", "TAR@FAR=0.1"]
    assert 0.5 < result.metrics["accuracy"] <= 1.0
    with np.load(evaluation_dir(tmp_path) / "per_query.npz") as per_pair:
        assert per_pair["accuracy"].mean() == pytest.approx(result.metrics["accuracy"], abs=1e-12)  # equal folds
    logged = MlflowClient(tracking_uri=uri).get_run(result.mlflow_run_id).data.metrics
    assert logged["TAR_at_FAR_0.01"] == pytest.approx(result.metrics["TAR@FAR=0.01"])
    # what `dvc metrics show` and `dvc plots show` read: the headline metrics alone, the test ROC
    scores = json.loads((evaluation_dir(tmp_path) / "scores.json").read_text())
    assert scores == {name: value for name, value in result.metrics.items() if name != "accuracy_std"}
    roc = pd.read_csv(evaluation_dir(tmp_path) / "roc.csv")
    assert list(roc.columns) == ["far", "tar", "threshold"] and roc["far"].iloc[-1] == roc["tar"].iloc[-1] == 1.0


def test_another_experiment_evaluates_the_same_weights_in_its_own_mlflow_run(
    trained_circle, prepared_mnist5k, tmp_path
):
    """trained_by: the Circle run's weights scored again, on the demo's verification pairs, as the face
    tables score one training on several test sets."""
    from circle_repro.config import Study, expand_trained_by
    from circle_repro.report.results import load_results

    params, trained, run_dir, uri, trained_result = trained_circle
    params = copy.deepcopy(params)
    params["experiments"]["demo_pairs"] = {
        "trained_by": "demo_retrieval", "table": "table2", "dataset": "mnist5k",
        "evaluation": {"protocol": "verification_pairs", "n_folds": 10, "fars": [0.01]},
    }  # fmt: skip
    params = expand_trained_by(params)
    run = find_run(params, "demo_pairs/CircleLoss/seed0")
    out_dir = tmp_path / "demo_pairs"

    with pytest.raises(
        ValueError,
        match=r"holds run 'demo_retrieval/CircleLoss/seed0', but demo_pairs/CircleLoss/seed0 evaluates the weights of 'other/CircleLoss/seed0'",
    ):
        evaluate_run(
            run_dir, prepared_mnist5k, eval_config(params, run) | {"trained_by": "other/CircleLoss/seed0"}, out_dir
        )
    result = evaluate_run(run_dir, prepared_mnist5k, eval_config(params, run), out_dir)

    assert (result.run_id, result.experiment, result.table) == (run.run_id, "demo_pairs", "table2")
    assert result.trained_by == trained.run_id and result.config_hash == trained_result.config_hash
    assert set(result.metrics) == {"accuracy", "accuracy_std", "TAR@FAR=0.01"}
    assert json.loads((out_dir / "metrics.json").read_text()) == result.to_json()
    assert (
        not (evaluation_dir(run_dir) / "metrics.json").read_text().count("demo_pairs")
    )  # the trainer's own result untouched

    client = MlflowClient(tracking_uri=uri)
    child = client.get_run(result.mlflow_run_id)
    assert child.info.run_id != trained_result.mlflow_run_id
    assert child.data.tags["mlflow.parentRunId"] == trained_result.mlflow_run_id
    assert child.data.tags["run_id"] == run.run_id and child.data.tags["trained_by"] == trained.run_id
    assert child.data.tags["config_hash"] == trained_result.config_hash
    assert child.data.tags["git_commit"] == client.get_run(trained_result.mlflow_run_id).data.tags["git_commit"]
    assert child.data.metrics["accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert child.info.status == "FINISHED"

    only_these = Study.of(params).only(("demo_retrieval", "demo_pairs"))
    for tracking_uri, source, mlflow_id in (
        (uri, "MLflow", result.mlflow_run_id),
        (None, "metrics.json", result.mlflow_run_id),
    ):
        results = load_results(
            only_these, [evaluation_dir(run_dir) / "metrics.json", out_dir / "metrics.json"], tracking_uri
        )
        (found,) = results.of("demo_pairs", "CircleLoss")
        assert (found.source, found.mlflow_run_id) == (source, mlflow_id)
        assert found.metrics["accuracy"] == pytest.approx(result.metrics["accuracy"])
        (own,) = results.of("demo_retrieval", "CircleLoss")
        assert own.metrics["R@1"] == pytest.approx(trained_result.metrics["R@1"])

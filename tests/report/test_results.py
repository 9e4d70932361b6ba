"""Reading results: MLflow by tag first, metrics.json as the fallback, and every failure said per run."""

import json
import socket
import time

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from circle_repro.config import RunSpec, Study, config_hash, tracking_experiment, train_config
from circle_repro.engine.tracking import ensure_experiment
from circle_repro.generations import file_digest
from circle_repro.report.build import build_report
from circle_repro.report.results import load_results


def _store(tmp_path, params):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    ensure_experiment(uri, tracking_experiment(params))
    client = MlflowClient(tracking_uri=uri)
    return uri, client, client.get_experiment_by_name(tracking_experiment(params)).experiment_id


def _mlflow_run(client, experiment_id, params, run: RunSpec, artifacts=(), config=None, commit="feedbee"):
    tags = {"run_id": run.run_id, "config_hash": config or config_hash(train_config(params, run)),
            "git_commit": commit, "data_hash": "mlflowdata", "device": "NVIDIA H100"}  # fmt: skip
    created = client.create_run(experiment_id, tags=tags, run_name=run.run_id)
    for path in artifacts:
        client.log_artifact(created.info.run_id, str(path))
    client.set_terminated(created.info.run_id)
    return created.info.run_id


def _row(markdown: str, loss: str) -> str:
    """A loss row of the demo tables (the paper tables above them have rows of the same names)."""
    demo = markdown.split("## Demo versions", 1)[1]
    return next(line for line in demo.splitlines() if line.startswith(f"| {loss} | "))


def test_results_come_from_mlflow_by_run_id_and_config_hash_tags(tmp_path, demo_params, demo_study, metrics_files):
    uri, client, experiment_id = _store(tmp_path, demo_params)
    run = RunSpec("demo_retrieval", "CircleLoss", 0)
    run_dir = metrics_files[0].parent
    _mlflow_run(client, experiment_id, demo_params, run, config="0ldc0nf1g", commit="stale00")  # other settings
    mlflow_id = _mlflow_run(
        client, experiment_id, demo_params, run, [run_dir / "metrics.json", run_dir / "per_query.npz"]
    )
    results = load_results(demo_study, metrics_files, tracking_uri=uri)
    from_mlflow = results.of("demo_retrieval", "CircleLoss")[0]
    assert (from_mlflow.source, from_mlflow.mlflow_run_id, from_mlflow.note) == ("MLflow", mlflow_id, "")
    assert from_mlflow.provenance == {
        "git_commit": "feedbee", "config_hash": config_hash(train_config(demo_params, run)),
        "data_hash": "mlflowdata", "device": "NVIDIA H100",
    }  # fmt: skip
    with np.load(run_dir / "per_query.npz") as expected:
        assert np.array_equal(from_mlflow.per_query["R@1"], expected["R@1"])
    # the trained weights' artifact, as the evaluation recorded it, from MLflow's copy and from the file
    assert from_mlflow.weights_uri == "mlflow-artifacts:/1/mlflow-demo_retrieval-CircleLoss-0/artifacts/model.pth"
    # runs that MLflow does not hold come from their files, and say so
    fallback = results.of("demo_retrieval", "CircleLoss")[1]
    assert (fallback.source, fallback.note) == ("metrics.json", "no MLflow run")
    assert fallback.weights_uri == "mlflow-artifacts:/1/mlflow-demo_retrieval-CircleLoss-1/artifacts/model.pth"
    assert "runs found by their run_id and config_hash tags" in results.source


def test_a_missing_mlflow_store_is_said_for_every_run(tmp_path, demo_study, metrics_files):
    db = tmp_path / "nowhere" / "mlflow.db"
    markdown = build_report(demo_study, metrics_files, tmp_path / "r", tracking_uri=f"sqlite:///{db}")[0].read_text()
    assert not db.exists(), "reading must not create a store"
    assert (
        f"MLflow store sqlite:///{db} not found: results are read from the runs' metrics.json files instead."
        in markdown
    )
    for loss in ("CircleLoss", "Triplet", "Softmax", "ArcFace"):
        row = _row(markdown, loss)
        assert "(n=3)" in row and "| metrics.json |" in row
        assert row.count(f"MLflow store sqlite:///{db} not found") == 3, "each seed of each row says so"


def test_an_mlflow_server_that_does_not_answer_is_said_within_seconds(demo_study, metrics_files):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
    started = time.monotonic()
    results = load_results(demo_study, metrics_files, uri)
    assert time.monotonic() - started < 10
    assert results.source == (
        f"MLflow store {uri} does not answer within 5 s: results are read from the runs' metrics.json files instead."
    )
    from_files = [r for r in results.runs if r.run_dir is not None]
    assert len(from_files) == len(metrics_files)
    assert all(r.metrics and f"MLflow store {uri} does not answer" in r.note for r in from_files)


def test_an_mlflow_run_without_metrics_is_said_in_its_row(tmp_path, demo_params, demo_study, metrics_files):
    uri, client, experiment_id = _store(tmp_path, demo_params)
    mlflow_id = _mlflow_run(client, experiment_id, demo_params, RunSpec("demo_retrieval", "Triplet", 1))
    files = [f for f in metrics_files if f.parts[-4:-2] != ("Triplet", "seed1")]
    markdown = build_report(demo_study, files, tmp_path / "r", tracking_uri=uri)[0].read_text()
    row = _row(markdown, "Triplet")
    assert "81.00 ± " in row and "(n=2)" in row, "the row keeps its other seeds"
    assert f"seed 1: MLflow run {mlflow_id} has no evaluation metrics (no metrics.json); no metrics.json given" in row


def test_a_half_written_metrics_file_is_said_in_its_row(tmp_path, demo_study, metrics_files):
    half_written = metrics_files[0]  # demo_retrieval/CircleLoss/seed0
    half_written.write_text(half_written.read_text()[:40])
    markdown = build_report(demo_study, metrics_files, tmp_path / "r")[0].read_text()
    row = _row(markdown, "CircleLoss")
    assert "| 93.00 ± " in row and "(n=2)" in row
    assert f"seed 0: {half_written} is half-written or not JSON" in row


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"run_id": "demo_retrieval/CircleLoss/seed0"}', "has no metrics"),
        ('{"run_id": "demo_retrieval/CircleLoss/seed0", "metrics": {"R@1": "high"}, "config_hash": "x"}',
         "holds a metric that is not a finite number"),
    ],
)  # fmt: skip
def test_a_metrics_file_without_usable_metrics_is_said_in_its_row(
    tmp_path, demo_study, metrics_files, content, problem
):
    metrics_files[0].write_text(content)
    row = _row(build_report(demo_study, metrics_files, tmp_path / "r")[0].read_text(), "CircleLoss")
    assert f"seed 0: {metrics_files[0]} {problem}" in row and "(n=2)" in row


def test_a_stale_metrics_file_is_not_reported_as_current(tmp_path, demo_params, metrics_files):
    changed = {**demo_params, "experiments": {**demo_params["experiments"]}}
    changed["experiments"]["demo_retrieval"] = demo_params["experiments"]["demo_retrieval"] | {"seeds": [0, 1, 2, 3]}
    changed["experiments"]["demo_retrieval"]["train"] = {
        **changed["experiments"]["demo_retrieval"]["train"],
        "epochs": 9,
    }
    results = load_results(Study.of(changed), metrics_files)
    stale = results.of("demo_retrieval", "Triplet")
    assert [r.metrics for r in stale] == [{}] * 4
    assert "is stale: trained with config hash" in stale[0].note and stale[3].note == "no metrics.json given"


def test_files_that_belong_to_no_run_are_listed_as_problems(tmp_path, demo_study, metrics_files):
    stray = tmp_path / "elsewhere" / "metrics.json"
    stray.parent.mkdir()
    stray.write_text("{")
    markdown = build_report(demo_study, [*metrics_files, stray], tmp_path / "r")[0].read_text()
    assert "## Problems" in markdown and f"{stray}: belongs to no run of the params; ignored" in markdown


def test_a_run_whose_metrics_are_trivial_for_its_input_is_listed_under_problems(tmp_path, demo_study, metrics_files):
    path = next(p for p in metrics_files if "demo_retrieval/CircleLoss/seed1" in p.as_posix())
    record = json.loads(path.read_text())
    path.write_text(json.dumps(record | {"trivial": ["the test set has one class (5): every neighbour matches"]}))
    results = load_results(demo_study, metrics_files, None)
    assert results.problems == [
        "demo_retrieval/CircleLoss/seed1: trivial metrics: the test set has one class (5): every neighbour matches"
    ]
    markdown = build_report(demo_study, metrics_files, tmp_path / "r", generated="x", commit="y")[0].read_text()
    assert "## Problems" in markdown and "seed1: trivial metrics: the test set has one class (5)" in markdown


def test_array_files_that_are_not_those_of_their_metrics_json_are_refused(demo_study, metrics_files):
    path = next(p for p in metrics_files if "demo_retrieval/CircleLoss/seed1" in p.as_posix())
    per_query = path.parent / "per_query.npz"
    record = json.loads(path.read_text())
    path.write_text(json.dumps(record | {"arrays": {"per_query.npz": file_digest(per_query)}}))
    [result] = [r for r in load_results(demo_study, metrics_files, None).runs if r.run.run_id in path.as_posix()]
    assert result.metrics and result.per_query is not None
    np.savez(per_query, ids=np.arange(3), **{"R@1": np.ones(3)})  # a newer evaluation's array, moved in alone
    [result] = [r for r in load_results(demo_study, metrics_files, None).runs if r.run.run_id in path.as_posix()]
    assert not result.metrics
    assert f"{per_query} is not the file metrics.json was written with" in result.note
    assert "re-run `circle-repro evaluate`" in result.note

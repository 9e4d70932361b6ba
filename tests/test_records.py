"""The run records (train.json, metrics.json): what the writer writes is what the reader reads."""

from __future__ import annotations

import json

import pytest

from circle_repro.records import MetricsRecord, RecordError, TrainRecord

METRICS = MetricsRecord(
    run_id="cub/CircleLoss/seed0",
    experiment="cub",
    loss="CircleLoss",
    seed=0,
    table="table4",
    trained_by="cub/CircleLoss/seed0",
    dataset="cub200",
    protocol="retrieval",
    n_images=5924,
    metrics={"R@1": 0.66, "MAP@R": 0.25},
    untrained_metrics={"R@1": 0.4, "MAP@R": 0.1},
    trivial=("the test set has one class",),
    mlflow_run_id="abc",
    weights_uri="mlflow-artifacts:/1/abc/artifacts/model.pth",
    config_hash="0123456789ab",
    provenance={"git_commit": "f00", "data_hash": "d"},
    arrays={"per_query.npz": "e3b0"},
)
TRAIN = TrainRecord(
    run_id="cub/CircleLoss/seed0",
    mlflow_run_id="abc",
    tracking_uri="sqlite:///mlflow.db",
    weights_uri="mlflow-artifacts:/1/abc/artifacts/model.pth",
    config={"loss": {"type": "circle", "m": 0.4}},
    config_hash="0123456789ab",
    model={"type": "EmbeddingModel"},
    iterations=20,
    iterations_per_epoch=4,
    launcher="none",
    world_size=1,
    global_batch_size=80,
    wall_time_s=12.5,
    throughput_images_per_s=401.2,
    provenance={"device": "cpu"},
)


@pytest.mark.parametrize("record", [METRICS, TRAIN], ids=["metrics", "train"])
def test_a_record_written_reads_back_equal(tmp_path, record):
    path = tmp_path / "record.json"
    record.write(path)
    assert type(record).read(path) == record
    assert json.loads(path.read_text()) == record.to_json()


def test_the_metrics_file_keeps_its_field_order_and_lists():
    data = METRICS.to_json()
    assert list(data)[:4] == ["run_id", "experiment", "loss", "seed"] and list(data)[-1] == "arrays"
    assert data["trivial"] == ["the test set has one class"]


def test_fields_left_out_take_their_defaults_and_unknown_keys_are_ignored():
    record = MetricsRecord.from_json({"run_id": "a/b/seed0", "config_hash": "h", "metrics": {"R@1": 1}, "x": 1}, "f")
    assert (record.untrained_metrics, record.trivial, record.split, record.arrays) == ({}, (), "test", {})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "f is not a JSON object"),
        ({"run_id": "r", "config_hash": "h"}, "f has no metrics"),
        ({"run_id": "r", "config_hash": "h", "metrics": {"R@1": float("nan")}}, "not a finite number"),
        ({"run_id": "r", "config_hash": "h", "metrics": {"R@1": True}}, "not a finite number"),
        ({"run_id": "r", "metrics": {"R@1": 1.0}}, "f lacks config_hash"),
        ({"run_id": "r", "config_hash": "h", "metrics": {"R@1": 1.0}, "seed": "0"}, "'seed' must be int"),
        ({"run_id": "r", "config_hash": "h", "metrics": {"R@1": 1.0}, "provenance": []}, "must be mappings"),
    ],
)
def test_a_malformed_metrics_record_names_the_file_and_the_field(data, message):
    with pytest.raises(RecordError, match=message):
        MetricsRecord.from_json(data, "f")


def test_a_train_record_without_its_model_is_refused(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({k: v for k, v in TRAIN.to_json().items() if k != "model"}))
    with pytest.raises(RecordError, match=f"{path} lacks model"):
        TrainRecord.read(path)
    path.write_text("{")
    with pytest.raises(RecordError, match="half-written or not JSON"):
        TrainRecord.read(path)

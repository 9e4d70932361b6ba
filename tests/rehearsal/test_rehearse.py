"""``circle-repro rehearse`` at a tiny scale: Table 5's DAG (three preparations, trainings and evaluations) on
synthetic data, and its extrapolation to scale 1 worked out by hand from the throughput it recorded."""

from __future__ import annotations

import csv
import json

import pytest

from circle_repro.cli import main
from circle_repro.workflow import evaluate_resources, prepare_resources, train_resources
from support import REPO_ROOT

SCALE = 0.0002
# images at scale 1, from sources.yaml and params.yaml (paper profile): each data set's raw images; a training
# run's schedule (iterations x P x K on one GPU); an evaluation's test images x 2 weights (no flip in Table 5)
FULL_IMAGES = {
    ("prepare_data", "cub200"): 11788,
    ("prepare_data", "cars196"): 16185,
    ("prepare_data", "sop"): 120053,
    ("train", "table5_cub200/CircleLoss/seed0"): 3000 * 16 * 5,
    ("train", "table5_cars196/CircleLoss/seed0"): 3000 * 16 * 5,
    ("train", "table5_sop/CircleLoss/seed0"): 12000 * 16 * 5,
    ("evaluate", "table5_cub200/CircleLoss/seed0"): 5924 * 2,
    ("evaluate", "table5_cars196/CircleLoss/seed0"): 8131 * 2,
    ("evaluate", "table5_sop/CircleLoss/seed0"): 60502 * 2,
}


@pytest.mark.slow
def test_rehearsal_of_table5_records_each_job_and_extrapolates_it(tmp_path, capsys, repo_params):
    from circle_repro.config import Study, select_profile
    from circle_repro.plan import load_rates, load_throughput

    out = tmp_path / "rehearsal"
    argv = ["rehearse", "--scale", str(SCALE), "--tables", "5", "--iterations", "1", "--max-p", "2",
            "--out", str(out), "--params", str(REPO_ROOT / "params.yaml"),
            "--throughput", str(REPO_ROOT / "benchmarks/results/train_throughput_cuda_h100_bf16.json"),
            "--rates", str(REPO_ROOT / "benchmarks/job_rates.yaml")]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "rehearsal.json").read_text())
    steps = {(step["rule"], step["name"]): step for step in record["steps"]}
    assert set(steps) == set(FULL_IMAGES)
    assert record["scale"] == SCALE and record["settings"]["tables"] == ["table5"]

    paper = Study.of(select_profile(repo_params, "paper"))
    throughput = load_throughput(REPO_ROOT / "benchmarks/results/train_throughput_cuda_h100_bf16.json")
    rates = load_rates(REPO_ROOT / "benchmarks/job_rates.yaml")
    for (rule, name), step in steps.items():
        full = FULL_IMAGES[(rule, name)]
        assert step["full_images"] == full
        assert step["images_per_s"] == pytest.approx(step["images"] / step["seconds"])
        if rule == "train":
            # one iteration of P x K = 2 x 5 images; the loop's rate from train.json, the rest of the wall time fixed
            assert step["images"] == 10
            loop_seconds = step["images"] / step["loop_images_per_s"]
            seconds = step["seconds"] - loop_seconds + full / step["loop_images_per_s"]
            declared = train_resources(paper, step["experiment"], throughput, rates)
        else:
            seconds = step["seconds"] * full / step["images"]
            declared = (
                prepare_resources(name, rates)
                if rule == "prepare_data"
                else evaluate_resources(paper, step["experiment"], throughput, rates)
            )
        assert step["full_hours"] == pytest.approx(seconds / 3600)
        assert step["declared"] == declared
        assert bool(step["exceeds"]) == (seconds / 60 * 1.5 > declared["runtime"])
        assert name in printed and ("EXCEEDS" in printed) == any(s["exceeds"] for s in steps.values())

    with open(out / "rehearsal.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(row["rule"], row["name"]) for row in rows] == [(s["rule"], s["name"]) for s in record["steps"]]
    assert [float(row["full_hours"]) for row in rows] == pytest.approx([s["full_hours"] for s in record["steps"]])
    # the DAG's own outputs: a manifest per data set, a metrics.json per run
    for name in ("cub200", "cars196", "sop"):
        assert (out / "data" / "prepared" / name / "manifest.parquet").is_file()
        assert (out / "runs" / f"table5_{name}" / "CircleLoss" / "seed0" / "evaluation" / "metrics.json").is_file()


def test_bad_options_exit_2_with_a_message(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    assert main(["rehearse", "--scale", "0.01", "--out", str(tmp_path / "full")]) == 2
    assert "not empty; give the rehearsal a new folder" in capsys.readouterr().err
    for argv in (["--scale", "2"], ["--scale", "0.01", "--tables", "7"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["rehearse", *argv])
        assert exit_info.value.code == 2


def test_a_failing_job_leaves_the_record_of_the_jobs_before_it(tmp_path, monkeypatch):
    from circle_repro.rehearsal import RehearsalError, rehearse, steps

    def failing_train(run_id, *args, **kwargs):
        raise RehearsalError(f"train {run_id}: broken on purpose")

    monkeypatch.setattr(steps, "train", failing_train)
    with pytest.raises(RehearsalError, match="broken on purpose"):
        rehearse(REPO_ROOT / "params.yaml", tmp_path / "out", 1e-5, tables=["table5"], max_p=2, log=lambda _: None)
    record = json.loads((tmp_path / "out" / "rehearsal.json").read_text())
    assert [(step["rule"], step["name"]) for step in record["steps"]] == [
        ("prepare_data", name) for name in ("cars196", "cub200", "sop")
    ]
    assert record["settings"]["failed"] == "train table5_cars196/CircleLoss/seed0: broken on purpose"


def test_until_prepare_data_rehearses_the_preparations_alone(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["rehearse", "--scale", "0.00001", "--tables", "5", "--until", "prepare_data", "--out", str(out),
            "--params", str(REPO_ROOT / "params.yaml")]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / "rehearsal.json").read_text())
    assert [(step["rule"], step["name"]) for step in record["steps"]] == [
        ("prepare_data", name) for name in ("cars196", "cub200", "sop")
    ]
    assert record["settings"]["until"] == "prepare_data" and "failed" not in record["settings"]
    assert not (out / "runs").exists()
    assert "of 3 jobs would exceed" in capsys.readouterr().out


def test_until_names_a_step_of_the_dag(tmp_path, capsys):
    from circle_repro.rehearsal import rehearse

    with pytest.raises(ValueError, match="'report' is not a step of the DAG; one of prepare_data, train, evaluate"):
        rehearse(REPO_ROOT / "params.yaml", tmp_path / "out", 1e-5, until="report")
    with pytest.raises(SystemExit) as exit_info:
        main(["rehearse", "--scale", "0.01", "--until", "report"])
    assert exit_info.value.code == 2
    assert "--until: invalid choice: 'report'" in capsys.readouterr().err

import copy

import yaml

from circle_repro.cli import main
from support import REPO_ROOT


def test_runs_lists_every_run(capsys):
    assert main(["runs", "--params", str(REPO_ROOT / "params.yaml")]) == 0
    lines = capsys.readouterr().out.split()
    assert "demo_retrieval/CircleLoss/seed0" in lines and "demo_retrieval/Triplet/seed2" in lines


def test_bad_params_exit_2_with_the_key_and_no_traceback(tmp_path, capsys, repo_params):
    broken = copy.deepcopy(repo_params)  # the fixture is shared by the whole session
    broken["experiments"]["demo_retrieval"]["losses"]["Triplet"]["type"] = "quadruplet"
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(broken))
    assert main(["validate", "--params", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "experiments.demo_retrieval.losses.Triplet.type: 'quadruplet' is not one of" in err
    assert "Traceback" not in err


def test_unknown_run_and_missing_data_are_clear(tmp_path, capsys):
    params = str(REPO_ROOT / "params.yaml")
    assert main(["train", "--params", params, "--run", "nope/x/seed0", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "defined runs" in capsys.readouterr().err
    run = "demo_retrieval/CircleLoss/seed0"
    assert main(["train", "--params", params, "--run", run, "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "manifest.parquet: not found; run `circle-repro data prepare`" in err


def test_paper_runs_list_the_fig3_baseline_sweeps(capsys):
    assert main(["runs", "--params", str(REPO_ROOT / "params.yaml"), "--profile", "paper"]) == 0
    runs = capsys.readouterr().out.split()
    fig3 = {run.split("/")[1] for run in runs if run.startswith("figure3_megaface_r34/")}
    assert {row for row in fig3 if not row.startswith("CircleLoss")} == {
        "AM-Softmax-gamma32", "AM-Softmax-gamma128", "AM-Softmax-gamma256", "AM-Softmax-gamma512",
        "AM-Softmax-gamma1024", "ArcFace-gamma32", "ArcFace-gamma128"}


def test_profile_option_picks_the_runs(capsys):
    params = str(REPO_ROOT / "params.yaml")
    assert main(["runs", "--params", params, "--profile", "mini"]) == 0
    runs = capsys.readouterr().out.split()
    assert runs and all(run.startswith("mini_") for run in runs)
    assert main(["validate", "--params", params, "--profile", "nope"]) == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err

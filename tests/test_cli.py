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


def test_profile_option_picks_the_runs(capsys):
    params = str(REPO_ROOT / "params.yaml")
    assert main(["runs", "--params", params, "--profile", "mini"]) == 0
    runs = capsys.readouterr().out.split()
    assert runs and all(run.startswith("mini_") for run in runs)
    assert main(["validate", "--params", params, "--profile", "nope"]) == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err


def test_data_fetch_of_an_embedded_or_unplaced_data_set_exits_2_saying_why(tmp_path, capsys):
    params = str(REPO_ROOT / "params.yaml")
    assert main(["data", "fetch", "mnist5k", "--params", params, "--raw", str(tmp_path / "raw")]) == 2
    assert "'mnist5k' is embedded in an installed package: nothing to fetch" in capsys.readouterr().err
    assert main(["data", "fetch", "market1501", "--params", params, "--raw", str(tmp_path / "market1501")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("circle-repro data: error: ") and "Market-1501" in err and "Traceback" not in err
    assert not (tmp_path / "market1501" / "fetched.json").exists()

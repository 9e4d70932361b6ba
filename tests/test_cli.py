import argparse
import copy
import importlib
import re
import shutil
import socket
import time

import pytest
import yaml

from circle_repro.cli import main
from circle_repro.records import TrainRecord
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
    assert (
        main(["train", "--params", params, "--run", "nope/x/seed0", "--data", str(tmp_path), "--out", str(tmp_path)])
        == 2
    )
    err = capsys.readouterr().err
    assert "unknown run 'nope/x/seed0'" in err and "circle-repro runs" in err
    run = "demo_retrieval/CircleLoss/seed0"
    assert main(["train", "--params", params, "--run", run, "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "manifest.parquet: not found; run `circle-repro data prepare`" in err


def test_paper_runs_list_the_fig3_baseline_sweeps(capsys):
    assert main(["runs", "--params", str(REPO_ROOT / "params.yaml"), "--profile", "paper"]) == 0
    runs = capsys.readouterr().out.split()
    fig3 = {run.split("/")[1] for run in runs if run.startswith("figure3_megaface_r34/")}
    assert {row for row in fig3 if not row.startswith("CircleLoss")} == {
        "AM-Softmax-gamma32",
        "AM-Softmax-gamma128",
        "AM-Softmax-gamma256",
        "AM-Softmax-gamma512",
        "AM-Softmax-gamma1024",
        "ArcFace-gamma32",
        "ArcFace-gamma128",
    }


def test_profile_option_picks_the_runs(capsys):
    params = str(REPO_ROOT / "params.yaml")
    assert main(["runs", "--params", params, "--profile", "mini"]) == 0
    runs = capsys.readouterr().out.split()
    assert runs and all(run.startswith("mini_") for run in runs)
    assert main(["validate", "--params", params, "--profile", "nope"]) == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["..", "X;touch PWNED;"])
def test_validate_refuses_an_escaping_loss_name_with_exit_2_naming_the_key(tmp_path, capsys, repo_params, name):
    hostile = copy.deepcopy(repo_params)
    losses = hostile["experiments"]["demo_retrieval"]["losses"]
    losses[name] = losses.pop("Triplet")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(hostile))
    assert main(["validate", "--params", str(tmp_path / "params.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"experiments.demo_retrieval.losses: {name!r} does not match" in err and "Traceback" not in err
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    ("key", "value"), [(("train", "epochs"), 1_000_000_000), (("seeds",), [2**32]), (("sampler", "k"), 100_000)]
)
def test_validate_refuses_sizes_out_of_bounds_with_exit_2(tmp_path, capsys, repo_params, key, value):
    huge = copy.deepcopy(repo_params)
    node = huge["experiments"]["demo_retrieval"]
    for part in key[:-1]:
        node = node[part]
    node[key[-1]] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(huge))
    assert main(["validate", "--params", str(tmp_path / "params.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"experiments.demo_retrieval.{'.'.join(key)}" in err and "is greater than the maximum" in err


@pytest.mark.parametrize(
    ("verb", "damage", "message"),
    [
        ("train", lambda f: f.unlink(), "is missing"),
        ("train", lambda f: f.write_bytes(f.read_bytes()[:20]), "has 20 bytes"),
        ("evaluate", lambda f: f.write_bytes(b"\x89PNG swapped in" * 40), "has 600 bytes"),
    ],
)
def test_damaged_prepared_data_stops_train_and_evaluate_before_they_start(
    tmp_path, capsys, prepared_mnist5k, verb, damage, message
):
    data = tmp_path / "mnist5k"
    shutil.copytree(prepared_mnist5k, data)
    image = sorted((data / "images" / "7").iterdir())[3]
    damage(image)
    params, run = str(REPO_ROOT / "params.yaml"), "demo_retrieval/CircleLoss/seed0"
    if verb == "train":
        args = ["train", "--params", params, "--run", run, "--data", str(data), "--out", str(tmp_path / "run")]
    else:
        (tmp_path / "run").mkdir()
        record = TrainRecord(
            run_id=run,
            mlflow_run_id="",
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            config={},
            config_hash="",
            model={},
        )
        record.write(tmp_path / "run" / "train.json")
        args = ["evaluate", "--params", params, "--run", run, "--data", str(data), "--run-dir", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{image.relative_to(data).as_posix()} {message}" in err and "Traceback" not in err
    assert "circle-repro data prepare" in err
    # nothing started: no run folder for train, nothing beside train.json for evaluate
    run_files = sorted(p.name for p in (tmp_path / "run").iterdir()) if (tmp_path / "run").exists() else []
    assert run_files == ([] if verb == "train" else ["train.json"])


def test_data_fetch_of_an_embedded_or_unplaced_data_set_exits_2_saying_why(tmp_path, capsys):
    params = str(REPO_ROOT / "params.yaml")
    assert main(["data", "fetch", "mnist5k", "--params", params, "--raw", str(tmp_path / "raw")]) == 2
    assert "'mnist5k' is embedded in an installed package: nothing to fetch" in capsys.readouterr().err
    assert main(["data", "fetch", "market1501", "--params", params, "--raw", str(tmp_path / "market1501")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("circle-repro data: error: ") and "Market-1501" in err and "Traceback" not in err
    assert not (tmp_path / "market1501" / "fetched.json").exists()


def test_evaluate_with_an_unreachable_tracking_server_exits_2_within_seconds(tmp_path, capsys):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
    run = "demo_retrieval/CircleLoss/seed0"
    record = TrainRecord(run_id=run, mlflow_run_id="0" * 32, tracking_uri=uri, config={}, config_hash="", model={})
    record.write(tmp_path / "train.json")
    importlib.import_module("circle_repro.engine.evaluate")  # timed below: the probe, not the imports
    started = time.monotonic()
    argv = ["evaluate", "--params", str(REPO_ROOT / "params.yaml"), "--run", run, "--data", str(tmp_path / "data")]
    assert main([*argv, "--run-dir", str(tmp_path)]) == 2
    assert time.monotonic() - started < 30  # MLflow's own retries would take minutes
    error = capsys.readouterr().err
    assert f"tracking store {uri} does not answer" in error and "Traceback" not in error  # the first check
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.json"]  # nothing written


def _all_parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def test_help_of_every_verb_is_plain_text():
    from circle_repro.cli import build_parser

    parsers = list(_all_parsers(build_parser()))
    assert len(parsers) > 10
    for parser in parsers:
        text = parser.format_help()
        assert not re.search(r"`|:(func|mod|class|data):|\*\*|\bspec §", text), f"{parser.prog}:\n{text}"


def test_version_prints_the_package_version(capsys):
    import circle_repro

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"circle-repro {circle_repro.__version__}"


def test_the_package_version_is_the_one_pyproject_installs():
    import tomllib

    import circle_repro

    assert tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"] == circle_repro.__version__

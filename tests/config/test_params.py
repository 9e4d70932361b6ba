import copy

import pytest

from circle_repro.config import (
    ConfigError,
    RunSpec,
    config_hash,
    eval_config,
    expand_runs,
    expand_trained_by,
    find_run,
    load_params,
    params_schema,
    select_profile,
    train_config,
    training_run,
    validate_params,
)
from circle_repro.losses import LOSSES, build_loss
from circle_repro.losses.proxy import is_class_level
from support import REPO_ROOT


def _with(params, path, value):
    broken = copy.deepcopy(params)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return broken


def _error(params) -> str:
    with pytest.raises(ConfigError) as info:
        validate_params(params, source="params.yaml")
    return str(info.value)


def test_committed_params_are_valid():
    params = load_params(REPO_ROOT / "params.yaml")
    assert len(expand_runs(params)) == sum(len(e["losses"]) * len(e["seeds"]) for e in params["experiments"].values())


def test_unknown_loss_names_key_and_allowed_values(repo_params):
    message = _error(_with(repo_params, ["experiments", "demo_retrieval", "losses", "CircleLoss", "type"], "cirle"))
    assert "experiments.demo_retrieval.losses.CircleLoss.type" in message
    assert "'cirle' is not one of ['am_softmax', 'arcface', 'circle', 'circle_classifier'," in message


def test_negative_gamma_names_key_and_bound(repo_params):
    message = _error(_with(repo_params, ["experiments", "demo_retrieval", "losses", "CircleLoss", "gamma"], -80))
    assert "experiments.demo_retrieval.losses.CircleLoss.gamma" in message
    assert "allowed: > 0" in message


def test_k_below_two_names_key_and_bound(repo_params):
    message = _error(_with(repo_params, ["experiments", "demo_retrieval", "sampler", "k"], 1))
    assert "experiments.demo_retrieval.sampler.k" in message
    assert "allowed: >= 2" in message


def test_misspelt_loss_argument_is_refused(repo_params):
    message = _error(_with(repo_params, ["experiments", "demo_retrieval", "losses", "CircleLoss", "gama"], 80))
    assert "experiments.demo_retrieval.losses.CircleLoss" in message and "'gama' was unexpected" in message


def test_every_problem_is_listed_at_once(repo_params):
    broken = _with(repo_params, ["experiments", "demo_retrieval", "sampler", "k"], 1)
    broken = _with(broken, ["experiments", "demo_retrieval", "losses", "CircleLoss", "gamma"], 0)
    message = _error(broken)
    assert "sampler.k" in message and "CircleLoss.gamma" in message


def test_cross_field_rules(repo_params):
    message = _error(_with(repo_params, ["experiments", "demo_retrieval", "sampler", "p"], 6))
    assert "experiments.demo_retrieval.sampler.p" in message and "allowed: 2..5" in message
    message = _error(_with(repo_params, ["datasets", "mnist5k", "test_classes"], [4, 5, 6]))
    assert "share [4]" in message


def test_load_params_reports_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("experiments: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_schema_loss_types_are_registered_and_build():
    loss_schema = params_schema()["$defs"]["loss"]
    types = loss_schema["properties"]["type"]["enum"]
    assert set(types) <= set(LOSSES)
    for branch in loss_schema["allOf"]:
        name = branch["if"]["properties"]["type"]["const"]
        assert name in types
        dims = {"embedding_dim": 4, "num_classes": 3} if is_class_level({"type": name}) else {}
        build_loss({"type": name, **dims})  # defaults exist for every schema-level argument


def test_runs_and_configs(repo_params):
    repo_params = expand_trained_by(repo_params)
    runs = expand_runs(repo_params)
    assert runs == sorted(runs)
    run = find_run(repo_params, "demo_retrieval/CircleLoss/seed1")
    assert run == RunSpec("demo_retrieval", "CircleLoss", 1)
    assert run.run_dir("runs").as_posix() == "runs/demo_retrieval/CircleLoss/seed1"
    assert train_config(repo_params, run)["loss"] == {"type": "circle", "m": 0.4, "gamma": 80}
    with pytest.raises(ConfigError, match="unknown run 'demo_retrieval/Nope/seed0'; did you mean"):
        find_run(repo_params, "demo_retrieval/Nope/seed0")


def test_profiles_select_their_experiments(repo_params):
    for name, profile in repo_params["profiles"].items():
        selected = select_profile(repo_params, name)
        assert selected["profile"] == name
        assert list(selected["experiments"]) == profile["experiments"]
        assert selected["datasets"] == repo_params["datasets"]
    default = load_params(REPO_ROOT / "params.yaml")
    assert default["profile"] == repo_params["profile"]
    assert list(default["experiments"]) == repo_params["profiles"][repo_params["profile"]]["experiments"]


def test_unknown_profile_names_the_defined_ones(repo_params):
    with pytest.raises(ConfigError, match=r"unknown profile 'huge'; defined profiles: \['demo', 'mini'"):
        load_params(REPO_ROOT / "params.yaml", "huge")
    message = _error(_with(repo_params, ["profile"], "huge"))
    assert "profile: 'huge' is not defined under profiles" in message


def test_profile_listing_an_undefined_experiment_is_refused(repo_params):
    message = _error(_with(repo_params, ["profiles", "demo", "experiments"], ["demo_retrieval", "demo_typo"]))
    assert "profiles.demo.experiments: ['demo_typo'] not defined under experiments" in message


def test_hostile_profile_or_experiment_names_are_refused(repo_params):
    assert "profile" in _error(_with(repo_params, ["profile"], "demo; rm -rf ~"))
    hostile = copy.deepcopy(repo_params)
    hostile["experiments"]["x;touch pwned"] = hostile["experiments"]["demo_retrieval"]
    assert "does not match" in _error(hostile)


# --- trained_by: one training, several test sets (the face tables) --------------------------------


def test_a_trained_by_experiment_takes_its_trainers_runs_and_config(repo_params):
    params = select_profile(repo_params, "paper")
    lfw, trainer = params["experiments"]["table2_lfw_r34"], params["experiments"]["table1_megaface_r34"]
    for key in ("seeds", "model", "sampler", "train", "losses", "resources"):
        assert lfw[key] == trainer[key]
    assert (lfw["dataset"], lfw["train_dataset"], lfw["table"]) == ("lfw", "ms1mv2", "table2")
    run = RunSpec("table2_lfw_r34", "CircleLoss", 2)
    assert training_run(params, run) == RunSpec("table1_megaface_r34", "CircleLoss", 2)
    # the same weights: the same train config and hash, so results are matched to the training run
    assert train_config(params, run) == train_config(params, training_run(params, run))
    assert config_hash(train_config(params, run)) == config_hash(train_config(params, training_run(params, run)))
    assert train_config(params, run)["dataset"] == "ms1mv2"
    evaluation = eval_config(params, run)
    assert (evaluation["run_id"], evaluation["trained_by"]) == (run.run_id, "table1_megaface_r34/CircleLoss/seed2")
    assert (evaluation["dataset"], evaluation["table"]) == ("lfw", "table2")
    # a plain experiment trains its own weights
    plain = RunSpec("table5_sop", "CircleLoss", 0)
    assert training_run(params, plain) == plain and eval_config(params, plain)["trained_by"] == plain.run_id


def test_a_trained_by_experiment_may_only_name_its_test_set(repo_params):
    bad = copy.deepcopy(repo_params)
    bad["experiments"]["table2_lfw_r34"]["seeds"] = [7]
    assert "experiments.table2_lfw_r34: Additional properties are not allowed ('seeds' was unexpected)" in _error(bad)
    del bad["experiments"]["table2_lfw_r34"]["seeds"]
    del bad["experiments"]["table2_lfw_r34"]["evaluation"]
    assert "experiments.table2_lfw_r34: 'evaluation' is a required property" in _error(bad)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda p: p["experiments"]["table2_lfw_r34"].update(trained_by="nope"),
            "experiments.table2_lfw_r34.trained_by: 'nope' is not an experiment",
        ),
        (
            lambda p: p["experiments"]["table2_ytf_r34"].update(trained_by="table2_lfw_r34"),
            "experiments.table2_ytf_r34.trained_by: 'table2_lfw_r34' does not train (it has trained_by 'table1_megaface_r34')",
        ),
        (
            lambda p: p["profiles"]["paper"]["experiments"].remove("table1_megaface_r100"),
            "profiles.paper.experiments: table3_ijbc_r100 evaluates the weights of table1_megaface_r100, which the "
            "profile does not list; add table1_megaface_r100",
        ),
        (
            lambda p: p["sweeps"]["figure3_megaface_r34"].update(base="table2_lfw_r34"),
            "sweeps.figure3_megaface_r34.base: 'table2_lfw_r34' trains nothing (trained_by)",
        ),
    ],
)
def test_trained_by_cross_references_are_checked(repo_params, edit, message):
    bad = copy.deepcopy(repo_params)
    edit(bad)
    assert message in _error(bad)


def test_figure3_sweeps_circle_and_the_baselines_over_the_papers_grids(repo_params):
    """Fig. 3 (paper §4.5): Circle and AM-Softmax over gamma 32 ... 1024, ArcFace over {32, 64, 128}, Circle over m
    -0.2 ... 0.3 by 0.05; the base experiment's own runs give the missing base values (256 / 0.25, 64, 64)."""
    spec = select_profile(repo_params, "paper")["experiments"]["figure3_megaface_r34"]
    sweep = spec["sweep"]
    grid = {}
    for row, point in sweep["points"].items():
        grid.setdefault((point["loss"], point["parameter"]), set()).add(point["value"])
        base_row = repo_params["experiments"]["table1_megaface_r34"]["losses"][point["loss"]]
        assert spec["losses"][row] == base_row | {point["parameter"]: point["value"]}
    for (loss, parameter), own in {
        ("CircleLoss", "gamma"): 256,
        ("CircleLoss", "m"): 0.25,
        ("AM-Softmax", "gamma"): 64,
        ("ArcFace", "gamma"): 64,
    }.items():
        assert sweep["base_values"][loss][parameter] == own
        grid[loss, parameter].add(own)
    powers = {2.0**k for k in range(5, 11)}
    assert grid == {
        ("CircleLoss", "gamma"): powers,
        ("AM-Softmax", "gamma"): powers,
        ("ArcFace", "gamma"): {32, 64, 128},
        ("CircleLoss", "m"): {round(-0.2 + 0.05 * k, 2) for k in range(11)},
    }
    assert sweep["baselines"] == ["AM-Softmax", "ArcFace"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s["baselines"].update(Softmax={}),
            "sweeps.figure3_megaface_r34.baselines.Softmax: 'Softmax' has no gamma to sweep (type softmax)",
        ),
        (
            lambda s: s["baselines"].update(Nope={}),
            "sweeps.figure3_megaface_r34.baselines.Nope: not a loss of table1_megaface_r34",
        ),
        (lambda s: s["baselines"].update(CircleLoss={}), "baselines.CircleLoss: the swept loss itself"),
        (
            lambda s: s["baselines"]["ArcFace"].update(gamma=[32, 64]),
            "sweeps.figure3_megaface_r34.baselines.ArcFace.gamma: 64 is table1_megaface_r34's own ArcFace setting",
        ),
        (lambda s: s.update(m=[0.25]), "sweeps.figure3_megaface_r34.m: 0.25 is table1_megaface_r34's own CircleLoss"),
        (
            lambda s: s["baselines"]["ArcFace"].update(m=[0.3]),
            "baselines.ArcFace: Additional properties are not allowed",
        ),
    ],
)
def test_sweep_baselines_are_checked(repo_params, edit, message):
    bad = copy.deepcopy(repo_params)
    edit(bad["sweeps"]["figure3_megaface_r34"])
    assert message in _error(bad)


def test_a_profile_with_a_sweep_lists_its_base(repo_params):
    bad = copy.deepcopy(repo_params)
    bad["profiles"]["demo"]["experiments"].remove("demo_verification")
    assert (
        "profiles.demo.experiments: demo_sensitivity draws the runs of its base demo_verification at the base "
        "settings, which the profile does not list; add demo_verification"
    ) in _error(bad)


# --- names that become folders and command-line words; bounds on sizes ------------------------------


def _renamed_loss(params, new_name):
    renamed = copy.deepcopy(params)
    losses = renamed["experiments"]["demo_retrieval"]["losses"]
    losses[new_name] = losses.pop("Triplet")
    return renamed


@pytest.mark.parametrize(
    "name", ["..", ".", "...", ".hidden", "-rf", "X;touch PWNED;", "a b", "a/b", "$(id)", "x" * 101]
)
def test_names_that_could_escape_a_folder_or_a_shell_line_are_refused(repo_params, name):
    message = _error(_renamed_loss(repo_params, name))
    assert f"experiments.demo_retrieval.losses: {name!r} does not match" in message
    assert "not starting with '.' or '-'" in message  # the rule, from the schema's description
    renamed_experiment = copy.deepcopy(repo_params)
    renamed_experiment["experiments"][name] = renamed_experiment["experiments"]["demo_retrieval"]
    assert f"experiments: {name!r} does not match" in _error(renamed_experiment)


@pytest.mark.parametrize("name", ["CircleLoss-m-0.2", "AM-Softmax", "v1.5", "_private", "r50"])
def test_ordinary_names_with_dots_and_dashes_are_accepted(repo_params, name):
    validate_params(_renamed_loss(repo_params, name))


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            ["experiments", "demo_retrieval", "train", "epochs"],
            1_000_000_000,
            "experiments.demo_retrieval.train.epochs: 1000000000 is greater than the maximum of 10000; allowed: <= 10000",
        ),
        (
            ["experiments", "demo_retrieval", "seeds"],
            [0, 2**32],
            "experiments.demo_retrieval.seeds[1]: 4294967296 is greater than the maximum of 4294967295",
        ),
        (
            ["sweeps", "demo_sensitivity", "seeds"],
            [2**40],
            "sweeps.demo_sensitivity.seeds[0]: 1099511627776 is greater",
        ),
        (["report", "bootstrap", "seed"], -1, "report.bootstrap.seed: -1 is less than the minimum of 0"),
        (
            ["experiments", "demo_retrieval", "sampler", "k"],
            100_000,
            "experiments.demo_retrieval.sampler.k: 100000 is greater than the maximum of 1024",
        ),
        (
            ["experiments", "demo_retrieval", "sampler", "p"],
            5000,
            "experiments.demo_retrieval.sampler.p: 5000 is greater than the maximum of 4096",
        ),
        (
            ["experiments", "demo_retrieval", "sampler"],
            {"p": 128, "k": 128},
            "experiments.demo_retrieval.sampler: p x k = 16384 images per batch; allowed: <= 8192",
        ),
        (
            ["experiments", "demo_retrieval", "train"],
            {"iterations": 10**8, "optimizer": {"type": "Adam", "lr": 0.001}},
            "experiments.demo_retrieval.train.iterations: 100000000 is greater than the maximum of 10000000",
        ),
    ],
)
def test_sizes_and_seeds_out_of_bounds_name_the_key_and_the_bound(repo_params, path, value, expected):
    assert expected in _error(_with(repo_params, path, value))


def test_the_largest_allowed_seed_and_batch_are_accepted(repo_params):
    params = _with(repo_params, ["experiments", "demo_retrieval", "seeds"], [2**32 - 1])
    validate_params(_with(params, ["experiments", "demo_retrieval", "sampler"], {"p": 4, "k": 1024}))

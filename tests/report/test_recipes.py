"""Recipe cards: every paper-profile setting has a source, the check catches a missing one, the cards show
value, source and deviation per table, and docs/recipe_cards.md is the current rendering."""

import copy
from pathlib import Path

import pytest

from circle_repro.cli import main
from circle_repro.config import Study, load_study, select_profile
from circle_repro.report.recipes import (
    Source,
    card_blocks,
    experiment_settings,
    flatten,
    load_recipe_sources,
    missing_sources,
    packaged_sources,
    recipe_cards,
    source_of,
)
from circle_repro.report.render import Table
from support import REPO_ROOT

PAPER = load_study(REPO_ROOT / "params.yaml", "paper")
CARDS = REPO_ROOT / "docs" / "recipe_cards.md"


def test_every_paper_profile_setting_has_a_source():
    assert missing_sources(PAPER) == []
    assert set(packaged_sources()) >= set(PAPER.experiments)


def test_removing_a_source_is_caught_for_the_trainer_and_every_experiment_using_its_weights():
    sources = copy.deepcopy(packaged_sources())
    del sources["table1_megaface_r34"]["train.iterations"]
    assert missing_sources(PAPER, sources) == [
        "table1_megaface_r34: train.iterations",
        "table2_lfw_r34: train.iterations",
        "table2_ytf_r34: train.iterations",
        "table2_cfp_fp_r34: train.iterations",
        "table3_ijbc_r34: train.iterations",
    ]
    del sources["figure3_megaface_r34"]["baselines.ArcFace.gamma"]
    assert "figure3_megaface_r34: baselines.ArcFace.gamma" in missing_sources(PAPER, sources)


def test_a_setting_added_to_the_params_without_a_source_is_caught(repo_params):
    params = copy.deepcopy(repo_params)
    params["experiments"]["table5_cub200"]["train"]["grad_clip"] = {"max_norm": 5.0}
    assert missing_sources(Study.of(select_profile(params, "paper"))) == ["table5_cub200: train.grad_clip.max_norm"]


def test_settings_are_the_leaves_after_trained_by_expansion():
    settings = experiment_settings(PAPER, "table2_ytf_r34")
    assert settings["train.iterations"] == 182000 and settings["dataset"] == "ytf"
    assert settings["losses.CircleLoss.gamma"] == 256 and settings["train.lr_schedule.milestones"] == [0.5, 0.7, 0.9]
    assert not {"description", "table", "resources.runtime_min"} & set(settings) and "resources.gpus" in settings
    sweep = experiment_settings(PAPER, "figure3_megaface_r34")
    assert sweep["baselines.ArcFace.gamma"] == [32, 128] and "losses.CircleLoss-m0.3.m" not in sweep
    assert flatten({"a": {"b": 1, "c": [1, 2], "d": {}}}) == {"a.b": 1, "a.c": [1, 2], "a.d": {}}


def test_exact_entries_win_patterns_apply_and_inherited_settings_take_the_trainers_source():
    lfw = source_of(PAPER, "table2_lfw_r34", "train.optimizer.lr")
    assert lfw is source_of(PAPER, "table1_megaface_r34", "train.optimizer.lr") and lfw.paper.startswith("§4.1")
    assert source_of(PAPER, "table1_megaface_r34", "losses.ArcFace.sharded").reference.startswith("insightface")
    assert "partial_fc.py" in source_of(PAPER, "table1_megaface_r34", "losses.Softmax.sharded").reference
    sources = {"table5_cub200": {"a.*": Source(paper="§1"), "*.b": Source(paper="§2"), "a.c": Source(paper="§3")}}
    assert source_of(PAPER, "table5_cub200", "a.c", sources).paper == "§3"
    with pytest.raises(ValueError, match=r"table5_cub200.a.b matches the patterns \['a.\*', '\*.b'\]"):
        source_of(PAPER, "table5_cub200", "a.b", sources)


def test_cards_show_value_source_and_deviation_per_table():
    cards = recipe_cards(PAPER)
    assert list(cards) == ["Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Fig. 3"]
    table1 = cards["Table 1"]
    assert list(table1.columns) == ["Value", "Source", "Deviation", "Experiments"]
    iterations = table1.loc["train.iterations"]
    assert (iterations["Value"], iterations["Experiments"], iterations["Deviation"]) == ("182000", "all", "")
    assert iterations["Source"] == "paper §4.1: 182k iterations"
    backbones = table1.loc[["model.backbone"]].set_index("Value")["Experiments"].to_dict()
    assert backbones == {"iresnet34": "table1_megaface_r34", "iresnet100": "table1_megaface_r100"}
    assert table1.loc["train_dataset", "Deviation"] == "yes"
    assert table1.loc["train_dataset", "Source"].startswith("deviation: the authors' cleaned MS-Celeb-1M")
    table2 = cards["Table 2"]
    assert "train.iterations" not in table2.index, "the training settings are on the trainer's card"
    assert table2.loc["trained_by", "Value"] == "table1_megaface_r34"
    fig3 = cards["Fig. 3"]
    assert fig3.loc["baselines.ArcFace.gamma", "Value"] == "[32, 128]"
    assert "ArcFace only at gamma 32, 64 and 128" in fig3.loc["baselines.ArcFace.gamma", "Source"]


def test_the_demo_profile_has_no_card_and_says_where_the_paper_cards_are(repo_params):
    blocks = card_blocks(Study.of(select_profile(repo_params, "demo")))
    assert not any(isinstance(block, Table) for block in blocks)
    assert "docs/recipe_cards.md" in blocks[-1].text


def test_bad_sources_file_names_the_key(tmp_path):
    bad = tmp_path / "sources.yaml"
    bad.write_text("experiments:\n  x:\n    seeds: {papr: '§4.1'}\n    train.lr: {paper: 'a | b'}\n")
    with pytest.raises(ValueError) as err:
        load_recipe_sources(bad)
    message = str(err.value)
    assert str(bad) in message and "experiments.x.seeds: Additional properties are not allowed ('papr'" in message
    assert "experiments.x.train.lr.paper: 'a | b' does not match" in message
    bad.write_text("experiments: {x: [\n")
    with pytest.raises(ValueError, match=rf"{bad}: not valid YAML"):
        load_recipe_sources(bad)


def test_docs_recipe_cards_are_the_current_rendering(tmp_path, capsys):
    assert main(["recipe-card", "--params", str(REPO_ROOT / "params.yaml"), "--out", str(tmp_path / "cards.md")]) == 0
    assert "recipe cards written" in capsys.readouterr().out
    assert (tmp_path / "cards.md").read_text() == CARDS.read_text(), (
        "docs/recipe_cards.md is stale: run `circle-repro recipe-card --out docs/recipe_cards.md`"
    )
    text = CARDS.read_text()
    assert text.startswith("# Recipe cards: paper profile") and "**Fig. 3 recipe card: figure3_megaface_r34**" in text


def test_cli_prints_the_cards_and_refuses_a_setting_without_a_source(tmp_path, capsys, repo_params):
    assert main(["recipe-card", "--params", str(REPO_ROOT / "params.yaml")]) == 0
    assert "**Table 1 recipe card: table1_megaface_r34, table1_megaface_r100**" in capsys.readouterr().out
    params = copy.deepcopy(repo_params)
    params["experiments"]["table5_sop"]["train"]["grad_clip"] = {"max_norm": 5.0}
    path = tmp_path / "params.yaml"
    path.write_text(__import__("yaml").safe_dump(params))
    assert main(["recipe-card", "--params", str(path)]) == 2
    err = capsys.readouterr().err
    assert "1 paper setting(s) have no source: table5_sop: train.grad_clip.max_norm" in err
    assert "recipe_sources.yaml" in err


def test_paper_report_gives_the_cards_after_what_was_run_and_before_the_paper_tables(tmp_path):
    from circle_repro.report.build import build_report

    markdown = build_report(PAPER, [], tmp_path / "r", generated="2026-01-01 00:00 UTC", commit="0")[0].read_text()
    order = [markdown.index(heading) for heading in ("## What was run", "## Recipe cards", "## The paper's tables")]
    assert order == sorted(order)
    for card in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Fig. 3"):
        assert f"**{card} recipe card:" in markdown


def test_readme_links_the_cards():
    assert "docs/recipe_cards.md" in Path(REPO_ROOT / "README.md").read_text()

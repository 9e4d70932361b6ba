"""docs/adding.md's "add a loss" example runs: the new loss trains, validates in params and gets a report row."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from synthetic_runs import write_demo_runs, write_run

from circle_repro.config import ConfigError, RunSpec, Study, params_schema, select_profile, validate_params
from circle_repro.losses import LOSSES, build_loss, registry
from circle_repro.report.build import build_report
from support import REPO_ROOT

GUIDE = (REPO_ROOT / "docs" / "adding.md").read_text()


def _section(title: str) -> str:
    return GUIDE.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


@pytest.fixture
def contrastive():
    """The guide's loss class, registered for the test and unregistered after it."""
    code = re.search(r"```python\n(.*?)```", _section("Add a loss"), flags=re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/adding.md", "exec"), namespace)
    params_schema.cache_clear()
    try:
        yield namespace["ContrastiveLoss"]
    finally:
        registry._REGISTRY.pop("contrastive", None)
        params_schema.cache_clear()


def _params_with_the_new_row(repo_params) -> dict:
    params = copy.deepcopy(repo_params)
    row = re.search(r"```yaml\n(?:.*\n)*?\s+(Contrastive: .*)\n```", _section("Add a loss")).group(1)
    name, entry = row.split(": ", 1)
    import yaml

    params["experiments"]["demo_retrieval"]["losses"][name] = yaml.safe_load(entry)
    return params


def test_the_guides_loss_builds_and_trains(contrastive):
    loss = build_loss({"type": "contrastive", "margin": 0.3})
    assert type(loss) is contrastive and LOSSES["contrastive"] is contrastive
    embeddings = torch.randn(8, 4, requires_grad=True)
    value = loss(embeddings, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    value.backward()
    assert value.item() > 0 and embeddings.grad.abs().sum() > 0


def test_params_accept_the_guides_loss_row_and_refuse_a_misspelt_argument(contrastive, repo_params):
    params = _params_with_the_new_row(repo_params)
    validate_params(params)
    params["experiments"]["demo_retrieval"]["losses"]["Contrastive"]["margn"] = 0.1
    with pytest.raises(ConfigError, match=r"Contrastive.*'margn' was unexpected"):
        validate_params(params)


def test_without_the_class_the_row_is_refused(repo_params):
    with pytest.raises(ConfigError, match=r"losses.Contrastive.type: 'contrastive' is not one of"):
        validate_params(_params_with_the_new_row(repo_params))


def test_the_guides_loss_gets_a_report_row(contrastive, repo_params, tmp_path):
    params = select_profile(_params_with_the_new_row(repo_params), "demo")
    files = write_demo_runs(tmp_path / "runs", params)
    for seed in params["experiments"]["demo_retrieval"]["seeds"]:
        hits = np.random.default_rng(seed).uniform(size=50) < 0.7
        metrics = {"R@1": hits.mean(), "R@2": 0.8, "R@4": 0.9, "R@8": 1.0, "MAP@R": 0.4}
        per_query = {"ids": np.arange(50), "R@1": hits, "MAP@R": np.full(50, 0.4)}
        run = RunSpec("demo_retrieval", "Contrastive", seed)
        files.append(write_run(tmp_path / "runs", params, run, metrics, per_query, metrics))
    markdown = build_report(Study.of(params), files, tmp_path / "report")[0].read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| Contrastive |")]
    assert rows and "(n=3)" in rows[0], markdown

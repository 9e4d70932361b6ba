"""Every recipe of the paper profile trains and evaluates on its data set's fixture (slow).

What runs is the recipe's real backbone class (narrowed to 1/16 of the channels, no pretrained
weights), its real losses, sampler (P and K cut to what the fixture holds), optimiser, schedule,
AMP mode and evaluation protocol, for two iterations on the byte-faithful miniature of the data
set's raw layout prepared by the real preparer.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml
from fixtures.reid import build_market1501, build_msmt17
from fixtures.retrieval import build_cars_a, build_cub, build_sop

from circle_repro.config import RunSpec, eval_config, select_profile, train_config
from circle_repro.data.datasets import cars196, cub200, market1501, msmt17, sop
from circle_repro.data.manifest import read_manifest
from circle_repro.engine.evaluate import evaluate_run
from circle_repro.engine.train import train_run
from support import REPO_ROOT

_PAPER = select_profile(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()), "paper")

_FIXTURES = {
    "cub200": (build_cub, cub200.prepare_raw),
    "cars196": (build_cars_a, cars196.prepare_raw),
    "sop": (build_sop, sop.prepare_raw),
    "market1501": (build_market1501, market1501.prepare_raw),
    "msmt17": (build_msmt17, msmt17.prepare_raw),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Each data set the paper profile uses, prepared once from its fixture."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            root = tmp_path_factory.mktemp(name)
            build, prepare_raw = _FIXTURES[name]
            build(root / "raw")
            cache[name] = prepare_raw(root / "raw", root / "prepared").parent
        return cache[name]

    return get


def _smoke_params(experiment: str, data_root: Path) -> dict:
    """The paper params with this experiment cut to the fixture: 2 iterations, narrow, P x K that fits."""
    params = copy.deepcopy(_PAPER)
    spec = params["experiments"][experiment]
    train = read_manifest(data_root, split="train")
    per_class = train.groupby("label").size()
    spec["sampler"] = {"p": min(spec["sampler"]["p"], len(per_class)), "k": min(spec["sampler"]["k"], int(per_class.max()))}
    spec["model"] |= {"width": 0.0625, "pretrained": None}
    spec["train"] = {key: value for key, value in spec["train"].items() if key not in ("epochs", "warmup")}
    spec["train"] |= {"iterations": 2, "checkpoint_interval": 2}
    return params


_CASES = [
    pytest.param(experiment, loss, id=f"{experiment}/{loss}")
    for experiment, spec in _PAPER["experiments"].items()
    for loss in spec["losses"]
]


@pytest.mark.slow
@pytest.mark.parametrize(("experiment", "loss"), _CASES)
def test_paper_recipe_trains_and_evaluates_on_its_fixture(experiment, loss, prepared, tmp_path):
    data_root = prepared(_PAPER["experiments"][experiment]["dataset"])
    params = _smoke_params(experiment, data_root)
    run = RunSpec(experiment, loss, 0)
    train_run(train_config(params, run), data_root, tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = evaluate_run(tmp_path, data_root, eval_config(params, run), tmp_path)
    assert result["metrics"] and all(math.isfinite(value) for value in result["metrics"].values())


def test_every_paper_data_set_has_a_fixture():
    assert {spec["dataset"] for spec in _PAPER["experiments"].values()} <= set(_FIXTURES)

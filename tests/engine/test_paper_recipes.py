"""Every recipe of the paper profile trains and evaluates on its data set's fixture (slow).

What runs is the recipe's real backbone class (narrowed to 1/16 of the channels, no pretrained
weights), its real losses, sampler (P and K cut to what the fixture holds), optimiser, schedule,
AMP mode and evaluation protocol, for two iterations on the byte-faithful miniature of the data
set's raw layout prepared by the real preparer. A ``trained_by`` experiment (the face test sets)
evaluates its trainer's smoke-trained weights; a sweep runs the extreme values of each swept
parameter (the rows in between differ from them only in a number).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from fixtures.face import build_faces_emore, build_youtube_faces
from fixtures.ijbc_megaface import build_ijbc, build_megaface
from fixtures.reid import build_market1501, build_msmt17
from fixtures.retrieval import build_cars_a, build_cub, build_sop

from circle_repro.config import RunSpec, eval_config, experiment_datasets, select_profile, train_config, training_run
from circle_repro.data.datasets import cars196, cub200, get_dataset, market1501, msmt17, sop
from circle_repro.data.manifest import read_manifest
from circle_repro.engine.evaluate import evaluate_run
from circle_repro.engine.train import train_run
from support import REPO_ROOT

_PAPER = select_profile(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()), "paper")


def _raw_layout(build: Callable[[Path], object], prepare_raw: Callable[[Path, Path], Path]) -> Callable[[Path], Path]:
    """A fixture whose builder writes the data set's raw folder and whose preparer reads it."""

    def prepare(root: Path) -> Path:
        build(root / "raw")
        return prepare_raw(root / "raw", root / "prepared").parent

    return prepare


def _face(name: str, build: Callable[[Path], object]) -> Callable[[Path], Path]:
    """A face fixture under ``root/raw/<name>``, prepared by the registry entry (the verification packs
    come from the ms1mv2 folder beside theirs, as on a real disk)."""

    def prepare(root: Path) -> Path:
        build(root / "raw")
        return get_dataset(name).prepare(root / "prepared" / name, root / "raw" / name).parent

    return prepare


def _faces_emore(raw: Path) -> None:
    if not (raw / "ms1mv2").exists():
        build_faces_emore(raw / "ms1mv2" / "faces_emore", images_per_class=(3, 2, 4, 3), n_pairs=20)


_FIXTURES = {
    "cub200": _raw_layout(build_cub, cub200.prepare_raw),
    "cars196": _raw_layout(build_cars_a, cars196.prepare_raw),
    "sop": _raw_layout(build_sop, sop.prepare_raw),
    "market1501": _raw_layout(build_market1501, market1501.prepare_raw),
    "msmt17": _raw_layout(build_msmt17, msmt17.prepare_raw),
    "ms1mv2": _face("ms1mv2", _faces_emore),
    "lfw": _face("lfw", _faces_emore),
    "cfp_fp": _face("cfp_fp", _faces_emore),
    "agedb_30": _face("agedb_30", _faces_emore),
    "ytf": _face("ytf", lambda raw: build_youtube_faces(raw / "ytf")),
    "ijbc": _face("ijbc", lambda raw: build_ijbc(raw / "ijbc")),
    "megaface": _face("megaface", lambda raw: build_megaface(raw / "megaface")),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Each data set the paper profile uses, prepared once from its fixture (the face sets share one raw root)."""
    cache: dict[str, Path] = {}
    face_root = tmp_path_factory.mktemp("faces")

    def get(name: str) -> Path:
        if name not in cache:
            root = face_root if _FIXTURES[name].__qualname__.startswith("_face") else tmp_path_factory.mktemp(name)
            cache[name] = _FIXTURES[name](root)
        return cache[name]

    return get


def _smoke_params(experiment: str, data_root: Path) -> dict:
    """The paper params with this experiment cut to the fixture: 2 iterations, narrow, P x K that fits."""
    params = copy.deepcopy(_PAPER)
    spec = params["experiments"][experiment]
    train = read_manifest(data_root, split="train")
    per_class = train.groupby("label").size()
    spec["sampler"] = {
        "p": min(spec["sampler"]["p"], len(per_class)),
        "k": min(spec["sampler"]["k"], int(per_class.max())),
    }
    spec["model"] |= {"width": 0.0625, "pretrained": None}
    if spec["model"].get("reduction") is False:  # the embedding is the narrowed trunk's own channels
        spec["model"]["embedding_dim"] = round(spec["model"]["embedding_dim"] * spec["model"]["width"])
    spec["train"] = {key: value for key, value in spec["train"].items() if key not in ("epochs", "warmup")}
    spec["train"] |= {"iterations": 2, "checkpoint_interval": 2}
    if "validation" in spec["train"]:  # validate once, after the second iteration
        spec["train"]["validation"] = spec["train"]["validation"] | {"interval": 2}
    return params


def _smoke_rows(spec: dict) -> list[str]:
    """The loss rows smoke-run: all of an experiment; of a sweep, the extreme values of each loss's parameters."""
    if "sweep" not in spec:
        return list(spec["losses"])
    rows = []
    points = spec["sweep"]["points"]
    for loss, parameter in {(point["loss"], point["parameter"]) for point in points.values()}:
        swept = sorted(
            (p["value"], row) for row, p in points.items() if (p["loss"], p["parameter"]) == (loss, parameter)
        )
        rows += [swept[0][1], swept[-1][1]]
    return sorted(rows)


_CASES = [
    pytest.param(experiment, loss, id=f"{experiment}/{loss}")
    for experiment, spec in _PAPER["experiments"].items()
    for loss in _smoke_rows(spec)
]


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    """Smoke-train a run once (the face test sets share their trainer's runs); its folder and params."""
    cache: dict[RunSpec, tuple[Path, dict]] = {}

    def get(run: RunSpec) -> tuple[Path, dict]:
        if run not in cache:
            spec = _PAPER["experiments"][run.experiment]
            train_root = prepared(spec.get("train_dataset", spec["dataset"]))
            params = _smoke_params(run.experiment, train_root)
            validation = params["experiments"][run.experiment]["train"].get("validation", {"sets": {}})
            for name in validation["sets"]:  # prepared beside the training set, where the hook looks
                assert prepared(name).parent == train_root.parent
            run_dir = tmp_path_factory.mktemp("run")
            train_run(train_config(params, run), train_root, run_dir, tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
            cache[run] = run_dir, params
        return cache[run]

    return get


@pytest.mark.slow
@pytest.mark.parametrize(("experiment", "loss"), _CASES)
def test_paper_recipe_trains_and_evaluates_on_its_fixture(experiment, loss, prepared, trained, tmp_path):
    run = RunSpec(experiment, loss, 0)
    run_dir, params = trained(training_run(_PAPER, run))
    params = copy.deepcopy(params)
    params["experiments"][experiment] = params["experiments"][training_run(_PAPER, run).experiment] | {
        key: _PAPER["experiments"][experiment][key] for key in ("trained_by", "table", "dataset", "evaluation")
        if key in _PAPER["experiments"][experiment]
    }  # fmt: skip
    result = evaluate_run(
        run_dir, prepared(_PAPER["experiments"][experiment]["dataset"]), eval_config(params, run), tmp_path
    )
    assert result.run_id == run.run_id and result.trained_by == training_run(_PAPER, run).run_id
    assert result.metrics and all(math.isfinite(value) for value in result.metrics.values())


def test_every_paper_data_set_has_a_fixture():
    assert {name for spec in _PAPER["experiments"].values() for name in experiment_datasets(spec)} <= set(_FIXTURES)


def test_a_sweep_smoke_runs_the_extremes_of_each_parameter():
    rows = _smoke_rows(_PAPER["experiments"]["figure3_megaface_r34"])
    assert rows == [
        "AM-Softmax-gamma1024",
        "AM-Softmax-gamma32",
        "ArcFace-gamma128",
        "ArcFace-gamma32",
        "CircleLoss-gamma1024",
        "CircleLoss-gamma32",
        "CircleLoss-m-0.2",
        "CircleLoss-m0.3",
    ]

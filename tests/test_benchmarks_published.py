"""The published-throughput data (benchmarks/published_throughput.yaml) and the comparison against it."""

from __future__ import annotations

import copy
import math
from types import ModuleType
from typing import Any

import pytest
import yaml

from support import BENCHMARKS, benchmark_script

PUBLISHED = BENCHMARKS / "published_throughput.yaml"


@pytest.fixture(scope="module")
def compare_throughput() -> ModuleType:
    return benchmark_script("compare_throughput.py")


@pytest.fixture(scope="module")
def published() -> dict[str, Any]:
    return yaml.safe_load(PUBLISHED.read_text())


def _results(**rates: float) -> dict[str, Any]:
    """A hand-made train_throughput.py results JSON."""
    sizes = {"resnet50": (256, 128), "iresnet100": (112, 112), "bn_inception": (227, 227)}
    return {
        "device": "Test GPU",
        "torch": "0",
        "amp": "bf16",
        "channels_last": True,
        "batch": 128,
        "iters": 1,
        "repeats": 1,
        "results": [
            {"model": name, "input": [3, *sizes[name]], "images_per_s": {"plain": rate}} for name, rate in rates.items()
        ],
    }


def _entry(**overrides: Any) -> dict[str, Any]:
    entry = {
        "id": "example",
        "model": "iresnet100",
        "published_model": "IResNet-100",
        "input": [112, 112],
        "gpu": "Example GPU",
        "num_gpus": 8,
        "precision": "FP16",
        "batch_per_gpu": 128,
        "images_per_s_published": 4000,
        "published_scope": "total",
        "images_per_s_per_gpu": 500.0,
        "per_gpu_derivation": "4000 / 8",
        "setting": "example",
        "source": {"repository": "owner/repo", "path": "README.md", "commit": None, "quote": "| 4000 |"},
    }
    entry.update(overrides)
    return entry


def test_published_yaml_loads_and_is_sound(compare_throughput: ModuleType, published: dict[str, Any]) -> None:
    assert compare_throughput.validate_published(published) == []
    assert compare_throughput.load_published(PUBLISHED)["entries"] == published["entries"]


def test_every_entry_has_required_fields_positive_numbers_and_a_source(published: dict[str, Any]) -> None:
    entries = published["entries"]
    assert entries, "no published entries"
    required = {
        "id", "model", "published_model", "input", "gpu", "num_gpus", "precision", "batch_per_gpu",
        "images_per_s_published", "published_scope", "images_per_s_per_gpu", "per_gpu_derivation",
        "setting", "source",
    }  # fmt: skip
    for entry in entries:
        assert required <= entry.keys(), (entry.get("id"), required - entry.keys())
        for key in ("num_gpus", "batch_per_gpu", "images_per_s_published", "images_per_s_per_gpu"):
            assert isinstance(entry[key], int | float) and not isinstance(entry[key], bool), (entry["id"], key)
            assert entry[key] > 0, (entry["id"], key)
        source = entry["source"]
        for key in ("repository", "path", "quote"):
            assert isinstance(source[key], str) and source[key].strip(), (entry["id"], key)
        assert "/" in source["repository"], entry["id"]
        assert source["commit"] is None or len(source["commit"]) == 40, entry["id"]
        divisor = entry["num_gpus"] if entry["published_scope"] == "total" else 1
        assert math.isclose(entry["images_per_s_per_gpu"], entry["images_per_s_published"] / divisor)


def test_entries_name_models_the_benchmark_times(published: dict[str, Any]) -> None:
    train_throughput = benchmark_script("train_throughput.py")
    for entry in published["entries"]:
        height, width, _, _ = train_throughput.MODELS[entry["model"]]
        assert entry["input"] == [height, width], entry["id"]
    # A model of the issue is either compared or recorded as having no published figure, not both.
    compared = {entry["model"] for entry in published["entries"]}
    assert not compared & published["no_published_figure"].keys()
    assert {"resnet50", "iresnet100", "bn_inception"} <= compared | published["no_published_figure"].keys()


def test_ratio_on_a_hand_made_example(compare_throughput: ModuleType) -> None:
    data = {
        "entries": [
            _entry(),
            _entry(id="per-gpu", published_scope="per_gpu", images_per_s_published=250, images_per_s_per_gpu=250),
        ]
    }
    assert compare_throughput.validate_published(data) == []
    rows = compare_throughput.compare(_results(resnet50=900.0, iresnet100=1500.0), data)
    assert [(row.model, row.published and row.published["id"]) for row in rows] == [
        ("resnet50", None),
        ("iresnet100", "example"),
        ("iresnet100", "per-gpu"),
    ]
    assert rows[0].ratio is None
    assert rows[1].ratio == pytest.approx(1500.0 / 500.0)  # 4000 img/s over 8 GPUs -> 500 per GPU
    assert rows[2].ratio == pytest.approx(1500.0 / 250.0)
    assert compare_throughput.throughput_ratio(300.0, 600.0) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        compare_throughput.throughput_ratio(1.0, 0.0)

    text = compare_throughput.format_comparison(
        _results(resnet50=900.0, iresnet100=1500.0), rows, data, "ours.json", "published.yaml"
    )
    assert "CAVEAT" in text and "not a like-for-like" in text
    assert "resnet50 256x128: ours 900.0 img/s (Test GPU)\n  no published figure" in text
    assert "500.0 img/s per GPU (4,000 total / 8 GPUs) | Example GPU x8" in text
    assert "ours/published 3.00" in text and "ours/published 6.00" in text
    assert "no published figure: resnet50" in text


def test_validation_catches_bad_entries(compare_throughput: ModuleType) -> None:
    validate = compare_throughput.validate_published
    missing = _entry()
    del missing["gpu"]
    no_source = _entry()
    del no_source["source"]
    bad = {
        "entries[0]: 'gpu' is a required property": missing,
        "entries[0].images_per_s_per_gpu: 0 is less than or equal to the minimum of 0; allowed: > 0": _entry(
            images_per_s_per_gpu=0
        ),
        "entries[0].num_gpus: -1 is less than the minimum of 1; allowed: >= 1": _entry(num_gpus=-1),
        "images_per_s_per_gpu 4000 != images_per_s_published / 8 = 500.0": _entry(images_per_s_per_gpu=4000),
        "entries[0]: 'source' is a required property": no_source,
        "entries[0].source.quote: ' ' does not match": _entry(source={**_entry()["source"], "quote": " "}),
        "entries[0].published_scope: 'sum' is not one of ['total', 'per_gpu']": _entry(published_scope="sum"),
        "entries[0].source.commit: 'abc' does not match": _entry(source={**_entry()["source"], "commit": "abc"}),
        "entries[0]: Additional properties are not allowed ('gpus' was unexpected)": _entry(gpus=8),
    }
    for message, entry in bad.items():
        problems = validate({"entries": [entry]})
        assert any(message in problem for problem in problems), (message, problems)
    assert any("duplicate id" in p for p in validate({"entries": [_entry(), copy.deepcopy(_entry())]}))
    assert validate({"rows": []}) == [
        "<top level>: 'entries' is a required property",
        "<top level>: Additional properties are not allowed ('rows' was unexpected); allowed: entries, "
        "excluded, no_published_figure",
    ]

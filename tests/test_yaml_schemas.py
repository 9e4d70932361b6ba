"""Every YAML file the project reads is checked against a JSON schema; an error names the file, the key and
the allowed values."""

from __future__ import annotations

import re

import pytest
import yaml

from circle_repro.config import load_params
from circle_repro.data.sources import load_sources
from circle_repro.plan.rates import load_rates
from circle_repro.report.recipes import load_recipe_sources
from circle_repro.report.targets import load_paper_targets
from support import BENCHMARKS, REPO_ROOT, benchmark_script

SRC = REPO_ROOT / "src" / "circle_repro"


def _set(path, value):
    def mutate(data):
        *parents, last = path
        for key in parents:
            data = data[key]
        data[last] = value

    return mutate


CASES = {
    "params": (
        REPO_ROOT / "params.yaml",
        load_params,
        _set(["experiments", "demo_retrieval", "losses", "Triplet", "type"], "quadruplet"),
        "experiments.demo_retrieval.losses.Triplet.type: 'quadruplet' is not one of ['am_softmax', 'arcface', ",
    ),
    "sources": (
        SRC / "data" / "sources.yaml",
        load_sources,
        _set(["cub200", "access"], "torrent"),
        "cub200.access: 'torrent' is not one of ['download', 'manual', 'withdrawn', 'embedded']",
    ),
    "paper targets": (
        SRC / "report" / "paper_targets.yaml",
        load_paper_targets,
        _set(["tables", "table4", "unit"], "fraction"),
        "tables.table4.unit: 'percent' was expected",
    ),
    "recipe sources": (
        SRC / "report" / "recipe_sources.yaml",
        load_recipe_sources,
        _set(["experiments", "table1_megaface_r34", "seeds"], {"paper": "Sec. 4", "papr": "typo"}),
        "experiments.table1_megaface_r34.seeds: Additional properties are not allowed ('papr' was unexpected); allowed: ",
    ),
    "job rates": (
        REPO_ROOT / "benchmarks" / "job_rates.yaml",
        load_rates,
        _set(["metric", "threads"], 0),
        "metric.threads: 0 is less than the minimum of 1; allowed: >= 1",
    ),
    "published throughput": (
        BENCHMARKS / "published_throughput.yaml",
        lambda path: benchmark_script("compare_throughput.py").load_published(path),
        _set(["entries", 0, "published_scope"], "summed"),
        "entries[0].published_scope: 'summed' is not one of ['total', 'per_gpu']",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_committed_file_passes_its_schema(name):
    path, load, _, _ = CASES[name]
    assert load(path) is not None


@pytest.mark.parametrize("name", sorted(CASES))
def test_an_error_names_the_file_the_key_and_what_is_allowed(name, tmp_path):
    path, load, mutate, problem = CASES[name]
    data = yaml.safe_load(path.read_text())
    mutate(data)
    bad = tmp_path / path.name
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ValueError) as error:
        load(bad)
    message = str(error.value)
    assert message.startswith(f"{bad}: invalid ") and problem in message, message


def test_every_module_that_parses_yaml_checks_a_schema():
    modules = [*SRC.rglob("*.py"), *BENCHMARKS.glob("*.py")]
    parsing = [p for p in modules if re.search(r"\byaml\.(safe_)?load\(", p.read_text())]
    assert parsing
    for path in parsing:
        text = path.read_text()
        assert re.search(r"\b(check|schema_problems|validate_params)\(", text), (
            f"{path.relative_to(REPO_ROOT)} reads YAML unchecked"
        )

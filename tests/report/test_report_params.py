"""params.yaml's report section: tolerances per paper table and the bootstrap settings are validated."""

import copy

import pytest

from circle_repro.config import ConfigError, validate_params


def _error(params) -> str:
    with pytest.raises(ConfigError) as info:
        validate_params(params, source="params.yaml")
    return str(info.value)


def test_committed_tolerances_cover_every_paper_table(repo_params):
    assert sorted(repo_params["report"]["tolerance"]) == ["table1", "table2", "table3", "table4", "table5"]
    validate_params(repo_params)


def test_negative_tolerance_names_key_and_bound(repo_params):
    params = copy.deepcopy(repo_params)
    params["report"]["tolerance"]["table5"] = -1
    message = _error(params)
    assert "report.tolerance.table5" in message and "allowed: >= 0" in message and "percentage points" in message


def test_missing_or_unknown_table_tolerance_is_refused(repo_params):
    params = copy.deepcopy(repo_params)
    del params["report"]["tolerance"]["table3"]
    params["report"]["tolerance"]["table6"] = 1.0
    message = _error(params)
    assert "'table3' is a required property" in message and "'table6' was unexpected" in message


def test_bootstrap_needs_enough_resamples(repo_params):
    params = copy.deepcopy(repo_params)
    params["report"]["bootstrap"]["resamples"] = 10
    assert "report.bootstrap.resamples" in _error(params)

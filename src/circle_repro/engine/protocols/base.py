"""What every protocol shares: the embedder it gets, the test set, its result, the checks of its settings
and unit features."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from circle_repro.data.manifest import ManifestError, read_manifest
from circle_repro.evaluation.verification import check_fars, flip_sum_embeddings

#: ``embed(rows, flip)``: float features (n_rows x d, not normalised) of the images of manifest rows
#: (a DataFrame with ``path``), in row order; of the horizontally flipped images when ``flip``.
Embedder = Callable[[pd.DataFrame, bool], np.ndarray]


@dataclass(frozen=True)
class TestSet:
    """A prepared data set's folder (its side files: pairs, noise lists, ...) and its test-split rows."""

    __test__ = False  # not a pytest test class

    root: Path
    frame: pd.DataFrame  # the test split of the manifest, index 0..n-1

    @classmethod
    def load(cls, root: str | Path) -> TestSet:
        root = Path(root)
        return cls(root, read_manifest(root, split="test"))


@dataclass(frozen=True, eq=False)
class ProtocolResult:
    """What a protocol measured.

    ``per_query``: ``ids`` (which queries / pairs, stable across runs of the same test set) and,
    per metric that is a mean over them, that metric's per-query values. ``similarity_inputs``:
    (unit features, identity labels) of the test images the similarity figures may sample pairs
    from, or None when the data set has no identity labels (IJB-C).
    """

    metrics: dict[str, float]
    per_query: dict[str, np.ndarray]
    similarity_inputs: tuple[np.ndarray, np.ndarray] | None = None
    trivial: tuple[str, ...] = ()  # why some metrics are trivial for this input (one class, all pairs matching)


Protocol = Callable[[Embedder, TestSet, Mapping[str, Any]], ProtocolResult]


def merge_settings(
    protocol: str, settings: Mapping[str, Any], defaults: Mapping[str, Any], required: Sequence[str] = ()
) -> dict[str, Any]:
    """``settings`` over ``defaults``; ValueError on an unknown or missing key."""
    given = dict(settings)
    named = given.pop("protocol", protocol)
    if named != protocol:
        raise ValueError(f"{protocol}: settings name protocol {named!r}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{protocol}: unknown setting(s) {unknown}; allowed: {sorted(defaults)}")
    missing = [key for key in required if key not in given]
    if missing:
        raise ValueError(f"{protocol}: missing setting(s) {missing}")
    return {**defaults, **given}


def check_flag(protocol: str, settings: Mapping[str, Any], key: str) -> bool:
    """``settings[key]`` when it is a bool; ValueError naming the protocol and key otherwise."""
    value = settings[key]
    if not isinstance(value, bool):
        raise ValueError(f"{protocol}: setting {key!r} must be true or false, got {value!r}")
    return value


def check_positive_ints(protocol: str, value: Any, key: str) -> list[int]:
    """``value`` as a non-empty list of positive ints; ValueError naming the protocol and key otherwise."""
    if (
        isinstance(value, (str, bytes, Mapping))
        or not isinstance(value, Sequence)
        or not value
        or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise ValueError(f"{protocol}: setting {key!r} must be a non-empty list of positive integers, got {value!r}")
    return [int(v) for v in value]


def check_fars_setting(protocol: str, value: Any) -> list[float]:
    """The ``fars`` setting, checked as :func:`~circle_repro.evaluation.verification.check_fars` checks it."""
    try:
        return check_fars(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{protocol}: setting 'fars': {error}") from None


def build_options(protocol: str, key: str, value: Any, build: Callable[..., Any], fields: Mapping[str, str]) -> Any:
    """None, or ``build(**options)`` from a mapping whose keys are ``fields`` (settings key -> argument)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{protocol}: setting {key!r} must be a mapping with keys {sorted(fields)} or null, got {value!r}"
        )
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ValueError(f"{protocol}: setting {key!r} has unknown key(s) {unknown}; allowed: {sorted(fields)}")
    try:
        return build(**{fields[name]: option for name, option in value.items()})
    except ValueError as error:
        raise ValueError(f"{protocol}: setting {key!r}: {error}") from None


def require_columns(protocol: str, test: TestSet, columns: Sequence[str]) -> None:
    """ManifestError naming the test set when its manifest lacks any of ``columns``."""
    missing = [c for c in columns if c not in test.frame.columns]
    if missing:
        raise ManifestError(f"{test.root}: the manifest lacks column(s) {missing} that protocol {protocol!r} needs")


def unit(features: np.ndarray) -> np.ndarray:
    """Rows L2-normalised as ``EmbeddingModel.embed`` does it (``F.normalize``, same dtype)."""
    return F.normalize(torch.from_numpy(np.ascontiguousarray(features)), dim=1).numpy()


def image_features(embed: Embedder, rows: pd.DataFrame, flip: bool) -> np.ndarray:
    """Unit features of ``rows``; with ``flip`` insightface's ``emb(x) + emb(flip(x))``, normalised."""
    features = embed(rows, False)
    if not flip:
        return unit(features)
    return flip_sum_embeddings(features, embed(rows, True))


def metric_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics as plain floats (what metrics.json stores)."""
    return {name: float(value) for name, value in metrics.items()}

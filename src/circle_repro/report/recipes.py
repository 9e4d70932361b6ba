"""Recipe cards: every setting of a paper experiment beside its source, one card per paper table.

The sources are data, in ``recipe_sources.yaml`` beside this module (its schema:
``recipe_sources.schema.yaml``): per experiment and dotted setting path, the paper's section, the
reference repository and file the value follows, or the reason it deviates. A setting is a leaf of the
experiment as the workflow runs it (``trained_by`` expanded; a list is one setting), except
:data:`NOT_SETTINGS`; a sweep's settings are its own entry under ``sweeps`` (everything else is its
base experiment's). An experiment with ``trained_by`` takes the sources of what it inherits from its
trainer, whose card shows those settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from circle_repro.config import INHERITED_FROM_TRAINER, Study
from circle_repro.report.render import Block, Heading, Paragraph, Table
from circle_repro.schema import check, packaged_schema

SOURCES_RESOURCE = "recipe_sources.yaml"
SCHEMA_RESOURCE = "recipe_sources.schema.yaml"
#: Keys that are no recipe setting: documentation, and cluster requests that change where and how long a
#: job runs but not what it computes (``resources.gpus`` stays: it sets the global batch).
NOT_SETTINGS = (
    "description",
    "table",
    "resources.cpus_per_gpu",
    "resources.mem_mb_per_gpu",
    "resources.runtime_min",
    "resources.partition",
)
#: Settings an experiment with ``trained_by`` inherits from its trainer (see ``config.expand_trained_by``).
INHERITED = (*INHERITED_FROM_TRAINER, "train_dataset")
CARD_COLUMNS = ("Value", "Source", "Deviation", "Experiments")


@dataclass(frozen=True)
class Source:
    """Where one setting comes from: the paper, a reference file, and/or why it deviates."""

    paper: str | None = None
    reference: str | None = None
    deviation: str | None = None

    @property
    def text(self) -> str:
        """One line for the card: 'paper §…; <reference>; deviation: …'."""
        parts = [
            f"paper {self.paper}" if self.paper else "",
            self.reference or "",
            f"deviation: {self.deviation}" if self.deviation else "",
        ]
        return "; ".join(part for part in parts if part)


Sources = dict[str, dict[str, Source]]


def load_recipe_sources(path: str | Path | None = None) -> Sources:
    """``{experiment: {setting or pattern: Source}}`` from ``path`` (default: the packaged file), validated;
    ValueError naming the file and the key on bad input."""
    if path is None:
        text, name = (
            resources.files(__package__).joinpath(SOURCES_RESOURCE).read_text(encoding="utf-8"),
            SOURCES_RESOURCE,
        )
    else:
        text, name = Path(path).read_text(encoding="utf-8"), str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{name}: not valid YAML: {exc}") from None
    check(data, packaged_schema(__package__, SCHEMA_RESOURCE), name, "recipe sources")
    return {
        experiment: {setting: Source(**source) for setting, source in settings.items()}
        for experiment, settings in data["experiments"].items()
    }


@cache
def packaged_sources() -> Sources:
    """The packaged ``recipe_sources.yaml``, loaded once."""
    return load_recipe_sources()


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{dotted path: value}`` of a nested mapping's leaves; a list or an empty mapping is one leaf."""
    leaves: dict[str, Any] = {}
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            leaves |= flatten(value, f"{path}.")
        else:
            leaves[path] = value
    return leaves


def experiment_settings(study: Study, experiment: str) -> dict[str, Any]:
    """The settings of one experiment of ``study``: dotted path -> value."""
    typed = study.experiment(experiment)
    own = typed.spec if typed.sweep is None else typed.sweep.declared
    return {
        path: value
        for path, value in flatten(own).items()
        if not any(path == key or path.startswith(f"{key}.") for key in NOT_SETTINGS)
    }


def _inherited(setting: str) -> bool:
    return setting.split(".", 1)[0] in INHERITED


def source_of(study: Study, experiment: str, setting: str, sources: Sources | None = None) -> Source | None:
    """The source of one setting: the experiment's exact entry, else its one matching pattern; for a setting
    a ``trained_by`` experiment inherits, its trainer's. None when there is none; ValueError when two
    patterns match."""
    sources = packaged_sources() if sources is None else sources
    trainer = study.experiment(experiment).trained_by
    if trainer is not None and _inherited(setting):
        return source_of(study, trainer, setting, sources)
    entries = sources.get(experiment, {})
    if setting in entries:
        return entries[setting]
    matches = [pattern for pattern in entries if "*" in pattern and fnmatchcase(setting, pattern)]
    if len(matches) > 1:
        raise ValueError(
            f"{SOURCES_RESOURCE}: {experiment}.{setting} matches the patterns {matches}; give the setting its own entry"
        )
    return entries[matches[0]] if matches else None


def missing_sources(study: Study, sources: Sources | None = None) -> list[str]:
    """``experiment: setting`` of every setting of ``study``'s experiments that has no source."""
    return [
        f"{experiment}: {setting}"
        for experiment in study.experiments
        for setting in experiment_settings(study, experiment)
        if source_of(study, experiment, setting, sources) is None
    ]


def _card_name(study: Study, experiment: str) -> str:
    typed = study.experiment(experiment)
    return "Fig. 3" if typed.is_sweep else f"Table {str(typed.table).removeprefix('table')}"


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def card_experiments(study: Study, sources: Sources | None = None) -> dict[str, list[str]]:
    """``{card: experiments}``: the experiments of ``study`` that have sources, per paper table (Tables 1-5, then
    Fig. 3)."""
    sources = packaged_sources() if sources is None else sources
    groups: dict[str, list[str]] = {}
    for experiment in study.experiments:
        if experiment in sources:
            groups.setdefault(_card_name(study, experiment), []).append(experiment)
    return dict(sorted(groups.items(), key=lambda item: (item[0].startswith("Fig."), item[0])))


def recipe_cards(study: Study, sources: Sources | None = None) -> dict[str, pd.DataFrame]:
    """One card per paper table (and Fig. 3) of the experiments that have sources: index ``Setting``,
    columns :data:`CARD_COLUMNS`. Rows equal in value and source across a card's experiments are one row
    ("all"); a ``trained_by`` experiment shows only its own settings (the rest are its trainer's)."""
    sources = packaged_sources() if sources is None else sources
    cards = {}
    for card, experiments in card_experiments(study, sources).items():
        rows: dict[tuple[str, str, str], list[str]] = {}
        flags: dict[tuple[str, str, str], bool] = {}
        for experiment in experiments:
            trainer = study.experiment(experiment).trained_by
            for setting, value in experiment_settings(study, experiment).items():
                if trainer is not None and _inherited(setting):
                    continue
                source = source_of(study, experiment, setting, sources)
                key = (setting, _value_text(value), source.text if source else "no source")
                rows.setdefault(key, []).append(experiment)
                flags[key] = source is None or source.deviation is not None
        order = {setting: index for index, (setting, *_) in reversed(list(enumerate(rows)))}  # first appearance
        frame = pd.DataFrame(
            [
                (
                    setting,
                    value,
                    text,
                    "yes" if flags[key] else "",
                    "all" if len(names) == len(experiments) else ", ".join(names),
                )
                for key, names in sorted(rows.items(), key=lambda item: order[item[0][0]])
                for setting, value, text in [key]
            ],
            columns=["Setting", *CARD_COLUMNS],
        )
        cards[card] = frame.set_index("Setting")
    return cards


def card_blocks(study: Study, sources: Sources | None = None) -> list[Block]:
    """The recipe cards of ``study`` as report blocks: a heading, how to read them, and one table per card."""
    cards = recipe_cards(study, sources)
    blocks: list[Block] = [Heading("Recipe cards")]
    if not cards:
        return [
            *blocks,
            Paragraph(
                "No experiment of this profile follows a paper recipe: they are miniatures. "
                "`circle-repro recipe-card` prints the paper profile's cards (docs/recipe_cards.md)."
            ),
        ]
    blocks.append(
        Paragraph(
            "Every setting of every experiment with its source: the paper's section (Sun et al., CVPR 2020), the "
            "reference repository and file it follows where the paper states none, or why it deviates (Deviation: "
            "yes). The data: src/circle_repro/report/recipe_sources.yaml. Experiments evaluating another "
            "experiment's weights (trained_by) list their own settings; their training is on the trainer's card."
        )
    )
    for card, experiments in card_experiments(study, sources).items():
        blocks.append(Table(cards[card], f"{card} recipe card: {', '.join(experiments)}"))
    return blocks


__all__ = [
    "CARD_COLUMNS",
    "NOT_SETTINGS",
    "Source",
    "card_blocks",
    "card_experiments",
    "experiment_settings",
    "flatten",
    "load_recipe_sources",
    "missing_sources",
    "packaged_sources",
    "recipe_cards",
    "source_of",
]

"""Provenance: per loss row, every seed's run and where its result, code, config and data came from."""

from __future__ import annotations

import pandas as pd

from circle_repro.config import Study
from circle_repro.report.cells import provenance_anchor
from circle_repro.report.render import Block, Heading, Paragraph, Table
from circle_repro.report.results import Results


def _provenance(results: Results, experiment: str, loss: str) -> list[Block]:
    """A loss row's details section (the target of its cells' links): every seed's run and its origin."""
    runs = results.of(experiment, loss)
    frame = pd.DataFrame(
        {
            "source": [r.source or "none" for r in runs],
            "MLflow run": [r.mlflow_run_id or "-" for r in runs],
            "weights": [r.weights_uri or "-" for r in runs],
            "git commit": [r.provenance.get("git_commit") or "-" for r in runs],
            "config hash": [r.provenance.get("config_hash") or "-" for r in runs],
            "data hash": [r.provenance.get("data_hash") or "-" for r in runs],
            "device": [r.provenance.get("device") or "-" for r in runs],
            "note": [r.note or "-" for r in runs],
        },
        index=pd.Index([r.run.run_id for r in runs], name="Run"),
    )
    return [
        Heading(f"{experiment} / {loss}", 3, anchor=provenance_anchor(experiment, loss)),
        Table(frame, caption=f"Runs of {experiment} / {loss}, one per seed"),
    ]


def provenance_section(study: Study, results: Results) -> list[Block]:
    """The provenance heading, then every loss row's details section, in the study's order."""
    blocks: list[Block] = [
        Heading("Provenance"),
        Paragraph(
            "Per loss row, every seed's run: where its result was read, its MLflow run, the code commit, the "
            "hash of its training config, the content hash of its prepared data and the device it trained on."
        ),
    ]
    for name, experiment in study.experiments.items():
        for loss in experiment.losses:
            blocks += _provenance(results, name, loss)
    return blocks

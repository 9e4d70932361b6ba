"""One DAG step at a time, through the ``circle-repro`` CLI the Snakefile's jobs call, timed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from circle_repro.data.manifest import read_manifest
from circle_repro.layout import TRAIN_RECORD_FILENAME


class RehearsalError(RuntimeError):
    """A step of the rehearsal failed: the message names the step and carries the CLI's error."""


@dataclass(frozen=True)
class Step:
    """One measured job: its rule (``prepare_data``, ``train``, ``evaluate``), its name (data set or run id),
    its experiment (none for preparation), wall seconds, the images it processed and, for training, the
    images/s of the training loop alone (its ``train.json``)."""

    rule: str
    name: str
    experiment: str | None
    seconds: float
    images: int
    loop_images_per_s: float | None = None

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"images_per_s": self.images_per_s}


def run_cli(argv: list[str], step: str) -> float:
    """Run ``circle-repro <argv>`` in a process of its own, as a Snakemake job does; its wall seconds
    (interpreter start and imports included). RehearsalError when it fails."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "circle_repro.cli", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        error = done.stderr.strip()[-4000:]
        raise RehearsalError(f"{step}: `circle-repro {' '.join(argv)}` failed ({done.returncode}): {error}")
    return seconds


def prepare(dataset: str, raw_dir: Path, out_dir: Path, options: list[str], written: int) -> Step:
    """``circle-repro data prepare``; ``written``: the raw images it reads."""
    argv = ["data", "prepare", dataset, *options, "--raw", str(raw_dir), "--out", str(out_dir)]
    return Step("prepare_data", dataset, None, run_cli(argv, f"prepare {dataset}"), written)


def train(run_id: str, experiment: str, data_dir: Path, run_dir: Path, options: list[str]) -> Step:
    """``circle-repro train`` of one run; its images are iterations x global batch (``train.json``)."""
    argv = ["train", *options, "--run", run_id, "--data", str(data_dir), "--out", str(run_dir)]
    seconds = run_cli(argv, f"train {run_id}")
    record = json.loads((run_dir / TRAIN_RECORD_FILENAME).read_text(encoding="utf-8"))
    images = int(record["iterations"]) * int(record["global_batch_size"])
    return Step("train", run_id, experiment, seconds, images, float(record["throughput_images_per_s"]))


def evaluate(
    run_id: str, experiment: str, data_dir: Path, weights_dir: Path, out_dir: Path, options: list[str], *,
    embeddings_per_image: int, cpus: int,
) -> Step:  # fmt: skip
    """``circle-repro evaluate`` of one run; its images are the test images x ``embeddings_per_image``."""
    argv = ["evaluate", *options, "--run", run_id, "--data", str(data_dir), "--run-dir", str(weights_dir),
            "--out", str(out_dir), "--cpus", str(cpus)]  # fmt: skip
    seconds = run_cli(argv, f"evaluate {run_id}")
    images = len(read_manifest(data_dir, split="test")) * embeddings_per_image
    return Step("evaluate", run_id, experiment, seconds, images)


__all__ = ["RehearsalError", "Step", "evaluate", "prepare", "run_cli", "train"]

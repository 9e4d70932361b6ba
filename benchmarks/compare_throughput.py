"""Our measured training throughput beside the published figures of insightface and fast-reid.

    python benchmarks/compare_throughput.py benchmarks/results/train_throughput_cuda_h100_bf16.json \\
        --out benchmarks/results/train_throughput_vs_published.txt

Reads a results JSON written by ``benchmarks/train_throughput.py --out`` and the published
figures in ``benchmarks/published_throughput.yaml`` (data, with each figure's source and quoted
line), and prints, per model: our images/s and GPU, each published images/s per GPU with its
GPU, precision, batch per GPU and GPU count, and the ratio ours / published per GPU. A model
without a published entry prints "no published figure".

The ratio is not a like-for-like speed claim: the GPUs differ (our H100 against the publishers'
V100/A10/A30/A100), and so does the work timed (ours: one GPU, synthetic in-memory batch,
pair-wise loss, no head; theirs: 8-GPU DDP, data loading, a margin-softmax head over 618 K to
2 M identities). The output says so.
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from circle_repro.schema import schema_problems

PUBLISHED = Path(__file__).resolve().with_name("published_throughput.yaml")
SCHEMA = PUBLISHED.with_name("published_throughput.schema.yaml")
ISSUE_MODELS = ("resnet50", "iresnet100", "bn_inception")  # issue 6, "Speed"
INDENT = " " * 11
CAVEAT = (
    "CAVEAT: not a like-for-like speed comparison. The GPUs differ (ours vs the publishers' older\n"
    "V100/A10/A30/A100 cards), and so does the work: ours times one GPU on a synthetic in-memory\n"
    "batch (forward + pair-wise Circle loss + backward + SGD, no classification head, no data\n"
    "loading, no DDP); the published figures are end-to-end 8-GPU DDP training with data loading\n"
    "and a margin-softmax head over 618 K-2 M identities. The ratio ours / published-per-GPU is\n"
    "context for the order of magnitude only."
)


@dataclass(frozen=True)
class Row:
    """One line of the comparison: our figure against one published entry (or none)."""

    model: str
    input: tuple[int, int]
    ours: float
    ours_gpu: str
    published: dict[str, Any] | None = None

    @property
    def ratio(self) -> float | None:
        """Ours / published images/s per GPU; None without a published figure."""
        if self.published is None:
            return None
        return throughput_ratio(self.ours, self.published["images_per_s_per_gpu"])


def throughput_ratio(ours: float, published_per_gpu: float) -> float:
    """Our images/s over the published images/s per GPU (above 1: ours is higher)."""
    if published_per_gpu <= 0:
        raise ValueError(f"published images/s per GPU must be positive, got {published_per_gpu}")
    return ours / published_per_gpu


def load_published(path: Path = PUBLISHED) -> dict[str, Any]:
    """The published-throughput YAML, checked; raises ValueError listing every problem."""
    data = yaml.safe_load(Path(path).read_text())
    problems = validate_published(data)
    if problems:
        raise ValueError(f"{path}: invalid published throughput:\n  - " + "\n  - ".join(problems))
    return data


def validate_published(data: Any) -> list[str]:
    """Problems with the published-throughput data (empty when it is sound): its JSON schema
    (``published_throughput.schema.yaml``), then what a schema cannot say: unique ids, and the per-GPU
    figure derived from the published one."""
    problems = schema_problems(data, yaml.safe_load(SCHEMA.read_text()))
    if problems or not isinstance(data, dict):
        return problems
    seen: set[str] = set()
    for index, entry in enumerate(data["entries"]):
        where = f"entries[{index}] ({entry['id']})"
        if entry["id"] in seen:
            problems.append(f"{where}: duplicate id")
        seen.add(entry["id"])
        divisor = entry["num_gpus"] if entry["published_scope"] == "total" else 1
        expected = entry["images_per_s_published"] / divisor
        if not math.isclose(entry["images_per_s_per_gpu"], expected, rel_tol=1e-9):
            problems.append(
                f"{where}: images_per_s_per_gpu {entry['images_per_s_per_gpu']} != "
                f"images_per_s_published / {divisor} = {expected}"
            )
    return problems


def compare(results: dict[str, Any], published: dict[str, Any], models: list[str] | None = None) -> list[Row]:
    """One Row per (model, published entry), or one Row with no entry for a model without any.

    ``results`` is a train_throughput.py JSON; ``models`` defaults to the issue's three, in that
    order, keeping only those present in ``results``.
    """
    ours = {result["model"]: result for result in results["results"]}
    wanted = [name for name in (models or ISSUE_MODELS) if name in ours]
    rows: list[Row] = []
    for name in wanted:
        result = ours[name]
        _, height, width = result["input"]
        base = dict(model=name, input=(height, width), ours=_ours_rate(result), ours_gpu=results["device"])
        entries = [entry for entry in published["entries"] if entry["model"] == name]
        rows += [Row(**base, published=entry) for entry in entries] or [Row(**base)]
    return rows


def _ours_rate(result: dict[str, Any]) -> float:
    """The plain-loop figure (what train_throughput.py reports for every device)."""
    return float(result["images_per_s"]["plain"])


def format_comparison(
    results: dict[str, Any], rows: list[Row], published: dict[str, Any], results_path: str, published_path: str
) -> str:
    """The printed report: header, caveat, one block per model."""
    lines = [
        f"ours: {results_path}",
        f"  {results['device']} (1 GPU) | torch {results['torch']} | amp {results['amp']} | "
        f"channels_last {results['channels_last']} | batch {results['batch']} | "
        f"median of {results['repeats']} x {results['iters']} steps",
        f"published: {published_path}",
        "",
        CAVEAT,
        "",
    ]
    for name in dict.fromkeys(row.model for row in rows):
        model_rows = [row for row in rows if row.model == name]
        first = model_rows[0]
        lines.append(f"{name} {first.input[0]}x{first.input[1]}: ours {first.ours:,.1f} img/s ({first.ours_gpu})")
        for row in model_rows:
            entry = row.published
            if entry is None:
                lines.append("  no published figure")
                searched = published.get("no_published_figure", {}).get(name, {}).get("searched")
                if searched:
                    lines += _wrap(f"searched: {' '.join(searched.split())}")
                continue
            source = entry["source"]
            commit = source["commit"][:12] if source["commit"] else "commit not resolved"
            scope = (
                f"{entry['images_per_s_published']:,} total / {entry['num_gpus']} GPUs"
                if entry["published_scope"] == "total"
                else "as published, per GPU"
            )
            size = f"{entry['input'][0]}x{entry['input'][1]}"
            mismatch = "" if tuple(entry["input"]) == row.input else f" [input {size} differs from ours]"
            lines.append(
                f"  {entry['images_per_s_per_gpu']:8,.1f} img/s per GPU ({scope}) | "
                f"{entry['gpu']} x{entry['num_gpus']} | {entry['precision']} | "
                f"batch {entry['batch_per_gpu']}/GPU | ours/published {row.ratio:.2f}{mismatch}"
            )
            lines += _wrap(f"{entry['published_model']}: {entry['setting'].strip()}")
            lines.append(f"{INDENT}{source['repository']} {source['path']} @ {commit}")
        lines.append("")
    missing = [name for name in dict.fromkeys(row.model for row in rows if row.published is None)]
    lines.append(f"no published figure: {', '.join(missing) if missing else 'none'}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a JSON written by train_throughput.py --out")
    parser.add_argument("--published", type=Path, default=PUBLISHED, help="published-throughput YAML")
    parser.add_argument(
        "--models", default=",".join(ISSUE_MODELS), help="comma-separated models (default: the issue's three)"
    )
    parser.add_argument("--out", type=Path, help="also write the comparison here")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    published = load_published(args.published)
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in models if name not in {r["model"] for r in results["results"]}]
    if unknown:
        parser.error(f"--models: {unknown} not in {args.results}")
    rows = compare(results, published, models)
    text = format_comparison(results, rows, published, _display(args.results), _display(args.published))
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, width=100, initial_indent=INDENT, subsequent_indent=INDENT, break_on_hyphens=False)


def _display(path: Path) -> str:
    """The path relative to the repository root when it lies inside it."""
    root = Path(__file__).resolve().parents[1]
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    main()

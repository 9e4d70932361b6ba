"""The one entry point: ``circle-repro <verb> ...``. Each verb parses arguments and calls the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from circle_repro.config import (
    ConfigError,
    eval_config,
    expand_runs,
    find_run,
    load_params,
    tracking_experiment,
    train_config,
)
from circle_repro.data.manifest import ManifestError
from circle_repro.engine.tracking import disable_telemetry, tracking_uri
from circle_repro.plan import DEFAULT_THROUGHPUT


def _params_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    parser.add_argument("--profile", default=None, help="profile of scale: demo, mini, paper (default: the params file's `profile`)")


def _cmd_validate(args: argparse.Namespace) -> None:
    params = load_params(args.params, args.profile)
    print(f"{args.params}: valid; profile {params['profile']}: {len(expand_runs(params))} runs")


def _cmd_runs(args: argparse.Namespace) -> None:
    for run in expand_runs(load_params(args.params, args.profile)):
        print(run.run_id)


def _cmd_plan(args: argparse.Namespace) -> None:
    from circle_repro.plan import format_plan, load_throughput, make_plan, write_plan

    params = load_params(args.params, args.profile)
    plan = make_plan(params, load_throughput(args.throughput), data_root=args.data_root)
    print(format_plan(plan))
    if args.out is not None:
        print(f"plan written: {write_plan(plan, args.out)}")


def _raw_dir(args: argparse.Namespace) -> Path:
    return args.raw if args.raw is not None else Path("data/raw") / args.dataset


def _cmd_data_fetch(args: argparse.Namespace) -> None:
    from circle_repro.data.datasets import fetch_dataset

    params = load_params(args.params, args.profile)
    mirror = params["datasets"].get(args.dataset, {}).get("mirror")
    record = fetch_dataset(args.dataset, _raw_dir(args), mirror=mirror)
    print(f"fetched {args.dataset}: {record}")


def _cmd_data_prepare(args: argparse.Namespace) -> None:
    from circle_repro.data.datasets import prepare_dataset

    params = load_params(args.params, args.profile)
    options = params["datasets"].get(args.dataset, {})
    manifest = prepare_dataset(args.dataset, args.out, _raw_dir(args), **options)
    print(f"prepared {args.dataset}: {manifest}")


def _cmd_data_status(args: argparse.Namespace) -> None:
    from circle_repro.data.status import data_status, format_status_table
    from circle_repro.data.sources import load_sources

    print(format_status_table(data_status(args.data_root, load_sources(args.sources))))


def _cmd_train(args: argparse.Namespace) -> None:
    from circle_repro.engine.train import train_run

    params = load_params(args.params, args.profile)
    run = find_run(params, args.run)
    uri = tracking_uri(params["tracking"]["uri"], args.params.resolve().parent)
    weights = train_run(
        train_config(params, run), data_root=args.data, out_dir=args.out, tracking_uri=uri, launcher=args.launcher,
        validation_root=args.prepared_root, experiment=tracking_experiment(params),
    )  # fmt: skip
    print(f"trained {run.run_id}: {weights}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from circle_repro.engine.evaluate import evaluate_run

    params = load_params(args.params, args.profile)
    run = find_run(params, args.run)
    out_dir = args.out or args.run_dir
    result = evaluate_run(args.run_dir, data_root=args.data, eval_config=eval_config(params, run), out_dir=out_dir)
    summary = ", ".join(f"{name} {value:.4f}" for name, value in result["metrics"].items())
    print(f"evaluated {run.run_id}: {summary}")


def _cmd_report(args: argparse.Namespace) -> None:
    from circle_repro.report.build import build_report
    from circle_repro.workflow import metrics_targets

    params = load_params(args.params, args.profile)
    metrics_files = args.metrics or metrics_targets(params)
    uri = tracking_uri(params["tracking"]["uri"], args.params.resolve().parent)
    outputs = build_report(
        params, metrics_files=metrics_files, out_dir=args.out, tracking_uri=uri, data_root=args.data_root,
        throughput_file=args.throughput, benchmark_root=args.benchmarks,
    )  # fmt: skip
    print("report written: " + ", ".join(str(path) for path in outputs))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``circle-repro``."""
    parser = argparse.ArgumentParser(prog="circle-repro", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    validate = verbs.add_parser("validate", help="check params.yaml against its schema")
    _params_arg(validate)
    validate.set_defaults(func=_cmd_validate)

    runs = verbs.add_parser("runs", help="list the run ids the params define")
    _params_arg(runs)
    runs.set_defaults(func=_cmd_runs)

    plan = verbs.add_parser(
        "plan", help="per paper table: runs, GPU-hours from measured throughput, disk for data and checkpoints, missing data"
    )
    plan.add_argument(
        "--throughput", type=Path, default=DEFAULT_THROUGHPUT,
        help="a benchmarks/train_throughput.py --out file: images/s per backbone on one GPU",
    )  # fmt: skip
    plan.add_argument("--data-root", type=Path, default=Path("data"), help="holds raw/ and prepared/ (default: data)")
    plan.add_argument("--out", type=Path, default=None, help="also write the plan as JSON here")
    _params_arg(plan)
    plan.set_defaults(func=_cmd_plan)

    data = verbs.add_parser("data", help="data set steps").add_subparsers(dest="data_verb", required=True)
    fetch = data.add_parser(
        "fetch", help="download (or copy from the params' mirror) and verify a data set's raw files; nothing else"
    )
    fetch.add_argument("dataset")
    fetch.add_argument("--raw", type=Path, default=None, help="raw files folder (default: data/raw/<dataset>)")
    _params_arg(fetch)
    fetch.set_defaults(func=_cmd_data_fetch)
    prepare = data.add_parser("prepare", help="turn a data set's raw layout into a manifest")
    prepare.add_argument("dataset")
    prepare.add_argument("--out", type=Path, required=True, help="prepared data folder")
    prepare.add_argument("--raw", type=Path, default=None, help="raw files folder (default: data/raw/<dataset>)")
    _params_arg(prepare)
    prepare.set_defaults(func=_cmd_data_prepare)
    status = data.add_parser("status", help="show which data sets are missing, downloaded, verified or prepared")
    status.add_argument("--data-root", type=Path, default=Path("data"), help="holds raw/ and prepared/ (default: data)")
    status.add_argument("--sources", type=Path, default=None, help="sources file (default: the package's sources.yaml)")
    status.set_defaults(func=_cmd_data_status)

    train = verbs.add_parser("train", help="train one run")
    train.add_argument("--run", required=True, help="run id: experiment/loss/seedN")
    train.add_argument("--data", type=Path, required=True, help="prepared data folder")
    train.add_argument("--out", type=Path, required=True, help="run folder")
    train.add_argument(
        "--prepared-root", type=Path, help="holds the prepared train.validation sets (default: the folder holding --data)"
    )
    train.add_argument(
        "--launcher",
        choices=("none", "pytorch", "slurm"),
        default="none",
        help="none: one process; pytorch: one rank of a torchrun launch; slurm: one task of an srun launch "
        "(data-parallel; the params' P x K batch is per rank; rank 0 writes the outputs)",
    )
    _params_arg(train)
    train.set_defaults(func=_cmd_train)

    evaluate = verbs.add_parser("evaluate", help="evaluate one trained run")
    evaluate.add_argument("--run", required=True, help="run id: experiment/loss/seedN")
    evaluate.add_argument("--data", type=Path, required=True, help="prepared data folder")
    evaluate.add_argument(
        "--run-dir", type=Path, required=True, help="the folder of the run that trained the weights (model.pth)"
    )
    evaluate.add_argument("--out", type=Path, help="where metrics.json and the arrays go (default: --run-dir)")
    _params_arg(evaluate)
    evaluate.set_defaults(func=_cmd_evaluate)

    report = verbs.add_parser(
        "report", help="build reports/ (md, html, results.csv) from the MLflow store, metrics files as the fallback"
    )
    report.add_argument(
        "metrics", nargs="*", type=Path, help="metrics.json files (default: every run the params define)"
    )
    report.add_argument("--out", type=Path, default=Path("reports"))
    report.add_argument(
        "--data-root", type=Path, default=Path("data"), help="holds raw/ and prepared/: which data sets are on disk"
    )
    report.add_argument(
        "--throughput", type=Path, default=DEFAULT_THROUGHPUT,
        help="measured training throughput for the planned hours (a missing file: nothing estimated)",
    )  # fmt: skip
    report.add_argument(
        "--benchmarks", type=Path, default=Path("."),
        help="the workflow's working directory: its logs/benchmarks/ holds the jobs' Snakemake benchmark files",
    )  # fmt: skip
    _params_arg(report)
    report.set_defaults(func=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; bad input exits with status 2 and a one-paragraph message, not a traceback."""
    disable_telemetry()
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, ManifestError, FileNotFoundError, ValueError) as exc:
        print(f"circle-repro {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

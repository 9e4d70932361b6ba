"""The one entry point: ``circle-repro <verb> ...``. Each verb parses arguments and calls the library."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from circle_repro import __version__
from circle_repro.config import (
    ConfigError,
    eval_config,
    expand_runs,
    find_run,
    load_params,
    tracking_experiment,
    train_config,
    training_run,
)
from circle_repro.data.archive import ArchiveError
from circle_repro.data.download import DownloadError
from circle_repro.data.manifest import ManifestError
from circle_repro.data.stamp import VERIFY_LEVELS
from circle_repro.engine.errors import CheckpointError, Terminated, TrackingStoreUnreachable
from circle_repro.engine.tracking import disable_telemetry, quiet_artifact_transfers, tracking_uri
from circle_repro.io import atomic_open
from circle_repro.layout import DEFAULT_RATES, DEFAULT_THROUGHPUT, EVALUATION_DIRNAME, STEPS, evaluation_dir


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _params_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    parser.add_argument(
        "--profile", default=None, help="profile of scale: demo, mini, paper (default: the params file's profile key)"
    )


def _cmd_validate(args: argparse.Namespace) -> None:
    params = load_params(args.params, args.profile)
    if args.stamp is not None:
        with atomic_open(args.stamp) as fh:
            fh.write(f"{args.params}: valid\n")
    print(f"{args.params}: valid; profile {params['profile']}: {len(expand_runs(params))} runs")


def _cmd_runs(args: argparse.Namespace) -> None:
    for run in expand_runs(load_params(args.params, args.profile)):
        print(run.run_id)


def _cmd_plan(args: argparse.Namespace) -> None:
    from circle_repro.plan import format_plan, load_rates, load_throughput, make_plan, write_plan

    params = load_params(args.params, args.profile)
    plan = make_plan(params, load_throughput(args.throughput), data_root=args.data_root, rates=load_rates(args.rates))
    print(format_plan(plan))
    if args.out:
        print(f"plan written: {write_plan(plan, args.out)}")
    if plan.exceeding:
        jobs = "; ".join(f"{job} ({why})" for job, why in plan.exceeding.items())
        raise ValueError(
            f"profile {plan.profile}: job(s) exceed their declared resources: {jobs}; raise runtime_min "
            "(or mem_mb_per_gpu) in the experiment's resources in the params file"
        )


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
    try:
        manifest = prepare_dataset(args.dataset, args.out, _raw_dir(args), **options)
    except DownloadError as exc:
        raise FileNotFoundError(
            f"{exc}. The raw files of {args.dataset} are not in {_raw_dir(args)}: run `circle-repro data fetch "
            f"{args.dataset}` where there is internet, or place them there (`circle-repro data info {args.dataset}`)"
        ) from None
    print(f"prepared {args.dataset}: {manifest}")


def _cmd_data_status(args: argparse.Namespace) -> None:
    from circle_repro.data.sources import load_sources
    from circle_repro.data.status import data_status, format_status_table

    print(format_status_table(data_status(args.data_root, load_sources(args.sources))))


def _cmd_data_info(args: argparse.Namespace) -> None:
    from circle_repro.data.info import find_source, format_info, format_placement_table
    from circle_repro.data.sources import load_sources

    sources = load_sources(args.sources)
    print(format_info(find_source(sources, args.dataset)) if args.dataset else format_placement_table(sources))


def _cmd_train(args: argparse.Namespace) -> None:
    from circle_repro.config import train_resource_request
    from circle_repro.engine.loader import train_loader_settings
    from circle_repro.engine.train import train_run

    params = load_params(args.params, args.profile)
    run = find_run(params, args.run)
    uri = tracking_uri(params["tracking"]["uri"], args.params.resolve().parent)
    loader = train_loader_settings(train_resource_request(params, training_run(params, run).experiment))
    weights = train_run(
        train_config(params, run), data_root=args.data, out_dir=args.out, tracking_uri=uri, launcher=args.launcher,
        validation_root=args.prepared_root, loader=loader, verify_data=args.verify_data,
        experiment=tracking_experiment(params),
    )  # fmt: skip
    print(f"trained {run.run_id}: {weights}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    import torch

    from circle_repro.engine.evaluate import evaluate_run
    from circle_repro.engine.loader import job_loader_settings

    params = load_params(args.params, args.profile)
    run = find_run(params, args.run)
    out_dir = args.out or evaluation_dir(args.run_dir)
    batch = {"batch_size": args.batch_size} if args.batch_size is not None else {}
    loader = job_loader_settings(args.cpus, accelerator=torch.cuda.is_available())
    result = evaluate_run(
        args.run_dir,
        data_root=args.data,
        eval_config=eval_config(params, run),
        out_dir=out_dir,
        loader=loader,
        verify_data=args.verify_data,
        **batch,
    )
    summary = ", ".join(f"{name} {value:.4f}" for name, value in result.metrics.items())
    print(f"evaluated {run.run_id}: {summary}")


def _cmd_report(args: argparse.Namespace) -> None:
    from circle_repro.report.build import build_report
    from circle_repro.workflow import metrics_targets

    params = load_params(args.params, args.profile)
    metrics_files = args.metrics or metrics_targets(params)
    uri = tracking_uri(params["tracking"]["uri"], args.params.resolve().parent)
    outputs = build_report(
        params, metrics_files=metrics_files, out_dir=args.out, tracking_uri=uri, data_root=args.data_root,
        throughput_file=args.throughput, benchmark_root=args.benchmarks, rates_file=args.rates,
    )  # fmt: skip
    print("report written: " + ", ".join(str(path) for path in outputs))


def _cmd_summary(args: argparse.Namespace) -> None:
    from circle_repro.report.summary import headline_summary

    print(headline_summary(args.reports))


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], got {text}")
    return value


def _tables(text: str) -> list[str]:
    from circle_repro.data.sources import TABLE_IDS

    tables = [f"table{item.strip().removeprefix('table')}" for item in text.split(",") if item.strip()]
    unknown = [table for table in tables if table not in TABLE_IDS]
    if not tables or unknown:
        raise argparse.ArgumentTypeError(f"expected paper table numbers 1-5 separated by commas, got {text!r}")
    return tables


def _cmd_rehearse(args: argparse.Namespace) -> None:
    from circle_repro.plan import load_rates, load_throughput
    from circle_repro.rehearsal import RehearsalError, format_rehearsal, rehearse

    throughput = load_throughput(args.throughput) if args.throughput.is_file() else None
    rates = load_rates(args.rates) if args.rates.is_file() else None
    out = args.out if args.out is not None else Path("rehearsal") / f"scale{args.scale:g}"
    try:
        result = rehearse(
            args.params, out, args.scale, tables=args.tables, iterations=args.iterations, max_p=args.max_p,
            every_run=args.every_run, until=args.until, throughput=throughput, rates=rates,
        )  # fmt: skip
    except RehearsalError as exc:
        raise ValueError(str(exc)) from None
    print(format_rehearsal(result))
    print(f"recorded: {result.out_dir / 'rehearsal.json'}, {result.out_dir / 'rehearsal.csv'}")


def _cmd_recipe_card(args: argparse.Namespace) -> None:
    from circle_repro.report.recipes import card_blocks, missing_sources
    from circle_repro.report.render import Heading, render_markdown

    params = load_params(args.params, args.profile)
    blocks = [Heading(f"Recipe cards: {params['profile']} profile", 1), *card_blocks(params)[1:]]
    markdown = render_markdown(blocks, Path("."))
    if args.out is None:
        print(markdown, end="")
    else:
        with atomic_open(args.out) as fh:
            fh.write(markdown)
        print(f"recipe cards written: {args.out}")
    missing = missing_sources(params) if params["profile"] == "paper" else []
    if missing:
        raise ValueError(
            f"{len(missing)} paper setting(s) have no source: {', '.join(missing)}; add each to "
            "src/circle_repro/report/recipe_sources.yaml (paper section, reference file or deviation)"
        )


def _verify_data_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verify-data", choices=VERIFY_LEVELS, default="sizes",
        help="check the prepared data against what was recorded when it was prepared, before starting: sizes "
        "(file count and sizes, default), full (also every file's sha256), none",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``circle-repro``."""
    parser = argparse.ArgumentParser(
        prog="circle-repro",
        description="The Circle Loss reproduction pipeline, one verb per step: data, train, evaluate, report. "
        "Run it from the repository root; make reproduce (snakemake --cores all) runs every step of params.yaml.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)

    validate = verbs.add_parser("validate", help="check params.yaml against its schema")
    validate.add_argument(
        "--stamp", type=Path, default=None,
        help="when valid, also write this file (its text depends on the params path only): a DVC stage's output "
        "that every other stage depends on, so that no stage's command line is built from unchecked params",
    )  # fmt: skip
    _params_arg(validate)
    validate.set_defaults(func=_cmd_validate)

    runs = verbs.add_parser("runs", help="list the run ids the params define")
    _params_arg(runs)
    runs.set_defaults(func=_cmd_runs)

    plan = verbs.add_parser(
        "plan",
        help="per paper table: preparation, training and evaluation hours, each job against its declared resources, disk, missing data",
    )
    plan.add_argument(
        "--throughput", type=Path, default=DEFAULT_THROUGHPUT,
        help="a benchmarks/train_throughput.py --out file: images/s per backbone on one GPU",
    )  # fmt: skip
    plan.add_argument(
        "--rates", type=Path, default=DEFAULT_RATES,
        help="measured CPU rates: decode and preparation images/s per core, metric speed (default: %(default)s)",
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
    info = data.add_parser(
        "info", help="where a data set's raw files go and how to obtain them (no NAME: a table of every data set)"
    )
    info.add_argument("dataset", nargs="?", default=None, metavar="NAME", help="data set name, e.g. cub200")
    info.add_argument("--sources", type=Path, default=None, help="sources file (default: the package's sources.yaml)")
    info.set_defaults(func=_cmd_data_info)

    train = verbs.add_parser("train", help="train one run")
    train.add_argument("--run", required=True, help="run id: experiment/loss/seedN")
    train.add_argument("--data", type=Path, required=True, help="prepared data folder")
    train.add_argument("--out", type=Path, required=True, help="run folder")
    train.add_argument(
        "--prepared-root",
        type=Path,
        help="holds the prepared train.validation sets (default: the folder holding --data)",
    )
    train.add_argument(
        "--launcher",
        choices=("none", "pytorch", "slurm"),
        default="none",
        help="none: one process; pytorch: one rank of a torchrun launch; slurm: one task of an srun launch "
        "(data-parallel; the params' P x K batch is per rank; rank 0 writes the outputs)",
    )
    _verify_data_arg(train)
    _params_arg(train)
    train.set_defaults(func=_cmd_train)

    evaluate = verbs.add_parser("evaluate", help="evaluate one trained run")
    evaluate.add_argument("--run", required=True, help="run id: experiment/loss/seedN")
    evaluate.add_argument("--data", type=Path, required=True, help="prepared data folder")
    evaluate.add_argument(
        "--run-dir", type=Path, required=True, help="the folder of the run that trained the weights (model.pth)"
    )
    evaluate.add_argument(
        "--out",
        type=Path,
        help=f"the evaluation folder: metrics.json and the arrays, replaced as one (default: --run-dir/{EVALUATION_DIRNAME})",
    )
    evaluate.add_argument("--batch-size", type=_positive_int, help="images per embedding batch (default: 512)")
    evaluate.add_argument(
        "--cpus",
        type=_positive_int,
        default=1,
        help="CPUs of the job: one embedding loader worker per CPU beyond the first",
    )
    _verify_data_arg(evaluate)
    _params_arg(evaluate)
    evaluate.set_defaults(func=_cmd_evaluate)

    rehearse = verbs.add_parser(
        "rehearse",
        help="the paper DAG on synthetic data in the real raw formats at a fraction of the real sizes: each job's "
        "throughput, extrapolated to full scale against its declared resources",
    )
    rehearse.add_argument("--scale", type=_fraction, required=True, help="fraction F of each data set's real counts")
    rehearse.add_argument("--out", type=Path, default=None, help="a new folder (default: rehearsal/scale<F>)")
    rehearse.add_argument(
        "--tables", type=_tables, default=None, help="only these paper tables, e.g. 1,4 (default: every table)"
    )
    rehearse.add_argument("--iterations", type=_positive_int, default=2, help="iterations per training (default: 2)")
    rehearse.add_argument(
        "--max-p", type=_positive_int, default=None, help="at most this many classes per batch (default: the paper's P)"
    )
    rehearse.add_argument(
        "--every-run", action="store_true",
        help="every loss and the first seed of each experiment (default: one run per experiment)",
    )  # fmt: skip
    rehearse.add_argument(
        "--until", choices=STEPS, default=STEPS[-1],
        help="run the DAG up to this step (default: %(default)s); prepare_data sizes the CPU preparation jobs "
        "at a larger scale in minutes",
    )  # fmt: skip
    rehearse.add_argument("--throughput", type=Path, default=DEFAULT_THROUGHPUT, help="as for plan")
    rehearse.add_argument("--rates", type=Path, default=DEFAULT_RATES, help="as for plan")
    rehearse.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="params file whose paper profile is rehearsed"
    )
    rehearse.set_defaults(func=_cmd_rehearse)

    recipe_card = verbs.add_parser(
        "recipe-card", help="print each paper table's settings with their sources (paper, reference file, deviation)"
    )
    recipe_card.add_argument("--out", type=Path, default=None, help="write the Markdown here instead of printing it")
    recipe_card.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)"
    )
    recipe_card.add_argument("--profile", default="paper", help="profile whose experiments get cards (default: paper)")
    recipe_card.set_defaults(func=_cmd_recipe_card)

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
        "--rates", type=Path, default=DEFAULT_RATES,
        help="measured CPU rates for the planned hours' data loading (a missing file: compute only)",
    )  # fmt: skip
    report.add_argument(
        "--benchmarks", type=Path, default=Path("."),
        help="the workflow's working directory: its logs/benchmarks/ holds the jobs' Snakemake benchmark files",
    )  # fmt: skip
    _params_arg(report)
    report.set_defaults(func=_cmd_report)

    summary = verbs.add_parser(
        "summary", help="print the headline results of a built report and where it is (the end of make reproduce)"
    )
    summary.add_argument("--reports", type=Path, default=Path("reports"), help="the report's folder (default: reports)")
    summary.set_defaults(func=_cmd_summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; bad input exits with status 2 and a one-paragraph message, not a traceback."""
    disable_telemetry()
    quiet_artifact_transfers()
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (
        ConfigError,
        ManifestError,
        FileNotFoundError,
        ValueError,
        CheckpointError,
        TrackingStoreUnreachable,
        ArchiveError,
        DownloadError,
    ) as exc:
        print(f"circle-repro {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        reason = "terminated (SIGTERM); started again, the run resumes from its last checkpoint"
        print(f"circle-repro {args.verb}: {reason}", file=sys.stderr)
        return 128 + signal.SIGTERM
    return 0


if __name__ == "__main__":
    sys.exit(main())

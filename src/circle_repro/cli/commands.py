"""The verbs of ``circle-repro``: each parses nothing, reads its arguments and calls the library."""

from __future__ import annotations

import argparse
from pathlib import Path

from circle_repro.config import load_study
from circle_repro.data.download import DownloadError
from circle_repro.engine.tracking import tracking_uri
from circle_repro.io import atomic_open
from circle_repro.layout import DATA_ROOT, evaluation_dir, raw_dir


def validate(args: argparse.Namespace) -> None:
    study = load_study(args.params, args.profile)
    if args.stamp is not None:
        with atomic_open(args.stamp) as fh:
            fh.write(f"{args.params}: valid\n")
    print(f"{args.params}: valid; profile {study.profile}: {len(study.runs)} runs")


def runs(args: argparse.Namespace) -> None:
    for run in load_study(args.params, args.profile).runs:
        print(run.run_id)


def plan(args: argparse.Namespace) -> None:
    from circle_repro.plan import format_plan, load_rates, load_throughput, make_plan, write_plan

    study = load_study(args.params, args.profile)
    made = make_plan(study, load_throughput(args.throughput), data_root=args.data_root, rates=load_rates(args.rates))
    print(format_plan(made))
    if args.out:
        print(f"plan written: {write_plan(made, args.out)}")
    if made.exceeding:
        jobs = "; ".join(f"{job} ({why})" for job, why in made.exceeding.items())
        raise ValueError(
            f"profile {made.profile}: job(s) exceed their declared resources: {jobs}; raise runtime_min "
            "(or mem_mb_per_gpu) in the experiment's resources in the params file"
        )


def _raw_dir(args: argparse.Namespace) -> Path:
    return args.raw if args.raw is not None else raw_dir(DATA_ROOT, args.dataset)


def data_fetch(args: argparse.Namespace) -> None:
    from circle_repro.data.datasets import fetch_dataset

    mirror = load_study(args.params, args.profile).dataset_options(args.dataset).get("mirror")
    record = fetch_dataset(args.dataset, _raw_dir(args), mirror=mirror)
    print(f"fetched {args.dataset}: {record}")


def data_prepare(args: argparse.Namespace) -> None:
    from circle_repro.data.datasets import prepare_dataset

    options = load_study(args.params, args.profile).dataset_options(args.dataset)
    try:
        manifest = prepare_dataset(args.dataset, args.out, _raw_dir(args), **options)
    except DownloadError as exc:
        raise FileNotFoundError(
            f"{exc}. The raw files of {args.dataset} are not in {_raw_dir(args)}: run `circle-repro data fetch "
            f"{args.dataset}` where there is internet, or place them there (`circle-repro data info {args.dataset}`)"
        ) from None
    print(f"prepared {args.dataset}: {manifest}")


def data_status(args: argparse.Namespace) -> None:
    from circle_repro.data import status
    from circle_repro.data.sources import load_sources

    print(status.format_status_table(status.data_status(args.data_root, load_sources(args.sources))))


def data_info(args: argparse.Namespace) -> None:
    from circle_repro.data.info import find_source, format_info, format_placement_table
    from circle_repro.data.sources import load_sources

    sources = load_sources(args.sources)
    print(format_info(find_source(sources, args.dataset)) if args.dataset else format_placement_table(sources))


def train(args: argparse.Namespace) -> None:
    from circle_repro.engine.loader import train_loader_settings
    from circle_repro.engine.train import train_run

    study = load_study(args.params, args.profile)
    run = study.find_run(args.run)
    uri = tracking_uri(study.tracking["uri"], args.params.resolve().parent)
    loader = train_loader_settings(study.experiment(study.training_run(run).experiment).resources)
    weights = train_run(
        study.train_config(run), data_root=args.data, out_dir=args.out, tracking_uri=uri, launcher=args.launcher,
        validation_root=args.prepared_root, loader=loader, verify_data=args.verify_data,
        experiment=study.tracking_experiment,
    )  # fmt: skip
    print(f"trained {run.run_id}: {weights}")


def evaluate(args: argparse.Namespace) -> None:
    import torch

    from circle_repro.engine.evaluate import evaluate_run
    from circle_repro.engine.loader import job_loader_settings

    study = load_study(args.params, args.profile)
    run = study.find_run(args.run)
    out_dir = args.out or evaluation_dir(args.run_dir)
    batch = {"batch_size": args.batch_size} if args.batch_size is not None else {}
    loader = job_loader_settings(args.cpus, accelerator=torch.cuda.is_available())
    result = evaluate_run(
        args.run_dir,
        data_root=args.data,
        eval_config=study.eval_config(run),
        out_dir=out_dir,
        loader=loader,
        verify_data=args.verify_data,
        **batch,
    )
    scores = ", ".join(f"{name} {value:.4f}" for name, value in result.metrics.items())
    print(f"evaluated {run.run_id}: {scores}")


def report(args: argparse.Namespace) -> None:
    from circle_repro.report.build import build_report
    from circle_repro.workflow import metrics_targets

    study = load_study(args.params, args.profile)
    metrics_files = args.metrics or metrics_targets(study)
    uri = tracking_uri(study.tracking["uri"], args.params.resolve().parent)
    outputs = build_report(
        study, metrics_files=metrics_files, out_dir=args.out, tracking_uri=uri, data_root=args.data_root,
        throughput_file=args.throughput, benchmark_root=args.benchmarks, rates_file=args.rates,
    )  # fmt: skip
    print("report written: " + ", ".join(str(path) for path in outputs))


def summary(args: argparse.Namespace) -> None:
    from circle_repro.report.summary import headline_summary

    print(headline_summary(args.reports))


def rehearse(args: argparse.Namespace) -> None:
    from circle_repro import rehearsal
    from circle_repro.plan import load_rates, load_throughput

    throughput = load_throughput(args.throughput) if args.throughput.is_file() else None
    rates = load_rates(args.rates) if args.rates.is_file() else None
    out = args.out if args.out is not None else Path("rehearsal") / f"scale{args.scale:g}"
    try:
        result = rehearsal.rehearse(
            args.params, out, args.scale, tables=args.tables, iterations=args.iterations, max_p=args.max_p,
            every_run=args.every_run, until=args.until, throughput=throughput, rates=rates,
        )  # fmt: skip
    except rehearsal.RehearsalError as exc:
        raise ValueError(str(exc)) from None
    print(rehearsal.format_rehearsal(result))
    print(f"recorded: {result.out_dir / 'rehearsal.json'}, {result.out_dir / 'rehearsal.csv'}")


def recipe_card(args: argparse.Namespace) -> None:
    from circle_repro.report.recipes import card_blocks, missing_sources
    from circle_repro.report.render import Heading, render_markdown

    study = load_study(args.params, args.profile)
    blocks = [Heading(f"Recipe cards: {study.profile} profile", 1), *card_blocks(study)[1:]]
    markdown = render_markdown(blocks, Path("."))
    if args.out is None:
        print(markdown, end="")
    else:
        with atomic_open(args.out) as fh:
            fh.write(markdown)
        print(f"recipe cards written: {args.out}")
    missing = missing_sources(study) if study.profile == "paper" else []
    if missing:
        raise ValueError(
            f"{len(missing)} paper setting(s) have no source: {', '.join(missing)}; add each to "
            "src/circle_repro/report/recipe_sources.yaml (paper section, reference file or deviation)"
        )

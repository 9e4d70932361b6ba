rule report:
    input:
        # each run's metrics.json; its evaluation folder holds the similarities the figures read, where the
        # test set has identity pairs (not IJB-C's templates)
        metrics=wf.metrics_targets(RUNNABLE),
        histories=wf.history_targets(RUNNABLE),
    output:
        md="reports/report.md",
        html=report(
            "reports/report.html",
            caption="../report/report_html.rst",
            category="Report",
        ),
        csv=report(
            "reports/results.csv",
            caption="../report/results_csv.rst",
            category="Report",
        ),
        metrics="reports/metrics.json",
    log:
        "logs/report.log",
    resources:
        **wf.step_resources("report"),
    params:
        trigger=wf.report_trigger(STUDY),
    # --throughput, --rates: measured training throughput and CPU rates, for the planned hours (a missing
    # file: nothing estimated, or compute only). The actual hours are read from the jobs' benchmark files
    # under logs/benchmarks/ where they lie: as inputs, a missing one would rerun its finished (maybe
    # GPU-hours long) training job.
    shell:
        "circle-repro report {input.metrics:q} {PARAMS_OPTIONS} --out reports"
        " --throughput {THROUGHPUT_FILE} --rates {RATES_FILE} > {log} 2>&1"

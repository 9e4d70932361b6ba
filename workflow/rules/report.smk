rule report:
    input:
        metrics=wf.metrics_targets(RUNNABLE),
        similarities=wf.similarity_targets(RUNNABLE),
        histories=wf.history_targets(RUNNABLE),
    output:
        md="reports/report.md",
        html="reports/report.html",
        csv="reports/results.csv",
        metrics="reports/metrics.json",
    log:
        "logs/report.log",
    resources:
        **wf.step_resources("report"),
    params:
        params_file=PARAMS_FILE,
        profile=PARAMS["profile"],
        trigger=wf.report_trigger(PARAMS),
    shell:
        "circle-repro report {input.metrics} --params {params.params_file} --profile {params.profile} --out reports > {log} 2>&1"

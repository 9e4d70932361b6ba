rule report:
    input:
        metrics=wf.metrics_targets(PARAMS),
        similarities=wf.similarity_targets(PARAMS),
        histories=wf.history_targets(PARAMS),
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

rule prepare_data:
    output:
        "data/prepared/{dataset}/manifest.parquet",
    log:
        "logs/data/{dataset}.log",
    benchmark:
        plan.DATA_BENCHMARK
    resources:
        **wf.prepare_rule_resources(PARAMS, RATES),
    params:
        params_file=PARAMS_FILE,
        profile=PARAMS["profile"],
        trigger=lambda w: wf.dataset_trigger(PARAMS, w.dataset),
    shell:
        "circle-repro data prepare {wildcards.dataset} --params {params.params_file:q} --profile {params.profile:q}"
        " --out data/prepared/{wildcards.dataset} > {log} 2>&1"

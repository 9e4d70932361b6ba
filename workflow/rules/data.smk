rule prepare_data:
    output:
        "data/prepared/{dataset}/manifest.parquet",
    params:
        params_file=PARAMS_FILE,
        profile=PARAMS["profile"],
        trigger=lambda w: wf.dataset_trigger(PARAMS, w.dataset),
    log:
        "logs/data/{dataset}.log",
    shell:
        "circle-repro data prepare {wildcards.dataset} --params {params.params_file} --profile {params.profile}"
        " --out data/prepared/{wildcards.dataset} > {log} 2>&1"

rule prepare_data:
    output:
        "data/prepared/{dataset}/manifest.parquet",
    params:
        trigger=lambda w: wf.dataset_trigger(PARAMS, w.dataset),
    log:
        "logs/data/{dataset}.log",
    shell:
        "circle-repro data prepare {wildcards.dataset} --params {PARAMS_FILE}"
        " --out data/prepared/{wildcards.dataset} > {log} 2>&1"

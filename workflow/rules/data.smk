# Downloads run where the workflow runs, which reaches the internet (compute nodes often do not);
# preparation then reads the verified raw files as a job of its own, on the cluster if there is one.
localrules:
    fetch_data,


rule fetch_data:
    output:
        "data/raw/{dataset}/fetched.json",
    log:
        "logs/data/{dataset}.fetch.log",
    shell:
        "circle-repro data fetch {wildcards.dataset} {PARAMS_OPTIONS} --raw data/raw/{wildcards.dataset} > {log} 2>&1"


rule prepare_data:
    input:
        # the fetched raw files (none for a data set embedded in an installed package)
        lambda w: wf.fetch_targets(w.dataset),
    output:
        "data/prepared/{dataset}/manifest.parquet",
    log:
        "logs/data/{dataset}.log",
    benchmark:
        layout.DATA_BENCHMARK
    resources:
        **wf.prepare_rule_resources(STUDY, RATES),
    params:
        trigger=lambda w: wf.dataset_trigger(STUDY, w.dataset),
    shell:
        "circle-repro data prepare {wildcards.dataset} {PARAMS_OPTIONS}"
        " --raw data/raw/{wildcards.dataset} --out data/prepared/{wildcards.dataset} > {log} 2>&1"

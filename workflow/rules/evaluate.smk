rule evaluate:
    input:
        manifest=lambda w: wf.prepared_dir(PARAMS, w.experiment) / "manifest.parquet",
        weights="runs/{experiment}/{loss}/seed{seed}/model.pth",
        initial_weights="runs/{experiment}/{loss}/seed{seed}/model_init.pth",
        record="runs/{experiment}/{loss}/seed{seed}/train.json",
    output:
        metrics="runs/{experiment}/{loss}/seed{seed}/metrics.json",
        similarities="runs/{experiment}/{loss}/seed{seed}/similarities.npz",
        per_query="runs/{experiment}/{loss}/seed{seed}/per_query.npz",
    log:
        "logs/evaluate/{experiment}/{loss}/seed{seed}.log",
    threads: 1
    resources:
        **wf.step_resources("evaluate"),
    params:
        params_file=PARAMS_FILE,
        profile=PARAMS["profile"],
        trigger=lambda w: wf.eval_trigger(
            PARAMS, wf.run_from_wildcards(w.experiment, w.loss, w.seed)
        ),
    shell:
        "OMP_NUM_THREADS={threads} circle-repro evaluate --params {params.params_file} --profile {params.profile}"
        " --run {wildcards.experiment}/{wildcards.loss}/seed{wildcards.seed}"
        " --data $(dirname {input.manifest}) --run-dir $(dirname {input.weights}) > {log} 2>&1"

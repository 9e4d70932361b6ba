rule train:
    input:
        manifest=lambda w: wf.prepared_dir(PARAMS, w.experiment) / "manifest.parquet",
    output:
        weights="runs/{experiment}/{loss}/seed{seed}/model.pth",
        initial_weights="runs/{experiment}/{loss}/seed{seed}/model_init.pth",
        record="runs/{experiment}/{loss}/seed{seed}/train.json",
        history="runs/{experiment}/{loss}/seed{seed}/history.csv",
    params:
        params_file=PARAMS_FILE,
        profile=PARAMS["profile"],
        trigger=lambda w: wf.train_trigger(PARAMS, wf.run_from_wildcards(w.experiment, w.loss, w.seed)),
    threads: 1
    log:
        "logs/train/{experiment}/{loss}/seed{seed}.log",
    shell:
        "OMP_NUM_THREADS={threads} circle-repro train --params {params.params_file} --profile {params.profile}"
        " --run {wildcards.experiment}/{wildcards.loss}/seed{wildcards.seed}"
        " --data $(dirname {input.manifest}) --out $(dirname {output.weights}) > {log} 2>&1"

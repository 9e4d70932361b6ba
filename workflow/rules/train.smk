# One training run per job. Resources and the launch line come from the experiment's `resources`
# in params.yaml (circle_repro.workflow): more than one GPU starts torchrun on one node. A GPU
# experiment without `runtime_min` gets the plan's estimate x the safety factor.
rule train:
    input:
        # the training set, and the validation sets of train.validation (prepared beside it)
        unpack(lambda w: wf.train_inputs(STUDY, w.experiment)),
    output:
        weights=wf.run_file(layout.WEIGHTS_FILENAME),
        initial_weights=wf.run_file(layout.INITIAL_WEIGHTS_FILENAME),
        record=wf.run_file(layout.TRAIN_RECORD_FILENAME),
        history=wf.run_file(layout.HISTORY_FILENAME),
    log:
        "logs/train/{experiment}/{loss}/seed{seed}.log",
    benchmark:
        layout.TRAIN_BENCHMARK
    threads: 1
    resources:
        **wf.train_rule_resources(STUDY, THROUGHPUT, RATES),
    params:
        trigger=lambda w: wf.train_trigger(
            STUDY, wf.run_from_wildcards(w.experiment, w.loss, w.seed)
        ),
        launch=lambda w: wf.train_launch_prefix(STUDY, w.experiment),
        launcher=lambda w: wf.train_launcher_args(STUDY, w.experiment),
        # Snakemake deletes {log} before every attempt: each attempt (a retry, a SLURM requeue) keeps a
        # copy here, named by its start time and SLURM job.
        attempts="logs/train/{experiment}/{loss}/seed{seed}.attempts",
    shell:
        "mkdir -p {params.attempts}; "
        "OMP_NUM_THREADS={threads} {params.launch} train {PARAMS_OPTIONS}"
        " --run {wildcards.experiment}/{wildcards.loss}/seed{wildcards.seed}"
        " --data $(dirname {input.manifest}) --out $(dirname {output.weights}) {params.launcher} 2>&1"
        " | tee {params.attempts}/$(date -u +%Y%m%dT%H%M%SZ)-job${{SLURM_JOB_ID:-none}}.log"
        " > {log}"

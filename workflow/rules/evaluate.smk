rule evaluate:
    input:
        # the test set, and the weights of the run that trained them (its own, or its trainer's)
        unpack(lambda w: wf.evaluate_inputs(STUDY, w.experiment, w.loss, w.seed)),
    output:
        # the files of the run's evaluation folder that every protocol writes; `circle-repro evaluate`
        # replaces the folder as a whole, with similarities.npz where the test set has identity pairs
        metrics=wf.evaluation_file(layout.METRICS_FILENAME),
        per_query=wf.evaluation_file(layout.PER_QUERY_FILENAME),
        scores=wf.evaluation_file(layout.SCORES_FILENAME),
    log:
        "logs/evaluate/{experiment}/{loss}/seed{seed}.log",
    benchmark:
        layout.EVALUATE_BENCHMARK
    # one GPU where the experiment trains on GPUs, with its CPUs per GPU (loader workers: --cpus); runtime
    # and memory derived from the test set's size (circle_repro.workflow.evaluate_resources)
    threads: lambda w: wf.evaluate_threads(STUDY, w.experiment)
    resources:
        **wf.evaluate_rule_resources(STUDY, THROUGHPUT, RATES),
    params:
        trigger=lambda w: wf.eval_trigger(
            STUDY, wf.run_from_wildcards(w.experiment, w.loss, w.seed)
        ),
    shell:
        "OMP_NUM_THREADS={threads} circle-repro evaluate {PARAMS_OPTIONS}"
        " --run {wildcards.experiment}/{wildcards.loss}/seed{wildcards.seed}"
        " --data $(dirname {input.manifest}) --run-dir $(dirname {input.weights})"
        " --out $(dirname {output.metrics}) --cpus {resources.cpus_per_task} > {log} 2>&1"

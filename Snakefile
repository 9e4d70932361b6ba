# circle-repro workflow: data -> train -> evaluate -> report.
# Every rule calls the `circle-repro` CLI; targets and rerun triggers come from circle_repro.workflow.
# Run: snakemake --cores all   (parameters: params.yaml, or --config params=path/to/params.yaml)
# Scale: --config profile=demo|mini|... (default: the params file's `profile`)

import shlex

from circle_repro.config import ConfigError, load_study
from circle_repro import layout, workflow as wf

try:
    wf.check_snakemake_config(config)
    PARAMS_FILE = config.get("params", "params.yaml")
    STUDY = load_study(PARAMS_FILE, config.get("profile"))
except ConfigError as error:
    raise WorkflowError(str(error)) from None
# Measured rates (GPU throughput, CPU decode/preparation/metric rates) from which the evaluate and
# prepare_data jobs' runtime and memory are derived (circle_repro.plan.jobs); an absent file: fixed floors.
THROUGHPUT, RATES = wf.job_rates(
    f"{workflow.basedir}/{layout.DEFAULT_THROUGHPUT}",
    f"{workflow.basedir}/{layout.DEFAULT_RATES}",
)
# The options of every `circle-repro` call. They stand in the shell commands, not under `params:` (a rule's
# params are rerun triggers): another path or a copy of the params file reruns nothing.
PARAMS_OPTIONS = wf.params_options(PARAMS_FILE, STUDY.profile)
THROUGHPUT_FILE = shlex.quote(f"{workflow.basedir}/{layout.DEFAULT_THROUGHPUT}")
RATES_FILE = shlex.quote(f"{workflow.basedir}/{layout.DEFAULT_RATES}")
# Experiments whose manual or withdrawn data is not placed are left out of `all` (the report says
# "data unavailable" for their cells); asking for their table fails at once, saying what to place.
BLOCKED = wf.blocked_experiments(STUDY)
RUNNABLE = STUDY.without(BLOCKED)
for experiment, reason in BLOCKED.items():
    logger.warning(f"skipping {experiment}: {reason}")


wildcard_constraints:
    dataset=wf.NAME_WILDCARD,
    experiment=wf.NAME_WILDCARD,
    loss=wf.NAME_WILDCARD,
    seed=r"\d+",


rule all:
    input:
        "reports/report.md",
        "reports/report.html",


rule data:
    input:
        wf.data_targets(RUNNABLE),


rule figures:
    input:
        "reports/report.html",


for table in wf.TABLES:

    rule:
        name:
            table
        input:
            lambda w, table=table: wf.table_targets(STUDY, table, BLOCKED),


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"

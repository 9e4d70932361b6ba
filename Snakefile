# circle-repro workflow: data -> train -> evaluate -> report.
# Every rule calls the `circle-repro` CLI; targets and rerun triggers come from circle_repro.workflow.
# Run: snakemake --cores all   (parameters: params.yaml, or --config params=path/to/params.yaml)
# Scale: --config profile=demo|mini|... (default: the params file's `profile`)

from circle_repro.config import ConfigError, load_params
from circle_repro import workflow as wf

PARAMS_FILE = config.get("params", "params.yaml")
try:
    PARAMS = load_params(PARAMS_FILE, config.get("profile"))
except ConfigError as error:
    raise WorkflowError(str(error)) from None


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    experiment=r"[A-Za-z0-9_.-]+",
    loss=r"[A-Za-z0-9_.-]+",
    seed=r"\d+",


rule all:
    input:
        "reports/report.md",
        "reports/report.html",


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"

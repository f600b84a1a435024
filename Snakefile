# Position Interpolation (Chen, Wong, Chen, Tian 2023), the whole paper as one DAG.
#   snakemake --cores all                      the embedded default (config/config.yaml), laptop CPU
#   snakemake --profile slurm all              on a SLURM cluster (profiles/slurm)
#   snakemake --configfile config/paper.yaml   the paper-scale configuration
#   snakemake table3                           one table, touching only its upstream (table1 ... table6, figure2)
#   snakemake plan                             estimated GPU-hours per target, rule and job, before launching
#   snakemake audit                            provenance, determinism re-execution, claims (and the paper's cells)
from pathlib import Path

from snakemake.exceptions import WorkflowError

# Every path of the workflow (scripts, shipped resources, config files) is relative to the repository: a run from
# another directory would plan jobs that all fail late.
if Path.cwd().resolve() != Path(workflow.basedir).resolve():
    raise WorkflowError(f"run Snakemake from the repository: cd {workflow.basedir} (or pass --directory "
                        f"{workflow.basedir}); it was started in {Path.cwd()}")

# A --configfile replaces the default config rather than being merged into it (a merge would leave keys of
# the default, e.g. a dataset path, inside the paper configuration). A config that means to build on another says
# so itself (`extends:`, resolved with the validation in rules/common.smk; config/README.md).
if not workflow.overwrite_configfiles:
    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


report: "workflow/report/workflow.rst"


onstart:
    check_cluster_settings()  # placeholders of the SLURM profile, before the first job is submitted


localrules:
    all,
    base_models,
    cluster_plan,
    plan,
    downloads,



include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/perplexity.smk"
include: "workflow/rules/passkey.smk"
include: "workflow/rules/ruler.smk"
include: "workflow/rules/benchmarks.smk"
include: "workflow/rules/summarization.smk"
include: "workflow/rules/theory.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/audit.smk"


rule all:
    input:
        all_targets(),
    default_target: True

# Synergy and symmetry in deep learning: the study as one Snakemake DAG.
#   snakemake --cores all                                  # default preset (laptop, CPU)
#   snakemake --cores all --configfile presets/smoke.yaml  # minutes, for tests/CI
#   snakemake --profile slurm --configfile presets/paper.yaml
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The default preset, config.yaml beside this file (found even with --directory elsewhere);
# --configfile presets/<name>.yaml is merged on top.
configfile: str(Path(workflow.basedir) / "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/kernels.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/imagenet.smk"
include: "workflow/rules/kernel_curves.smk"


rule all:
    input:
        study_targets(),
    default_target: True

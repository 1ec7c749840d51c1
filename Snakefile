# medrepro: regenerates the results of medical-imaging papers from raw data,
# with a provenance record behind every number.
#
#   snakemake --cores 2 --configfile config/config.yaml     # built-in synthetic data
#   snakemake --profile profiles/slurm --configfile config/paper.yaml
#
# Rules live in workflow/rules/ (one file per study and stage); each rule runs a
# thin script in scripts/ that calls the medrepro package.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/chest_data.smk"
include: "workflow/rules/chest_models.smk"
include: "workflow/rules/chest_evaluation.smk"
include: "workflow/rules/chest_report.smk"


if CXR14:

    include: "workflow/rules/cxr14_data.smk"
    include: "workflow/rules/cxr14_applications.smk"
    include: "workflow/rules/cxr14_report.smk"


rule all:
    input:
        chest_registration_outputs(),
        cxr14_outputs(),
    default_target: True

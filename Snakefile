# medrepro: regenerates the results of medical-imaging papers from raw data,
# with a provenance record behind every number.
#
#   snakemake --cores 2                                   # every study in `studies:`, built-in synthetic data
#   snakemake --cores 2 chest                             # one study alone (its target rule)
#   snakemake --profile profiles/slurm --configfile config/paper.yaml
#
# Rules live in workflow/rules/<study>/ (one file per stage); each runs
# scripts/step.py, which calls the step function the rule names in params.step.
# docs/architecture.md says where everything is.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


if "chest" in RULE_STUDIES:

    include: "workflow/rules/chest/common.smk"
    include: "workflow/rules/chest/data.smk"
    include: "workflow/rules/chest/models.smk"
    include: "workflow/rules/chest/evaluation.smk"
    include: "workflow/rules/chest/report.smk"

    STUDY_OUTPUTS["chest"] = chest_outputs

    rule chest:
        """The chest X-ray registration study: Table 1, its statistics and figures."""
        input:
            chest_outputs(),


if "cxr14" in RULE_STUDIES:

    include: "workflow/rules/cxr14/common.smk"
    include: "workflow/rules/cxr14/data.smk"
    include: "workflow/rules/cxr14/applications.smk"
    include: "workflow/rules/cxr14/report.smk"

    STUDY_OUTPUTS["cxr14"] = cxr14_outputs

    rule cxr14:
        """The ChestX-ray14 applications: quality control, cohort, cardiomegaly SVM, RCA validation."""
        input:
            cxr14_outputs(),


rule all:
    input:
        [STUDY_OUTPUTS[study]() for study in ENABLED_STUDIES],
    default_target: True

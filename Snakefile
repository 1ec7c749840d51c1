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

import sys

from snakemake.logging import logger
from snakemake.utils import min_version

sys.path.insert(0, f"{workflow.basedir}/src")  # the workflow's own package, installed or not

from medrepro.provenance.records import now  # noqa: E402
from medrepro.pipeline.recovery import claim_working_directory, explain_lock_conflicts  # noqa: E402

min_version("9.0")

# After a kill -9 Snakemake's locks stay behind and every later run stops with a
# LockException. The main process (not a cluster job that parses this file again)
# removes them when no other run of this workflow is alive here, and otherwise
# lets a lock conflict say so; incomplete outputs are rerun through
# `rerun-incomplete` in profiles/default.
if workflow.is_main_process and claim_working_directory(log=logger.info).other_run_alive:
    explain_lock_conflicts()


configfile: "config/config.yaml"

# When this run started: at its end, the jobs it ran are broken down rule by rule (onsuccess below).
RUN_STARTED = now()


include: "workflow/rules/common.smk"


if "chest" in RULE_STUDIES:

    include: "workflow/rules/chest/common.smk"
    include: "workflow/rules/chest/data.smk"
    include: "workflow/rules/chest/models.smk"
    include: "workflow/rules/chest/evaluation.smk"
    include: "workflow/rules/chest/report.smk"

    STUDY_OUTPUTS["chest"] = chest_outputs
    STUDY_CLAIMS["chest"] = rules.chest_claims.output.csv

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


if "mammo_registration" in RULE_STUDIES:

    include: "workflow/rules/mammo_registration/common.smk"
    include: "workflow/rules/mammo_registration/data.smk"
    include: "workflow/rules/mammo_registration/models.smk"
    include: "workflow/rules/mammo_registration/evaluation.smk"
    include: "workflow/rules/mammo_registration/report.smk"

    STUDY_OUTPUTS["mammo_registration"] = mammo_outputs
    STUDY_CLAIMS["mammo_registration"] = rules.mammo_registration_claims.output.csv

    rule mammo_registration:
        """Dual-view mammography registration: the variants' table, statistics, claims and Figs. 2-5."""
        input:
            mammo_outputs(),


if "mammo_tissue" in RULE_STUDIES:

    include: "workflow/rules/mammo_tissue/common.smk"
    include: "workflow/rules/mammo_tissue/data.smk"
    include: "workflow/rules/mammo_tissue/models.smk"
    include: "workflow/rules/mammo_tissue/evaluation.smk"
    include: "workflow/rules/mammo_tissue/report.smk"

    STUDY_OUTPUTS["mammo_tissue"] = tissue_outputs
    STUDY_CLAIMS["mammo_tissue"] = rules.mammo_tissue_claims.output.csv

    rule mammo_tissue:
        """Multi-scale mammography tissue classifiers: Tables 1-3, saliency localisation, claims and figures."""
        input:
            tissue_outputs(),


if "microcalc" in RULE_STUDIES:

    include: "workflow/rules/microcalc/common.smk"
    include: "workflow/rules/microcalc/data.smk"
    include: "workflow/rules/microcalc/models.smk"
    include: "workflow/rules/microcalc/evaluation.smk"
    include: "workflow/rules/microcalc/report.smk"

    STUDY_OUTPUTS["microcalc"] = micro_outputs
    STUDY_CLAIMS["microcalc"] = rules.microcalc_claims.output.csv

    rule microcalc:
        """Microcalcification Detector / Segmentator: Table 1, whole-mammogram scores, claims and figures."""
        input:
            micro_outputs(),


if "brain" in RULE_STUDIES:

    include: "workflow/rules/brain/common.smk"
    include: "workflow/rules/brain/data.smk"
    include: "workflow/rules/brain/models.smk"
    include: "workflow/rules/brain/evaluation.smk"
    include: "workflow/rules/brain/report.smk"

    STUDY_OUTPUTS["brain"] = brain_outputs
    STUDY_CLAIMS["brain"] = rules.brain_claims.output.csv

    rule brain:
        """WSSAMNet 3-D brain registration against ANTs and VoxelMorph: Table 1, Wilcoxon tests, claims and figures."""
        input:
            brain_outputs(),


include: "workflow/rules/claims.smk"


rule all:
    input:
        [STUDY_OUTPUTS[study]() for study in ENABLED_STUDIES],
        rules.claims.output if enabled_claim_files() else [],
    default_target: True


onstart:
    # A local run's jobs start warm: one server imports torch and the other heavy libraries once, and each
    # job's step runs in a fork of it (medrepro.pipeline.warm; MEDREPRO_WARM=0 turns it off). Cluster jobs
    # start cold, each in its own process.
    if workflow.local_exec:
        from medrepro.pipeline.warm import start_server

        start_server()


onsuccess:
    from medrepro.pipeline.warm import stop_server

    stop_server()
    # Where the run's time went, per rule (start-up, step), from the records of the jobs it ran:
    # <results>/logs/run_times.csv and the log.
    from medrepro.provenance.run_times import report_run_times

    report_run_times(config["provenance_dir"], f"{RESULTS}/logs/run_times.csv", since=RUN_STARTED,
                     cores=workflow.cores, log=logger.info)


onerror:
    from medrepro.pipeline.warm import stop_server

    stop_server()

# The claims of every enabled study's paper, judged over the replicate seeds, in one table.


rule claims:
    """results/tables/claims.csv: one row per claim of a paper that the pipeline tests."""
    input:
        **enabled_claim_files(),
    output:
        csv=report(
            f"{RESULTS}/tables/claims.csv",
            caption="../report/claims.rst",
            category="Claims",
        ),
    params:
        step="medrepro.report.claims:claims_table_step",
    log:
        f"{RESULTS}/logs/claims.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../../scripts/step.py"

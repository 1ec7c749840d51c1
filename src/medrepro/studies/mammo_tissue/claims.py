"""The paper's claims that the pipeline tests, judged over the replicate seeds (:mod:`medrepro.report.claims`).

Sec. 4.1: the x0.5 classifier has the lowest total error and the highest AUC of the three magnifications (the
paper: 11.3 % against 24.2 % at x0.33 and 22.7 % at x0.25, so not monotone in magnification), and the best AUC
is above 0.9. Table 3: adding the local results lowers the validation MSE (6.48 -> 6.04) and raises the training
MSE (0.12 -> 2.25, read by the paper as less overfitting).

The error claims are judged on each test patch's error (0/1), the AUC claims on its AUC contribution (whose
mean is the AUC), the MSE claims on each mammogram's MSE in the named split. "AUC above 0.9" compares x0.5 with
:data:`AUC_BAR`, a constant method of 0.9 for every patch.
"""

from __future__ import annotations

import pandas as pd

from medrepro.report.claims import Claim

STUDY = "mammo_tissue"
BEST = "x0.5"
AUC_BAR = "AUC 0.9"
BASELINE, LOCAL = "baseline", "+ local results (x0.5)"


def study_claims(magnifications: list[str], heatmap_models: list[str]) -> list[Claim]:
    """The claims whose methods ran."""
    claims = []
    others = [m for m in magnifications if m != BEST]
    if BEST in magnifications:
        for other in others:
            claims.append(Claim(STUDY, f"{BEST} < {other} (total error)", "error", (BEST, other), False))
            claims.append(Claim(STUDY, f"{BEST} > {other} (AUC)", "auc_contribution", (BEST, other), True))
        claims.append(Claim(STUDY, f"{BEST} AUC > 0.9", "auc_contribution", (BEST, AUC_BAR), True))
    if {BASELINE, LOCAL} <= set(heatmap_models):
        claims.append(Claim(STUDY, f"{LOCAL} < {BASELINE} (validation MSE)", "mse", (LOCAL, BASELINE), False,
                            where={"split": "val"}))
        claims.append(Claim(STUDY, f"{LOCAL} > {BASELINE} (training MSE)", "mse", (LOCAL, BASELINE), True,
                            where={"split": "train"}))
    return claims


def with_auc_bar(values: pd.DataFrame) -> pd.DataFrame:
    """The classification values plus the constant method :data:`AUC_BAR` (0.9 for every patch, no seed)."""
    cases = values.loc[values["method"] == BEST, "case"].unique()
    bar = pd.DataFrame({"method": AUC_BAR, "seed": float("nan"), "case": cases, "auc_contribution": 0.9,
                        "error": float("nan")})
    return pd.concat([values, bar], ignore_index=True)

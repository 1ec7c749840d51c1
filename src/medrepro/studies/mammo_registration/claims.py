"""The paper's claims that the pipeline tests, judged over the replicate seeds (:mod:`medrepro.report.claims`).

Sec. 3.1 argues that the MSE alone cannot register the views, because the
pectoral muscle shows only on the MLO: masking the MSE to the views' overlap
(eq. 2) is the first remedy, the lesion boxes' GIoU (eq. 4) the second. The
claims: the paper's method (masked MSE + GIoU) overlaps more lesion boxes
than the unregistered views and than masked MSE alone, and masked MSE
registers better than the unmasked MSE. Each is judged on the overlap (the
paper's 66.7%: higher is better) and on the GIoU loss (its evaluation
metric: lower is better). Claims naming a method the config does not run are
left out.
"""

from __future__ import annotations

from typing import Sequence

from medrepro.report.claims import Claim, metric_claims

STUDY = "mammo_registration"
ORDERS = (("masked_mse_giou", "unregistered"), ("masked_mse_giou", "masked_mse"), ("masked_mse", "mse"))
# Overlap (0/1 per pair, its mean the overlap rate): higher is better; GIoU loss: lower is better.
METRIC_DIRECTIONS = {"overlap": True, "giou_loss": False}


def study_claims(methods: Sequence[str]) -> list[Claim]:
    """Every claim whose methods all ran, on each metric; judged on :func:`.tables.long_scores`' frame."""
    return metric_claims(STUDY, ORDERS, METRIC_DIRECTIONS, methods)

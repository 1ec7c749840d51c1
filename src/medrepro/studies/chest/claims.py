"""The paper's claims about Table 1 that the pipeline tests, per dataset and metric.

From Sec. 5.2 of the paper: "all segmentation-aware strategies (AC-RegNet,
AE-RegNet and CE-RegNet) outperform baseline models (SimpleElastix and
RegNet) ... giving the highest DSC and lowest HD and ASSD values in each
dataset", and "using the combined local and global metrics (AC-RegNet) yields
better performance than the individual cases", with Table 1 ordering AC > AE >
CE everywhere. Table 1 also puts SimpleElastix above RegNet in every dataset,
and every learned method improves on the unregistered (pre-aligned) pairs.
Claims naming a method the config does not run are left out.
"""

from __future__ import annotations

from typing import Sequence

from medrepro.report.claims import Claim, metric_claims

STUDY = "chest"
SEGMENTATION_AWARE = ("CE-RegNet", "AE-RegNet", "AC-RegNet")
LEARNED = ("RegNet", *SEGMENTATION_AWARE)
# Dice: higher is better; Hausdorff distance and ASSD: lower is better.
METRIC_DIRECTIONS = {"dsc": True, "hd": False, "assd": False}


def claim_orders(methods: Sequence[str]) -> list[tuple[str, ...]]:
    """The claimed orders (best first) among ``methods``."""
    orders: list[tuple[str, ...]] = []
    orders += [(m, "RegNet") for m in SEGMENTATION_AWARE]
    orders += [(m, "SimpleElastix") for m in SEGMENTATION_AWARE]
    orders.append(("SimpleElastix", "RegNet"))
    orders += [(m, "Unregistered") for m in LEARNED]
    orders.append(("AC-RegNet", "AE-RegNet", "CE-RegNet"))
    present = set(methods)
    return [order for order in orders if present.issuperset(order)]


def chest_claims(dataset: str, methods: Sequence[str]) -> list[Claim]:
    """Every claim for one dataset, on every metric of Table 1."""
    return metric_claims(STUDY, claim_orders(methods), METRIC_DIRECTIONS, methods, where={"dataset": dataset},
                         label_prefix=f"{dataset}: ")

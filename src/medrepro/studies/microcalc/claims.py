"""The paper's claims that the pipeline tests, judged over the replicate seeds (:mod:`medrepro.report.claims`).

Table 1 of the paper (Sec. 3): with *same* convolutions both networks are at least as accurate overall as with
*valid* ones (Detector 98.22 against 96.04 %, Segmentator 97.47 against 96.37 %); the Detector's hardest class is
C3 (a calcification away from the centre: 20.28 % error valid, 7.84 % same), the Segmentator's C2 (a calcification
next to the centre but not on it: 15.32 % and 10.03 %). The paper's *same* is not better in every class (the
Detector's C4 error is 2.09 against 1.69 %), so only the overall accuracy is claimed.

* "same > valid": each test patch's correctness (0/1), paired by patch between the variants (every seed's networks
  see the same test patches).
* "C3 hardest" / "C2 hardest": each patch's error (0/1) in the named class against each other class, unpaired (the
  classes hold different patches), per network and convolution.
"""

from __future__ import annotations

import pandas as pd

from medrepro.report.claims import Claim
from medrepro.studies.microcalc.patches import CLASSES

STUDY = "microcalc"
HARDEST = {"detector": 3, "segmentator": 2}


def study_claims(predictions: pd.DataFrame) -> list[Claim]:
    """The claims whose networks and variants ran."""
    claims = []
    ran = set(zip(predictions["network"], predictions["convolution"]))
    for network in sorted({n for n, _ in ran}):
        if {(network, "same"), (network, "valid")} <= ran:
            claims.append(Claim(STUDY, f"{network}: same > valid (overall accuracy)", "correct", ("same", "valid"),
                                True, where={"network": network, "kind": "variant"}))
        hardest = HARDEST[network]
        order = (f"C{hardest}", *(f"C{c}" for c in CLASSES if c != hardest))
        for convolution in ("valid", "same"):
            if (network, convolution) in ran:
                claims.append(Claim(STUDY, f"{network} ({convolution}): C{hardest} the hardest class", "error", order,
                                    True, where={"network": network, "convolution": convolution, "kind": "class"},
                                    paired=False, versus="each"))
    return claims


def claim_values(predictions: pd.DataFrame) -> pd.DataFrame:
    """The long values the claims read: per patch, ``correct`` with the convolution as the method (kind
    "variant"), and ``error`` with the class as the method (kind "class"); ``source`` kept."""
    base = predictions.assign(case=predictions["patch_id"].astype(str))
    variants = base.assign(kind="variant", method=base["convolution"])
    classes = base.assign(kind="class", method="C" + base["class"].astype(str), error=1 - base["correct"])
    keep = ["kind", "network", "convolution", "method", "seed", "case", "correct", "error", "source"]
    return pd.concat([variants, classes], ignore_index=True).reindex(columns=keep)

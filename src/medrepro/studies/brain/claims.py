"""The paper's claims that the pipeline tests, judged over the replicate seeds (:mod:`medrepro.report.claims`).

Table 1 of the paper (20 validation pairs scored by the organisers): every method registers (lower median error
than no registration, which the table does not show but the challenge implies); WSSAMNet's median of median
error is the lowest (5.00 mm against ANTs' 5.50 and VoxelMorph's 6.25), though ANTs has the lower error in the
three other error rows (mean of median, median of mean, mean of mean); WSSAMNet's robustness is at least
VoxelMorph's (0.32 against 0.31); both learned methods register a pair faster than ANTs on the CPU (0.18 against
0.83 minutes). Beyond the paper: the attention branch lowers the error (its conclusion's "benefit of training
the network to give more attention to the regions around the landmarks").

Each claim compares per-case values paired by case (the held-out cases are the same for every method).
"""

from __future__ import annotations

from medrepro.report.claims import Claim

STUDY = "brain"
LEARNED = ("voxelmorph", "wssamnet", "wssamnet_no_attention")


def study_claims(methods: set) -> list[Claim]:
    """The claims whose methods ran."""
    claims = []

    def add(label, metric, order, higher_is_better):
        if set(order) <= methods:
            claims.append(Claim(STUDY, label, metric, tuple(order), higher_is_better))

    for method in ("ants", *LEARNED):
        add(f"{method} lowers the median error against unregistered", "median_error_mm",
            (method, "unregistered"), False)
    add("wssamnet below ants (median error)", "median_error_mm", ("wssamnet", "ants"), False)
    add("wssamnet below voxelmorph (median error)", "median_error_mm", ("wssamnet", "voxelmorph"), False)
    add("ants below wssamnet (mean error)", "mean_error_mm", ("ants", "wssamnet"), False)
    add("wssamnet at least as robust as voxelmorph", "robustness", ("wssamnet", "voxelmorph"), True)
    for method in ("voxelmorph", "wssamnet"):
        add(f"{method} faster than ants on the CPU", "runtime_cpu_s", (method, "ants"), False)
    add("attention lowers the median error (wssamnet below its ablation)", "median_error_mm",
        ("wssamnet", "wssamnet_no_attention"), False)
    return claims

"""Seed replicates, and a paper's claims judged over them.

One seed of a short training schedule cannot carry a claim such as "method A
scores above method B": CPU kernels differ between machines, training
diverges, and a close ordering can flip. Every study therefore trains and
evaluates its learned methods once per replicate seed (:func:`replicate_seeds`)
and judges each claim over all of them (:func:`judge_claim`):

* ``holds_in_seeds``: in how many seeds the claimed order holds between the
  methods' means over the test cases;
* ``p_value``: a one-sided paired Wilcoxon signed-rank test over the test
  cases, each case's value first averaged over the seeds (a method without
  training, such as an identity or an iterative baseline, has one value per
  case that serves every seed). For an order of more than two methods
  (``A > B > C``) each neighbouring pair is tested and the largest p is kept:
  the order is supported only when every step of it is (intersection-union
  test);
* ``verdict``: ``holds`` when the order holds in every seed and p < alpha;
  ``contradicted`` when it holds in no seed and some step of the order is
  significantly reversed (the opposite one-sided test, p < alpha);
  ``inconclusive`` otherwise.

The verdict asks for both criteria on purpose: the seeds carry the training
variability, the test cases the data variability.

Two variants serve claims whose "methods" are groups of different cases, such as
"class C3 is the hardest" (the errors of C3 patches against those of each other
class): ``paired=False`` compares the groups' case values (averaged over the
seeds) with a one-sided Mann-Whitney U test instead of the paired test, and
``versus="each"`` compares the first method with each of the others (the first
is best of all) instead of each with the next (a chain).

The values are the long format of :mod:`medrepro.report.scores`; a claim about one
group (a dataset) names it in ``Claim.where``.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from medrepro.data.atomic import write_csv
from medrepro.errors import DataError
from medrepro.report.scores import SOURCE, cell_lineage, check_long
from medrepro.report.tables import require_columns

CLAIM_COLUMNS = ["study", "claim", "metric", "holds_in_seeds", "n_seeds", "p_value", "verdict"]
CLAIM_KEYS = ["study", "claim", "metric"]
# The gathered claims.csv: six significant digits.
FLOAT_FORMAT = "%.6g"
VERDICTS = ("holds", "contradicted", "inconclusive")
ALPHA = 0.05
VERSUS = ("next", "each")


def replicate_seeds(seed: int, replicates: int) -> list[int]:
    """The seeds of ``replicates`` training runs: the config's seed, then the next ones."""
    if replicates < 1:
        raise ValueError(f"replicates must be at least 1, got {replicates}")
    return [int(seed) + k for k in range(int(replicates))]


@dataclasses.dataclass(frozen=True)
class Claim:
    """``order[0]`` scores better than ``order[1]``, which scores better than ``order[2]``, ...

    ``higher_is_better`` says what "better" means for ``metric`` (True for Dice,
    False for distances). ``label`` names the claim in the table. ``where``
    restricts it to the values of one group (``{"dataset": "JSRT"}``).
    ``paired`` False: the methods' cases differ, and are compared as independent
    samples; ``versus`` "each": ``order[0]`` beats each other method (module
    docstring).
    """

    study: str
    label: str
    metric: str
    order: tuple[str, ...]
    higher_is_better: bool
    where: Mapping[str, object] = dataclasses.field(default_factory=dict, hash=False)
    paired: bool = True
    versus: str = "next"

    def __post_init__(self):
        if len(self.order) < 2 or len(set(self.order)) != len(self.order):
            raise ValueError(f"claim {self.label!r}: order needs two or more distinct methods, got {self.order}")
        if self.versus not in VERSUS:
            raise ValueError(f"claim {self.label!r}: versus must be one of {', '.join(VERSUS)}, got {self.versus!r}")

    def steps(self) -> list[tuple[str, str]]:
        """The (better, worse) pairs the claim is made of."""
        if self.versus == "each":
            return [(self.order[0], other) for other in self.order[1:]]
        return list(zip(self.order[:-1], self.order[1:]))


def one_sided_wilcoxon(differences: np.ndarray) -> float:
    """p of the signed-rank test that the differences are shifted above zero.

    Zero differences are dropped before ranking (``zero_method="wilcox"``); with
    no difference left (or none at all) nothing supports the claim: p = 1.
    """
    differences = np.asarray(differences, dtype=np.float64)
    differences = differences[np.isfinite(differences)]
    if differences.size == 0 or np.all(differences == 0):
        return 1.0
    from scipy.stats import wilcoxon  # here, not at the top: every workflow parse imports this module (seeds)

    return float(wilcoxon(differences, zero_method="wilcox", alternative="greater").pvalue)


def one_sided_mann_whitney(better: np.ndarray, worse: np.ndarray) -> float:
    """p of the rank-sum test that ``better`` is shifted above ``worse`` (independent samples, ties averaged);
    1 when either is empty or every value is the same."""
    better, worse = (np.asarray(v, dtype=np.float64) for v in (better, worse))
    better, worse = better[np.isfinite(better)], worse[np.isfinite(worse)]
    if better.size == 0 or worse.size == 0 or np.ptp(np.concatenate([better, worse])) == 0:
        return 1.0
    from scipy.stats import mannwhitneyu  # here, not at the top: every workflow parse imports this module (seeds)

    return float(mannwhitneyu(better, worse, alternative="greater").pvalue)


def metric_claims(study: str, orders: Sequence[tuple[str, ...]], directions: Mapping[str, bool],
                  methods: Sequence[str], where: Mapping[str, object] | None = None,
                  label_prefix: str = "") -> list[Claim]:
    """A claim per order whose methods all ran, on each metric (``directions``: metric -> higher is better).

    Labels are ``label_prefix`` and the order joined by `` > ``.
    """
    present = set(methods)
    return [
        Claim(study=study, label=label_prefix + " > ".join(order), metric=metric, order=tuple(order),
              higher_is_better=higher, where=dict(where or {}))
        for order in orders if present.issuperset(order)
        for metric, higher in directions.items()
    ]


def _selected(values: pd.DataFrame, where: Mapping[str, object], source) -> tuple[pd.DataFrame, object]:
    """The values of the claim's group, and the source named in errors (with the group)."""
    if not where:
        return values, source
    require_columns(values, tuple(where), source)
    for column, value in where.items():
        values = values[values[column] == value]
    group = ", ".join(f"{column} = {value}" for column, value in where.items())
    return values, f"{source} ({group})" if source is not None else group


def _seed_table(values: pd.DataFrame, metric: str, methods: Sequence[str], source) -> pd.DataFrame:
    """Per (seed, case) one column per method; seedless methods are repeated for every seed."""
    check_long(values, (metric,), source=source)
    missing = [m for m in methods if m not in set(values["method"])]
    if missing:
        raise DataError(source, f"no scores for method(s) {missing}")
    seeds = sorted(int(s) for s in values["seed"].dropna().unique())
    if not seeds:
        raise DataError(source, "no method has a seed: nothing to judge over seeds")
    columns = {}
    for method in methods:
        rows = values[values["method"] == method]
        if rows["seed"].isna().all():  # trained once or not at all: the same values in every seed
            rows = pd.concat([rows.assign(seed=s) for s in seeds], ignore_index=True)
        rows = rows.astype({"seed": int})
        columns[method] = rows.set_index(["seed", "case"])[metric].astype(float)
    table = pd.DataFrame(columns)
    return table.loc[table.index.get_level_values("seed").isin(seeds)]


def _paired_p(table: pd.DataFrame, steps, sign: float) -> tuple[float, float]:
    """(p supporting every step, p of the most reversed step): paired tests over the cases."""
    case_means = table.groupby(level="case").mean()
    p_support = max(one_sided_wilcoxon(sign * (case_means[b] - case_means[w])) for b, w in steps)
    p_reverse = min(one_sided_wilcoxon(sign * (case_means[w] - case_means[b])) for b, w in steps)
    return p_support, p_reverse


def _unpaired_p(table: pd.DataFrame, steps, sign: float) -> tuple[float, float]:
    """As :func:`_paired_p` for methods with cases of their own: rank-sum tests of the case means."""
    case_means = table.groupby(level="case").mean()
    column = {m: sign * case_means[m].dropna().to_numpy() for m in case_means.columns}
    p_support = max(one_sided_mann_whitney(column[b], column[w]) for b, w in steps)
    p_reverse = min(one_sided_mann_whitney(column[w], column[b]) for b, w in steps)
    return p_support, p_reverse


def judge_claim(claim: Claim, values: pd.DataFrame, alpha: float = ALPHA, source=None) -> dict:
    """One row of ``claims.csv`` for ``claim`` on ``values``.

    ``values`` has one row per (method, seed, case) with the metric column;
    ``seed`` is NaN (None) for methods that were not trained per seed. For a
    paired claim, cases missing for any method of the claim are left out; an
    unpaired claim keeps each method's own cases.
    """
    values, source = _selected(values, claim.where, source)
    table = _seed_table(values, claim.metric, claim.order, source)
    if claim.paired:
        table = table.dropna()
        if table.empty:
            raise DataError(source, f"claim {claim.label!r}: no case has a value for every method of "
                                    f"{', '.join(claim.order)}; a paired claim compares the same cases")
    sign = 1.0 if claim.higher_is_better else -1.0
    seed_means = table.groupby(level="seed").mean()
    steps = claim.steps()
    holds = np.ones(len(seed_means), dtype=bool)
    for better, worse in steps:
        holds &= sign * (seed_means[better] - seed_means[worse]).to_numpy() > 0
    p_support, p_reverse = (_paired_p if claim.paired else _unpaired_p)(table, steps, sign)
    n_seeds, holds_in_seeds = len(seed_means), int(holds.sum())
    if holds_in_seeds == n_seeds and p_support < alpha:
        verdict = "holds"
    elif holds_in_seeds == 0 and p_reverse < alpha:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    return {"study": claim.study, "claim": claim.label, "metric": claim.metric, "holds_in_seeds": holds_in_seeds,
            "n_seeds": n_seeds, "p_value": p_support, "verdict": verdict}


def judge_claims(claims: Sequence[Claim], values: pd.DataFrame, alpha: float = ALPHA, source=None) -> pd.DataFrame:
    """Every claim judged on the same values, in the order given."""
    rows = [judge_claim(claim, values, alpha, source) for claim in claims]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def claims_lineage(claims: Sequence[Claim], table: pd.DataFrame, values: pd.DataFrame) -> dict:
    """``job.cells`` of ``judge_claims(claims, values)``: each claim traced to the files of its methods' values."""
    return cell_lineage(table, CLAIM_KEYS, values, [{**claim.where, "method": claim.order} for claim in claims])


def combine_claim_tables(tables: Sequence[pd.DataFrame], source=None) -> pd.DataFrame:
    """The studies' claim tables as one, checked for the shared columns and verdict words."""
    frames = []
    for table in tables:
        require_columns(table, CLAIM_COLUMNS, source)
        unknown = sorted(set(table["verdict"]) - set(VERDICTS))
        if unknown:
            raise DataError(source, f"unknown verdict(s) {unknown}; expected one of {', '.join(VERDICTS)}")
        frames.append(table[CLAIM_COLUMNS])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CLAIM_COLUMNS)


def claims_table_step(job) -> None:
    """Rule ``claims``: the enabled studies' claim files (inputs named by study) as one table."""
    paths = [path for name, path in job.input.items() if not name.startswith("_")]
    tables = [pd.read_csv(path).assign(**{SOURCE: str(path)}) for path in paths]
    table = combine_claim_tables(tables, source=", ".join(map(str, paths)))
    write_csv(job.output.csv, table, FLOAT_FORMAT)
    job.cells = cell_lineage(table, CLAIM_KEYS, pd.concat(tables, ignore_index=True) if tables else table)

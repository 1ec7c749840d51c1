"""The balanced cardiomegaly cohort: quality control, group rules, sampling, table checks, published counts."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medrepro.studies.chest.cxr14.cohort import cohort_counts, read_published_rca
from medrepro.studies.chest.cxr14.dataset import read_label_table
from medrepro.errors import DataError

REFERENCE = Path("/work/shared/reference")
LABELS_CSV = REFERENCE / "nih-cxr14-data-entry-2017-v2020.csv.gz"
RCA_CSV = REFERENCE / "nih-cxr14-rca-dice-scores.csv"
LABELS_PATH, RCA_PATH = "tables/labels.csv", "tables/rca.csv"

ROWS = [  # image, findings, dice, expected group after QC at 0.92
    ("a.png", "Cardiomegaly", 0.95, "cardiomegaly"),
    ("b.png", "Effusion|Cardiomegaly|Edema", 0.93, "cardiomegaly"),
    ("c.png", "Cardiomegaly|Effusion", 0.92, None),  # at the threshold: fails the strict test
    ("d.png", "No Finding", 0.99, "healthy"),
    ("e.png", "No Finding", 0.92, None),
    ("f.png", "No Finding", 0.97, "healthy"),
    ("g.png", "No Finding", 0.96, "healthy"),
    ("h.png", "Effusion", 0.99, None),
    ("i.png", "Cardiomegaly", 0.40, None),
    ("j.png", "Hernia|No Finding", 0.99, None),  # not exactly "No Finding"
    ("k.png", "Cardiomegalyish", 0.99, None),  # not the label Cardiomegaly
]


def tables(rows=ROWS) -> tuple[pd.DataFrame, pd.DataFrame]:
    labels = pd.DataFrame({"Image Index": [r[0] for r in rows], "Finding Labels": [r[1] for r in rows],
                           "Patient ID": range(len(rows))})
    rca = pd.DataFrame({"image": [r[0] for r in rows], "dice": [r[2] for r in rows]})
    return labels, rca


def large_tables(n_cardio: int = 20, n_healthy: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [(f"c{i:03d}.png", "Cardiomegaly", 0.95, None) for i in range(n_cardio)]
    rows += [(f"h{i:03d}.png", "No Finding", 0.95, None) for i in range(n_healthy)]
    return tables(rows)


def run(labels, rca, threshold=0.92, seed=0):
    return cohort_counts(labels, rca, threshold, seed, labels_path=LABELS_PATH, rca_path=RCA_PATH)


def test_group_rules_on_a_hand_made_table():
    counts, cohort = run(*tables())
    assert counts == {"images": 11, "qc_passed": 8, "cardiomegaly": 2, "healthy_sampled": 2, "balanced_total": 4}
    assert list(cohort.columns) == ["image", "group", "label", "dice"]
    cardio = cohort[cohort["group"] == "cardiomegaly"]
    healthy = cohort[cohort["group"] == "healthy"]
    assert cardio["image"].tolist() == ["a.png", "b.png"]
    assert set(healthy["image"]) <= {"d.png", "f.png", "g.png"} and len(healthy) == 2
    assert (cardio["label"] == 1).all() and (healthy["label"] == 0).all()
    dice = {r[0]: r[2] for r in ROWS}
    assert cohort["dice"].tolist() == [dice[name] for name in cohort["image"]]


def test_threshold_is_strict():
    counts, cohort = run(*tables(), threshold=0.919999)
    assert counts["qc_passed"] == 10 and counts["cardiomegaly"] == 3
    assert "c.png" in set(cohort["image"])


def test_sampling_is_seeded_reproducible_and_order_free():
    labels, rca = large_tables()
    first = run(labels, rca, seed=7)[1]
    again = run(labels.iloc[::-1], rca.sample(frac=1.0, random_state=3), seed=7)[1]
    pd.testing.assert_frame_equal(first, again)
    other = run(labels, rca, seed=8)[1]
    assert set(first["image"]) != set(other["image"])
    counts = run(labels, rca, seed=8)[0]
    assert counts["healthy_sampled"] == counts["cardiomegaly"] == 20 and counts["balanced_total"] == 40
    assert first["image"].is_unique


def test_missing_columns_name_the_file():
    labels, rca = tables()
    with pytest.raises(DataError, match=f"{LABELS_PATH}.*Finding Labels"):
        run(labels.drop(columns="Finding Labels"), rca)
    with pytest.raises(DataError, match=f"{RCA_PATH}.*dice"):
        run(labels, rca.rename(columns={"dice": "score"}))


def test_unknown_rca_images_are_named():
    labels, rca = tables()
    extra = pd.DataFrame({"image": [f"x{i}.png" for i in range(7)], "dice": 0.95})
    with pytest.raises(DataError, match=rf"{RCA_PATH}: 7 RCA image\(s\) are not in the label table") as info:
        run(labels, pd.concat([rca, extra]))
    assert "x0.png, x1.png, x2.png, x3.png, x4.png and 2 more" in str(info.value)


def test_images_without_a_score_are_named():
    labels, rca = tables()
    with pytest.raises(DataError, match=rf"{RCA_PATH}: no RCA score for 2 image\(s\).*{LABELS_PATH}.*c.png, h.png"):
        run(labels, rca[~rca["image"].isin(["c.png", "h.png"])])


@pytest.mark.parametrize("bad", [np.nan, np.inf, "n/a"])
def test_non_finite_scores_are_rejected(bad):
    labels, rca = tables()
    rca = rca.astype({"dice": object})
    rca.loc[3, "dice"] = bad
    with pytest.raises(DataError, match=rf"{RCA_PATH}: 1 RCA score.*d.png"):
        run(labels, rca)


def test_duplicate_images_are_rejected():
    labels, rca = tables()
    with pytest.raises(DataError, match=f"{LABELS_PATH}.*a.png"):
        run(pd.concat([labels, labels.iloc[:1]]), rca)
    with pytest.raises(DataError, match=f"{RCA_PATH}.*a.png"):
        run(labels, pd.concat([rca, rca.iloc[:1]]))


def test_too_few_healthy_images():
    labels, rca = large_tables(n_cardio=5, n_healthy=4)
    with pytest.raises(DataError, match=f"{LABELS_PATH}: only 4 healthy .* fewer than the 5 cardiomegaly"):
        run(labels, rca)


def test_read_published_rca_maps_mask_names_to_images(tmp_path):
    path = tmp_path / "rca.csv"
    path.write_text("fname,dice\n00000001_000_labels.png,0.95\n00000002_001_labels.png,0.5\n")
    table = read_published_rca(path)
    assert table["image"].tolist() == ["00000001_000.png", "00000002_001.png"]
    assert table["dice"].tolist() == [0.95, 0.5]
    path.write_text("fname,dice\n00000001_000.png,0.95\n")
    with pytest.raises(DataError, match=f"{path}.*_labels.png"):
        read_published_rca(path)
    path.write_text("name,dice\n00000001_000_labels.png,0.95\n")
    with pytest.raises(DataError, match=f"{path}.*fname"):
        read_published_rca(path)


def test_published_counts():
    counts, cohort = cohort_counts(read_label_table(LABELS_CSV), read_published_rca(RCA_CSV), 0.92, seed=0,
                                   labels_path=LABELS_CSV, rca_path=RCA_CSV)
    assert counts == {"images": 112120, "qc_passed": 87870, "cardiomegaly": 2019, "healthy_sampled": 2019,
                      "balanced_total": 4038}
    assert len(cohort) == 4038 and (cohort["dice"] > 0.92).all() and cohort["image"].is_unique

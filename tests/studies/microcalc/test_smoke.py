"""The microcalcification study's part of the suite's smoke run: the patch database, Table 1 and the
whole-mammogram table complete and finite, the claims, the figures, and a cell of each table traced through the
patch database to the raw DICOMs."""

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from rocrate.rocrate import ROCrate

from medrepro.provenance.crate import export_crate

from support.crate_trace import as_list, trace
from support.smoke import assert_figures, crate_cell, explain_cell

FIGURES = ("microcalc_synthetic", "microcalc_tsne", "microcalc_worst_detector", "microcalc_worst_segmentator",
           "microcalc_training_curves", "microcalc_segmented_region", "microcalc_border_failures")
# Scores of clusters are undefined (NaN) on test images without a true cluster: the smoke run's single test image
# may have none.
CLUSTER_COLUMNS = ("cluster_sensitivity", "image_cluster_sensitivity")


@pytest.mark.slow
def test_smoke_microcalc_database_and_tables_are_complete_and_finite(smoke_run):
    from medrepro.studies.microcalc.patchdb import PatchDatabase
    from medrepro.studies.microcalc.tables import PATCH_COLUMNS

    with PatchDatabase(smoke_run / "microcalc/patches.sqlite") as database:
        images = database.images()
        counts = database.counts()
        test = database.patch_set("test")
    assert set(images["split"]) == {"train", "val", "test"}
    with sqlite3.connect(smoke_run / "microcalc/patches.sqlite") as connection:  # no image in two splits
        sets_per_image = connection.execute('SELECT MAX(n) FROM (SELECT COUNT(DISTINCT "set") AS n FROM patches '
                                            'GROUP BY image_id)').fetchone()[0]
        outside = connection.execute('SELECT COUNT(*) FROM patches p JOIN images i ON p.image_id = i.id '
                                     'WHERE p."set" != i.split').fetchone()[0]
    assert sets_per_image == 1 and outside == 0
    assert all(counts["test"][f"C{c}"] > 0 for c in (1, 2, 3, 4))
    assert counts["test"]["C1"] == 3 * counts["test"]["C2"]  # the paper's mix: half C1, a sixth each of the rest
    table = pd.read_csv(smoke_run / "tables/microcalc_patch_errors.csv")
    assert list(table.columns[:len(PATCH_COLUMNS)]) == PATCH_COLUMNS
    assert list(zip(table["network"], table["convolution"])) == [
        ("detector", "valid"), ("detector", "same"), ("segmentator", "valid"), ("segmentator", "same")]
    numbers = table.drop(columns=["network", "convolution"]).to_numpy(dtype=float)
    assert np.isfinite(numbers).all()
    assert (table[[f"n_c{c}" for c in (1, 2, 3, 4)]].sum(axis=1) == len(test)).all()
    # the overall accuracy is the per-class accuracies weighted by the test set's class mix
    weights = table[[f"n_c{c}" for c in (1, 2, 3, 4)]].to_numpy(float) / len(test)
    errors = table[[f"c{c}_error" for c in (1, 2, 3, 4)]].to_numpy(float)
    np.testing.assert_allclose(100 - (weights * errors).sum(axis=1), table["overall_accuracy"], atol=1e-3)
    for suffix in ("md", "tex"):
        text = (smoke_run / f"tables/microcalc_patch_errors.{suffix}").read_text()
        assert "Segmentator" in text and "(96.04)" in text
    images_table = pd.read_csv(smoke_run / "tables/microcalc_images.csv")
    assert list(images_table["convolution"]) == ["valid", "same"]
    defined = images_table.drop(columns=["convolution", *CLUSTER_COLUMNS]).to_numpy(dtype=float)
    assert np.isfinite(defined).all()
    assert (images_table["seconds_per_mammogram"] > 0).all()
    claims = pd.read_csv(smoke_run / "tables/claims.csv")
    micro = claims[claims["study"] == "microcalc"]
    assert len(micro) == 6 and set(micro["metric"]) == {"correct", "error"}
    assert_figures(smoke_run, FIGURES)


CELLS = [
    ("microcalc_patch_errors.csv", "detector/same", "c3_error",
     ("microcalc_patch_table", "microcalc_evaluate_patches", "microcalc_train", "microcalc_extract",
      "microcalc_obtain", "microcalc_synthesize")),
    ("microcalc_images.csv", "valid", "dice",
     ("microcalc_images_table", "microcalc_segment", "microcalc_train", "microcalc_extract",
      "microcalc_synthesize")),
]


@pytest.mark.slow
@pytest.mark.parametrize("table, row, column, rules", CELLS)
def test_smoke_microcalc_cells_trace_through_the_database_to_the_dicoms(smoke_run, table, row, column, rules):
    text = json.dumps(explain_cell(smoke_run, table, row, column, rules))
    assert "patches.sqlite" in text and "raw/INbreast" in text


@pytest.mark.slow
def test_smoke_microcalc_cells_trace_to_the_raw_files_in_the_crate(smoke_run, tmp_path):
    crate = ROCrate(export_crate(smoke_run / "provenance", tmp_path / "provenance.crate.zip", results_dir=smoke_run))
    for table, row, column, rules in CELLS:
        number = crate_cell(crate, smoke_run, table, row, column)
        visited, actions, _ = trace(crate, as_list(number["isBasedOn"]))  # from the table's inputs upwards
        assert set(rules[1:]) <= {a["name"].split("[")[0] for a in actions}, (table, rules)
        database = [e for e in crate.get_by_type("File") if e.id in visited and e.id.endswith("patches.sqlite")]
        assert len(database) == 1, table
        raw = [e for e in crate.get_by_type("Dataset")
               if e.id in visited and e.get("localPath", "").rstrip("/").endswith("raw/INbreast")]
        assert len(raw) == 1, table

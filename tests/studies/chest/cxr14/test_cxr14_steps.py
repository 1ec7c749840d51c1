"""ChestX-ray14 steps: the manifest and its shards, gathering shards, the cohort table, bad input."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from medrepro.studies.chest.cxr14.synthetic import generate_cxr14
from medrepro.errors import DataError
from medrepro.studies.chest.cxr14.dataset import LABEL_TABLE, PUBLISHED_RCA_DICE, PUBLISHED_TABLE, published_path
from medrepro.studies.chest.networks import MaskAutoencoder
from medrepro.pipeline.runner import Job, _Namespace, execute
from medrepro.studies.chest.cxr14 import steps as cxr14
from medrepro.studies.chest.autoencoder import AUTOENCODER_KIND


def _job(rule, inputs, outputs, params, tmp_path, wildcards=None):
    return Job(rule=rule, input=_Namespace(inputs), output=_Namespace(outputs), params=_Namespace(params),
               wildcards=_Namespace(wildcards or {}), provenance_dir=str(tmp_path / "prov"))


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("cxr14") / "ChestX-ray14"
    generate_cxr14(root, n_images=9, seed=0, poor_fraction=0.0, image_size=64, enlarged_fraction=0.5)
    return root


def _manifest_job(raw, tmp_path, n_images=9, shard_size=4):
    return _job("cxr14_manifest", {"raw_manifest": str(raw / "MANIFEST.sha256")},
                {"manifest": str(tmp_path / "manifest.csv")},
                {"raw_dir": str(raw), "n_images": n_images, "shard_size": shard_size}, tmp_path)


def test_manifest_cuts_the_table_into_shards(raw, tmp_path):
    execute(_manifest_job(raw, tmp_path), cxr14.manifest)
    manifest = pd.read_csv(tmp_path / "manifest.csv", dtype={"image": str})
    table = pd.read_csv(raw / LABEL_TABLE)
    assert manifest["image"].tolist() == table["Image Index"].tolist()
    assert manifest["shard"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert manifest["finding_labels"].tolist() == table["Finding Labels"].tolist()


def test_manifest_asking_for_more_images_than_the_table_has(raw, tmp_path):
    with pytest.raises(DataError, match=f"{LABEL_TABLE}.*lists 9 images.*n_images = 10"):
        execute(_manifest_job(raw, tmp_path, n_images=10), cxr14.manifest)
    assert not (tmp_path / "manifest.csv").exists() and not (tmp_path / "prov").exists()


def test_manifest_with_a_missing_image_names_it(raw, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / LABEL_TABLE).write_bytes((raw / LABEL_TABLE).read_bytes())
    (copy / "images").mkdir()
    names = pd.read_csv(raw / LABEL_TABLE)["Image Index"].tolist()
    for name in names[1:]:
        (copy / "images" / name).write_bytes((raw / "images" / name).read_bytes())
    with pytest.raises(DataError, match=names[0]):
        execute(_manifest_job(copy, tmp_path), cxr14.manifest)
    assert not (tmp_path / "manifest.csv").exists()


def _fake_shard(path, names, size=16, seed=0):
    rng = np.random.default_rng(seed)
    masks = np.zeros((len(names), size, size), np.uint8)
    masks[:, 4:12, 2:7], masks[:, 4:12, 9:14], masks[:, 8:12, 6:10] = 1, 2, 3
    np.savez_compressed(path, names=np.array(names), images=rng.random((len(names), size, size)).astype(np.float16),
                        masks=masks, atlas_index=np.zeros((len(names), 2), int),
                        atlas_ncc=np.ones((len(names), 2), np.float32), aligned=np.ones(len(names), bool))
    return masks


def test_rca_scores_gather_every_shard_in_order(tmp_path):
    paths = []
    for shard, names in enumerate((["a.png", "b.png"], ["c.png"])):
        path = tmp_path / f"rca{shard}.csv"
        pd.DataFrame({"image": names, "dice": [0.9] * len(names), "best_reference": "r",
                      "prealigned": True}).to_csv(path, index=False)
        paths.append(str(path))
    execute(_job("cxr14_rca_scores", {"scores": paths}, {"scores": str(tmp_path / "all.csv")}, {}, tmp_path),
            cxr14.rca_scores_table)
    assert pd.read_csv(tmp_path / "all.csv")["image"].tolist() == ["a.png", "b.png", "c.png"]


def _autoencoder(path, size=16):
    model = MaskAutoencoder(4, size)
    torch.save({"kind": AUTOENCODER_KIND, "config": {"n_classes": 4, "size": size, "code_dim": 32},
                "state_dict": model.state_dict()}, path)


def test_features_collect_cohort_masks_from_several_shards(tmp_path):
    shard_paths = [str(tmp_path / "s0.npz"), str(tmp_path / "s1.npz")]
    masks0 = _fake_shard(shard_paths[0], ["a.png", "b.png"])
    _fake_shard(shard_paths[1], ["c.png", "d.png"], seed=1)
    pd.DataFrame({"image": ["d.png", "a.png"], "group": ["cardiomegaly", "healthy"], "label": [1, 0],
                  "dice": [0.95, 0.96]}).to_csv(tmp_path / "cohort.csv", index=False)
    _autoencoder(tmp_path / "ae.pt")
    job = _job("cxr14_features", {"members": str(tmp_path / "cohort.csv"), "segmentations": shard_paths,
                                  "autoencoder": str(tmp_path / "ae.pt")},
               {"features": str(tmp_path / "features.npz")}, {}, tmp_path)
    execute(job, cxr14.features)
    with np.load(tmp_path / "features.npz") as f:
        assert f["names"].tolist() == ["d.png", "a.png"] and f["y"].tolist() == [1, 0]
        assert f["vectors"].shape == (2, 3 * 16 * 16) and f["codes"].shape == (2, 32)
        # one-hot of labels 1..3, flattened channel by channel
        np.testing.assert_array_equal(f["vectors"][1].reshape(3, 16, 16), [masks0[0] == c for c in (1, 2, 3)])
        # heart 4 columns wide, thorax from column 2 to 13: 4 / 12
        np.testing.assert_allclose(f["ctr"], [4 / 12, 4 / 12])


def test_features_refuse_a_cohort_image_without_segmentation(tmp_path):
    _fake_shard(tmp_path / "s0.npz", ["a.png"])
    pd.DataFrame({"image": ["a.png", "zz.png"], "group": ["healthy", "cardiomegaly"], "label": [0, 1],
                  "dice": [0.95, 0.96]}).to_csv(tmp_path / "cohort.csv", index=False)
    _autoencoder(tmp_path / "ae.pt")
    job = _job("cxr14_features", {"members": str(tmp_path / "cohort.csv"), "segmentations": [str(tmp_path / "s0.npz")],
                                  "autoencoder": str(tmp_path / "ae.pt")},
               {"features": str(tmp_path / "features.npz")}, {}, tmp_path)
    with pytest.raises(DataError, match="cohort.csv.*zz.png"):
        execute(job, cxr14.features)
    assert not (tmp_path / "features.npz").exists()


def test_cohort_table_has_this_run_and_the_published_row(tmp_path):
    names = [f"0000000{i}_000.png" for i in range(1, 7)]
    labels = ["Cardiomegaly", "Cardiomegaly|Edema", "No Finding", "No Finding", "No Finding", "Edema"]
    pd.DataFrame({"image": names, "patient_id": range(1, 7), "finding_labels": labels, "shard": 0}).to_csv(
        tmp_path / "manifest.csv", index=False)
    dice = [0.95, 0.91, 0.97, 0.96, 0.93, 0.99]  # the second cardiomegaly image fails QC at 0.92
    pd.DataFrame({"image": names, "dice": dice}).to_csv(tmp_path / "scores.csv", index=False)
    job = _job("cxr14_cohort", {"manifest": str(tmp_path / "manifest.csv"), "scores": str(tmp_path / "scores.csv"),
                                "published_labels": str(published_path(PUBLISHED_TABLE)),
                                "published_rca": str(published_path(PUBLISHED_RCA_DICE))},
               {"table": str(tmp_path / "cohort_table.csv"), "members": str(tmp_path / "members.csv")},
               {"seed": 0, "threshold": 0.92, "published_threshold": 0.92, "source_name": "synthetic"}, tmp_path)
    execute(job, cxr14.cohort)
    table = pd.read_csv(tmp_path / "cohort_table.csv").set_index("source")
    assert table.loc["published"].tolist() == [112120, 87870, 2019, 2019, 4038]
    assert table.loc["synthetic"].tolist() == [6, 5, 1, 1, 2]
    members = pd.read_csv(tmp_path / "members.csv")
    assert members.loc[members["group"] == "cardiomegaly", "image"].tolist() == [names[0]]
    assert members.loc[members["group"] == "healthy", "image"].isin(names[2:5]).all()
    record = json.loads(next((tmp_path / "prov").rglob("*.json")).read_text())
    assert record["cells"]["key_columns"] == ["source"]
    assert str(tmp_path / "scores.csv") not in record["cells"]["rows"]["published"]

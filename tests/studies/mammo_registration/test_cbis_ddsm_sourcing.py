"""CBIS-DDSM sourcing: layout checks in both layouts, errors that say what to fetch, an offline NBIA download."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from medrepro.data import sourcing
from medrepro.errors import DataError
from medrepro.studies.mammo_registration import datasets
from medrepro.studies.mammo_registration.readers import cbis_ddsm
from medrepro.studies.mammo_registration.synthetic import generate_cbis_ddsm

SIZE = (160, 96)
N_PATIENTS = 3


@pytest.fixture(scope="module", params=["nbia", "legacy"])
def generated(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param) / "raw"
    generate_cbis_ddsm(root, N_PATIENTS, seed=3, image_size=SIZE, layout=request.param)
    return root


@pytest.fixture
def raw(generated, tmp_path):
    """A private copy a test may damage."""
    return Path(shutil.copytree(generated, tmp_path / "raw"))


def expected_counts(root: Path) -> dict:
    """Independent of the check: counted from the CSV text with pandas."""
    frames = [pd.read_csv(root / name) for name in cbis_ddsm.CASE_DESCRIPTION_FILES.values()]
    table = pd.concat(frames, ignore_index=True)
    images = {path.strip().split("/")[0] for path in table["image file path"]}
    splits = [path.split("_P_")[0].split("-")[1] for path in table["image file path"]]
    cases = set(zip(splits, table["patient_id"]))
    return {"images": len(images), "roi_masks": len(table), "cases": len(cases)}


def test_registered_under_its_name():
    assert sourcing.dataset("CBIS-DDSM") is datasets.CBIS_DDSM
    assert datasets.CBIS_DDSM.download is datasets.download
    assert set(datasets.CASE_TABLE_URLS) == set(cbis_ddsm.CASE_DESCRIPTION_FILES.values())
    assert [s.expect for s in datasets.SOURCES[1:]] == list(cbis_ddsm.CASE_DESCRIPTION_FILES.values())


def test_generated_stand_in_passes_in_both_layouts(generated):
    counts = datasets.check_layout(generated)
    assert counts == expected_counts(generated)
    assert counts["images"] >= 2 and counts["roi_masks"] >= counts["images"] and counts["cases"] == N_PATIENTS
    assert sourcing.check_layout("CBIS-DDSM", generated) == counts


def test_missing_case_table_names_it_the_url_and_the_folder(raw):
    (raw / "calc_case_description_test_set.csv").unlink()
    with pytest.raises(DataError) as err:
        datasets.check_layout(raw)
    message = str(err.value)
    assert "calc_case_description_test_set.csv" in message
    assert "https://www.cancerimagingarchive.net/wp-content/uploads/calc_case_description_test_set.csv" in message
    assert datasets.COLLECTION_PAGE in message and f"put it under {raw}/" in message
    assert "mass_case_description_train_set.csv" not in message  # only what is missing
    assert "NBIA" not in message  # the DICOMs are there: not asked for


def test_missing_tables_and_dicoms_ask_for_everything(tmp_path):
    raw = tmp_path / "empty"
    raw.mkdir()
    with pytest.raises(DataError) as err:
        datasets.check_layout(raw)
    message = str(err.value)
    for name in cbis_ddsm.CASE_DESCRIPTION_FILES.values():
        assert name in message
    assert datasets.RETRIEVER_MANIFEST in message and datasets.COLLECTION_PAGE in message
    with pytest.raises(DataError, match="raw folder not found") as err:
        datasets.check_layout(tmp_path / "absent")
    assert datasets.COLLECTION_PAGE in str(err.value)


@pytest.mark.parametrize("which", ["image", "lesion"])
def test_missing_subject_folder_is_named(raw, which):
    subjects = cbis_ddsm.index_subjects(raw)
    names = [name for name in subjects if (cbis_ddsm.parse_subject(name).abnormality_id is None) == (which == "image")]
    gone = names[0]
    shutil.rmtree(subjects[gone])
    with pytest.raises(DataError) as err:
        datasets.check_layout(raw)
    message = str(err.value)
    assert gone in message and "no DICOM folder for 1 of the" in message
    assert datasets.COLLECTION_PAGE in message and datasets.RETRIEVER_MANIFEST in message
    assert f"put it under {raw}/" in message


def test_subject_folder_without_dicom_counts_as_missing(raw):
    subjects = cbis_ddsm.index_subjects(raw)
    name = sorted(subjects)[0]
    for path in cbis_ddsm.subject_dicoms(subjects[name]):
        path.unlink()
    with pytest.raises(DataError, match=name):
        datasets.check_layout(raw)


# ---------------------------------------------------------------- the NBIA download, served offline


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def nbia_server(source: Path) -> dict[str, bytes]:
    """URL -> bytes, as TCIA would answer for the legacy-layout copy ``source``."""
    served, listing = {}, []
    for name in cbis_ddsm.CASE_DESCRIPTION_FILES.values():
        served[datasets.CASE_TABLE_URLS[name][0]] = (source / name).read_bytes()
    for subject, folder in sorted(cbis_ddsm.index_subjects(source).items()):
        for series in sorted(p.parent for p in cbis_ddsm.subject_dicoms(folder)):
            study_uid, series_uid = series.parent.name, series.name
            listing.append({"PatientID": subject, "StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid,
                            "Collection": "CBIS-DDSM", "Modality": "MG"})
            served[datasets.series_image_url(series_uid)] = zip_bytes(
                {p.name: p.read_bytes() for p in series.iterdir()})
    served[datasets.series_list_url()] = json.dumps(listing).encode()
    return served


@pytest.fixture
def serve(monkeypatch):
    """Replace the network: ``serve(table)`` answers URLs from ``table``, anything else fails as offline."""
    requested = []

    def install(table: dict[str, bytes]):
        def fake_download(url, target, sha256=None, md5=None, timeout=60):
            requested.append(url)
            if url not in table:
                raise DataError(url, "download failed: <urlopen error offline>")
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(table[url])
            return target
        monkeypatch.setattr(sourcing, "download", fake_download)
        return requested
    return install


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    root = tmp_path_factory.mktemp("legacy-source") / "raw"
    generate_cbis_ddsm(root, N_PATIENTS, seed=5, image_size=SIZE, layout="legacy")
    return root


def dataset_files(root: Path) -> dict[str, bytes]:
    skip = {sourcing.MANIFEST_FILE, "synthetic_truth.csv"}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
            and p.name not in skip}


def test_download_writes_the_legacy_layout_that_reads_back(legacy, tmp_path, serve):
    requested = serve(nbia_server(legacy))
    raw = tmp_path / "downloaded"
    assert datasets.download(raw) == raw
    assert dataset_files(raw) == dataset_files(legacy)  # same files, same bytes, same places
    assert not (raw / ".downloads").exists()
    assert datasets.check_layout(raw) == datasets.check_layout(legacy)
    tables = cbis_ddsm.case_description_paths(raw)
    boxes = cbis_ddsm.with_lesion_boxes(cbis_ddsm.resolve_files(cbis_ddsm.read_case_descriptions(tables), raw))
    reference = cbis_ddsm.with_lesion_boxes(cbis_ddsm.resolve_files(
        cbis_ddsm.read_case_descriptions(cbis_ddsm.case_description_paths(legacy)), legacy))
    box_columns = ["box_x1", "box_y1", "box_x2", "box_y2"]
    assert len(boxes) == datasets.check_layout(raw)["roi_masks"]
    assert boxes[box_columns].equals(reference[box_columns])
    # resumed: everything in place, only the listing is asked for again
    requested.clear()
    datasets.download(raw)
    assert requested == [datasets.series_list_url()]
    assert dataset_files(raw) == dataset_files(legacy)


def test_download_through_obtain_pins_what_arrived(legacy, tmp_path, serve):
    serve(nbia_server(legacy))
    raw = tmp_path / "downloaded"
    summary = sourcing.obtain("CBIS-DDSM", raw, tmp_path / "pins" / "raw.sha256", mode="download")
    assert "first use" in summary["message"]
    assert summary["files"] == len(dataset_files(legacy))
    assert summary["cases"] == N_PATIENTS


def test_case_tables_fall_back_to_the_wiki_urls(legacy, tmp_path, serve):
    table = nbia_server(legacy)
    for name, urls in datasets.CASE_TABLE_URLS.items():
        table[urls[1]] = table.pop(urls[0])
    serve(table)
    datasets.download(tmp_path / "raw")
    assert datasets.check_layout(tmp_path / "raw")["cases"] == N_PATIENTS


def test_unreachable_api_says_where_to_get_the_data(legacy, tmp_path, serve):
    table = nbia_server(legacy)
    del table[datasets.series_list_url()]
    serve(table)
    with pytest.raises(DataError, match="download failed") as err:
        datasets.download(tmp_path / "raw")
    assert datasets.RETRIEVER_MANIFEST in str(err.value)
    serve({})
    with pytest.raises(DataError, match="all downloads failed") as err:
        datasets.download(tmp_path / "other")
    assert "mass_case_description_train_set.csv" in str(err.value) and datasets.COLLECTION_PAGE in str(err.value)


def test_unsafe_zip_member_is_refused_and_leaves_no_series(legacy, tmp_path, serve):
    table = nbia_server(legacy)
    listing = json.loads(table[datasets.series_list_url()])
    first = sorted(listing, key=lambda e: (e["PatientID"], e["StudyInstanceUID"], e["SeriesInstanceUID"]))[0]
    table[datasets.series_image_url(first["SeriesInstanceUID"])] = zip_bytes({"../../../escaped.dcm": b"x"})
    serve(table)
    raw = tmp_path / "area" / "raw"
    with pytest.raises(DataError, match="outside"):
        datasets.download(raw)
    assert not list((tmp_path / "area").rglob("escaped.dcm"))
    assert not (raw / first["PatientID"] / first["StudyInstanceUID"] / first["SeriesInstanceUID"]).exists()
    assert not [p for p in raw.rglob("*") if p.name.startswith(".") and p.name != ".downloads"]


def test_series_without_dicom_is_an_error(legacy, tmp_path, serve):
    table = nbia_server(legacy)
    uid = json.loads(table[datasets.series_list_url()])[0]["SeriesInstanceUID"]
    table[datasets.series_image_url(uid)] = zip_bytes({"LICENSE": b"CC BY 3.0"})
    serve(table)
    with pytest.raises(DataError, match=f"series {uid}.*holds no .dcm"):
        datasets.download(tmp_path / "raw")


@pytest.mark.parametrize("entry, problem", [
    ({"PatientID": "../../etc", "StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.3"}, "not a CBIS-DDSM SubjectID"),
    ({"PatientID": "Mass-Test_P_00001_LEFT_CC", "StudyInstanceUID": "1.2/..", "SeriesInstanceUID": "1.3"},
     "StudyInstanceUID .* is not a DICOM UID"),
    ({"PatientID": "Mass-Test_P_00001_LEFT_CC", "StudyInstanceUID": "1.2"}, "SeriesInstanceUID None"),
    ("Mass-Test_P_00001_LEFT_CC", "not an object"),
])
def test_series_list_entries_are_checked_before_becoming_folders(tmp_path, entry, problem):
    path = tmp_path / "series.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(DataError, match=problem):
        datasets.read_series_list(path)


def test_empty_or_malformed_series_list(tmp_path):
    path = tmp_path / "series.json"
    path.write_text("[]")
    with pytest.raises(DataError, match="lists no series"):
        datasets.read_series_list(path)
    path.write_text("<html>maintenance</html>")
    with pytest.raises(DataError, match="JSON"):
        datasets.read_series_list(path)


def test_urls_are_the_public_nbia_endpoints():
    assert datasets.series_list_url() == (
        "https://services.cancerimagingarchive.net/nbia-api/services/v1/getSeries?Collection=CBIS-DDSM")
    assert datasets.series_image_url("1.3.6.1.4.1.9590.100.1.2.1") == (
        "https://services.cancerimagingarchive.net/nbia-api/services/v1/getImage?"
        "SeriesInstanceUID=1.3.6.1.4.1.9590.100.1.2.1")


# ---------------------------------------------------------------- the obtain step


def test_obtain_synthetic_verifies_the_generator_manifest(raw, tmp_path):
    out = tmp_path / "mammo" / "raw_manifest.sha256"
    summary = sourcing.obtain("CBIS-DDSM", raw, out, mode="synthetic")
    assert {key: summary[key] for key in ("images", "roi_masks", "cases")} == expected_counts(raw)
    assert summary["files"] == len(sourcing.read_manifest(raw / sourcing.MANIFEST_FILE))
    assert out.read_text() == (raw / sourcing.MANIFEST_FILE).read_text()
    dicom = sorted(raw.rglob("*.dcm"))[0]
    dicom.write_bytes(dicom.read_bytes()[:-1] + b"\1")
    out.unlink()
    with pytest.raises(DataError, match="sha256 mismatch") as err:
        sourcing.obtain("CBIS-DDSM", raw, out, mode="synthetic")
    assert dicom.relative_to(raw).as_posix() in str(err.value)
    assert not out.exists()

"""The chest datasets' descriptions for the kernel's sourcing: what to download, from where, where it goes.

JSRT (with the SCR masks), Montgomery and Shenzhen are registered with
:func:`medrepro.data.sourcing.register`; the layout checks here say exactly which
part is missing, and the NLM sets can be downloaded (the others need a
registration on their sites).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from medrepro.errors import DataError, name_list
from medrepro.data.sourcing import Dataset, Source, download, instructions, register, safe_extract
from medrepro.studies.chest.readers import jsrt, montgomery, shenzhen

log = logging.getLogger(__name__)

DATASET_SOURCES: dict[str, tuple[Source, ...]] = {
    "JSRT": (
        Source(
            what="JSRT digital image database (247 chest radiographs, 2048 x 2048 .IMG files)",
            urls=("http://db.jsrt.or.jp/eng.php",),
            access="free registration with the Japanese Society of Radiological Technology; no automatic download",
            automatic=False,
            put_under="images",
            expect="JPCLN001.IMG .. JPCLN154.IMG, JPCNN001.IMG .. JPCNN093.IMG, and CLNDAT_EN.txt, CNNDAT_EN.TXT",
        ),
        Source(
            what="SCR database (Segmentation in Chest Radiographs): lung, heart and clavicle masks for JSRT",
            urls=("https://www.isi.uu.nl/Research/Databases/SCR/",),
            access="registration on the SCR site (Image Sciences Institute, UMC Utrecht); no automatic download",
            automatic=False,
            put_under="scr",
            expect="scratch/fold1/masks/<organ>/<NAME>.gif and scratch/fold2/masks/<organ>/<NAME>.gif, organ "
            "folders 'right lung', 'left lung', 'heart' (1024 x 1024 GIFs)",
        ),
    ),
    "Montgomery": (
        Source(
            what="Montgomery County chest X-ray set (138 PNGs, lung masks, clinical readings)",
            urls=(
                "https://data.lhncbc.nlm.nih.gov/public/Tuberculosis-Chest-X-ray-Datasets/"
                "Montgomery-County-CXR-Set/MontgomerySet/index.html",
                "http://openi.nlm.nih.gov/imgs/collections/NLM-MontgomeryCXRSet.zip",
            ),
            access="public, no login: the NLM open directory or the legacy zip",
            automatic=True,
            put_under=".",
            expect="MontgomerySet/CXR_png/*.png, MontgomerySet/ManualMask/leftMask/*.png, "
            "MontgomerySet/ManualMask/rightMask/*.png, MontgomerySet/ClinicalReadings/*.txt",
        ),
    ),
    "Shenzhen": (
        Source(
            what="Shenzhen Hospital chest X-ray set (662 PNGs and clinical readings)",
            urls=(
                "https://data.lhncbc.nlm.nih.gov/public/Tuberculosis-Chest-X-ray-Datasets/"
                "Shenzhen-Hospital-CXR-Set/index.html",
                "http://openi.nlm.nih.gov/imgs/collections/ChinaSet_AllFiles.zip",
            ),
            access="public, no login: the NLM open directory or the legacy zip",
            automatic=True,
            put_under=".",
            expect="ChinaSet_AllFiles/CXR_png/*.png, ChinaSet_AllFiles/ClinicalReadings/*.txt",
        ),
        Source(
            what="Shenzhen lung masks (shcxr-lung-mask, 566 binary masks for both lungs)",
            urls=("https://www.kaggle.com/datasets/yoctoman/shcxr-lung-mask",),
            access="Kaggle account required; no automatic download",
            automatic=False,
            put_under="shcxr-lung-mask",
            expect="mask/CHNCXR_0001_0_mask.png ... (one mask per image, image-sized)",
        ),
    ),
}

#: Archives the ``download`` mode tries, in order. No checksums are published
#: for them; the manifest written after unpacking pins what was received.
NLM_ARCHIVES: dict[str, tuple[str, ...]] = {
    "Montgomery": (
        "https://data.lhncbc.nlm.nih.gov/public/Tuberculosis-Chest-X-ray-Datasets/"
        "Montgomery-County-CXR-Set/MontgomerySet/NLM-MontgomeryCXRSet.zip",
        "http://openi.nlm.nih.gov/imgs/collections/NLM-MontgomeryCXRSet.zip",
    ),
    "Shenzhen": (
        "https://data.lhncbc.nlm.nih.gov/public/Tuberculosis-Chest-X-ray-Datasets/"
        "Shenzhen-Hospital-CXR-Set/ChinaSet_AllFiles.zip",
        "http://openi.nlm.nih.gov/imgs/collections/ChinaSet_AllFiles.zip",
    ),
}


def _check_jsrt(raw_root: Path) -> dict:
    images_dir, scr_root = raw_root / "images", raw_root / "scr"
    images = jsrt.list_jsrt_images(images_dir)
    if not images:
        raise DataError(images_dir, "no JSRT images (*.IMG). " + instructions("JSRT", raw_root, (0,)))
    strangers = [p.name for p in images if not jsrt.is_jsrt_name(p.stem)]
    if strangers:
        raise DataError(images_dir, f"not JSRT image names (JPCLNnnn.IMG, JPCNNnnn.IMG): {name_list(strangers)}")
    wrong = [f"{p.name} ({p.stat().st_size} bytes)" for p in images if p.stat().st_size != jsrt.JSRT_BYTES]
    if wrong:
        raise DataError(
            images_dir,
            f"JSRT images must be exactly {jsrt.JSRT_BYTES} bytes; wrong size: {name_list(wrong)}. "
            "Re-download them: " + instructions("JSRT", raw_root, (0,)),
        )
    missing = []
    for path in images:
        name = path.stem.upper()
        for organ in jsrt.SCR_ORGANS:
            try:
                jsrt.find_scr_mask(scr_root, name, organ)
            except DataError as exc:
                missing.append(f"{name} ({organ}: expected {exc.path})")
    if missing:
        raise DataError(
            scr_root,
            f"SCR masks missing for {len(missing)} image/organ pairs: {name_list(missing, 3)}. "
            + instructions("JSRT", raw_root, (1,)),
        )
    return {"images": len(images), "masks": len(images)}


def _check_montgomery(raw_root: Path) -> dict:
    images = montgomery.list_montgomery_images(raw_root)
    folder = montgomery.montgomery_dir(raw_root)
    if not images:
        raise DataError(folder / "CXR_png", "no Montgomery images (*.png). " + instructions("Montgomery", raw_root))
    missing = [
        f"{p.stem} ({mask_folder})"
        for p in images
        for mask_folder in montgomery.MASK_FOLDERS
        if not montgomery.montgomery_mask_path(raw_root, p.stem, mask_folder).is_file()
    ]
    if missing:
        raise DataError(
            folder / "ManualMask",
            f"lung masks missing for {len(missing)} image/mask pairs: {name_list(missing)}. "
            + instructions("Montgomery", raw_root),
        )
    return {"images": len(images), "masks": len(images)}


def _check_shenzhen(raw_root: Path) -> dict:
    images = shenzhen.list_shenzhen_images(raw_root)
    if not images:
        raise DataError(
            shenzhen.shenzhen_dir(raw_root) / "CXR_png",
            "no Shenzhen images (*.png). " + instructions("Shenzhen", raw_root, (0,)),
        )
    mask_root = raw_root / "shcxr-lung-mask"
    with_mask, without_mask = shenzhen.shenzhen_mask_coverage(raw_root, mask_root)
    if not with_mask:
        raise DataError(
            shenzhen.shenzhen_mask_dir(mask_root),
            f"no lung masks for any of the {len(images)} Shenzhen images. " + instructions("Shenzhen", raw_root, (1,)),
        )
    if without_mask:
        log.info("Shenzhen: %d of %d images have a lung mask; %d without one will be skipped",
                 len(with_mask), len(images), len(without_mask))
    return {"images": len(images), "masks": len(with_mask), "without_mask": len(without_mask)}


def download_nlm(dataset: str, raw_root: str | Path) -> Path:
    """Fetch and unpack the NLM archive of Montgomery or Shenzhen into ``raw_root``.

    Tries each known URL in turn (no checksums are published for these
    archives). The Shenzhen lung masks are a separate, login-only release:
    they must still be placed by hand (the layout check says where).
    """
    raw_root = Path(raw_root)
    downloads = raw_root / ".downloads"
    errors = []
    for url in NLM_ARCHIVES[dataset]:
        archive = downloads / url.rsplit("/", 1)[-1]
        try:
            if not archive.is_file():
                download(url, archive)
            break
        except DataError as exc:
            errors.append(str(exc))
    else:
        raise DataError(
            raw_root, "all downloads failed (" + "; ".join(errors) + "). " + instructions(dataset, raw_root, (0,))
        )
    safe_extract(archive, raw_root)
    archive.unlink()  # unpacked; the manifest written next pins what was received
    return raw_root


def _nlm_download(dataset: str):
    return functools.partial(download_nlm, dataset)


JSRT = register(Dataset("JSRT", DATASET_SOURCES["JSRT"], _check_jsrt))
MONTGOMERY = register(Dataset("Montgomery", DATASET_SOURCES["Montgomery"], _check_montgomery,
                              _nlm_download("Montgomery")))
SHENZHEN = register(Dataset("Shenzhen", DATASET_SOURCES["Shenzhen"], _check_shenzhen, _nlm_download("Shenzhen")))
DATASETS = {d.name: d for d in (JSRT, MONTGOMERY, SHENZHEN)}

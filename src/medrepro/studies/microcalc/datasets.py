"""INbreast for the kernel's sourcing: what is needed, where it goes, and the check that it is there.

INbreast (Moreira et al., Acad. Radiol. 2012; 410 full-field digital mammograms of 115 cases, Centro Hospitalar
de S. Joao, Porto) is distributed on request by its authors, so there is no download: the user places the
release (:mod:`.readers.inbreast`: ``AllDICOMs/``, ``AllXML/`` and ``INbreast.csv``, at the top of the raw
directory or in the release's own ``INbreast Release 1.0/`` folder under it) and the obtain step verifies it in
``verify`` mode, pinning its digests at first use (:mod:`medrepro.provenance.pinning`) and stopping on any later
change. :func:`check_layout` says which part is missing and reads every annotation file once, so a damaged one
stops the run before any image is read. Registered as ``INbreast``.

A site's own annotated mammograms (as the paper's 283) come as a plain folder of images with binary masks
(:mod:`.readers.masks_dir`), verified the same way and registered as ``calcification_masks``.
"""

from __future__ import annotations

from pathlib import Path

from medrepro.data.sourcing import Dataset, Source, instructions, register
from medrepro.errors import DataError
from medrepro.studies.microcalc.readers import inbreast, masks_dir

NAME = "INbreast"
SITE = "http://medicalresearch.inescporto.pt/breastresearch/index.php/Get_INbreast_Database"
ACCESS = ("on request from the authors (INESC TEC / University of Porto): fill in their form, receive a download "
          "link; cite Moreira et al., Acad. Radiol. 19(2):236-248, 2012")

SOURCES = (Source(
    what="INbreast release (410 DICOM mammograms, XML annotations and the case table)",
    urls=(SITE,),
    access=ACCESS,
    automatic=False,
    put_under=".",
    expect=f"{inbreast.DICOM_DIR}/<FileName>_<16 hex>_MG_<L|R>_<CC|ML>_ANON.dcm, {inbreast.XML_DIR}/<FileName>.xml "
           f"and {inbreast.TABLE_FILE} (the contents of 'INbreast Release 1.0', or that folder itself)",
),)


def check_layout(raw_root: str | Path) -> dict:
    """The table, every image it lists and every annotation file readable; counts of images, annotation files
    and images with calcifications."""
    raw_root = Path(raw_root)
    root = inbreast.find_root(raw_root)
    for part in (inbreast.TABLE_FILE, inbreast.DICOM_DIR):
        if not (root / part).exists():
            raise DataError(root / part, f"INbreast's {part} not found. " + instructions(NAME, raw_root))
    entries = inbreast.index_inbreast(root)
    if not entries:
        raise DataError(root / inbreast.TABLE_FILE, "lists no image. " + instructions(NAME, raw_root))
    annotated = [entry for entry in entries if entry.xml is not None]
    with_calcifications = sum(any(roi.is_calcification for roi in inbreast.read_rois(entry.xml))
                              for entry in annotated)
    return {"images": len(entries), "annotations": len(annotated), "calcification_images": with_calcifications}


register(Dataset(name=NAME, sources=SOURCES, check_layout=check_layout))


MASKS_NAME = "calcification_masks"
MASKS_SOURCES = (Source(
    what="annotated mammograms of your own site (one binary calcification mask per image)",
    urls=("your site's archive",),
    access="not public: the paper's 283 images were private as well",
    automatic=False,
    put_under=".",
    expect=f"<name>.dcm or <name>.png with <name>{masks_dir.MASK_SUFFIX} beside each, and optionally "
           f"{masks_dir.TABLE_FILE} ({','.join(masks_dir.TABLE_COLUMNS)})",
),)


def check_masks_layout(raw_root: str | Path) -> dict:
    """Every image paired with its mask and the table (if any) consistent with the files; the count of images."""
    raw_root = Path(raw_root)
    if not raw_root.is_dir():
        raise DataError(raw_root, "no such folder. " + instructions(MASKS_NAME, raw_root))
    entries = masks_dir.index_masks_dir(raw_root)
    if not entries:
        raise DataError(raw_root, "holds no image. " + instructions(MASKS_NAME, raw_root))
    return {"images": len(entries), "annotations": len(entries)}


register(Dataset(name=MASKS_NAME, sources=MASKS_SOURCES, check_layout=check_masks_layout))
#: The registered dataset of each source format (the config's ``dataset.format``).
BY_FORMAT = {"inbreast": NAME, "masks_dir": MASKS_NAME}

"""Readers (and the stand-in writers) of the study's native format: CBIS-DDSM case tables and DICOM folders."""

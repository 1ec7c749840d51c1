"""Readers (and the stand-in's writers) of the study's native format: BraTS-Reg 2022 (:mod:`.brats_reg`)."""

"""Domain code that two or more studies use (a mammogram reader, a breast phantom, ...), below every study.

It may import the kernel, never a study. Code moves here from a study the
moment a second study needs it; until then it stays in the study that owns it.
"""

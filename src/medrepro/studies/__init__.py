"""One package per paper: its datasets' readers and stand-ins, networks, losses, steps, tables and figures.

A study imports the kernel (``medrepro.*`` outside ``studies``) and
``medrepro.shared``, never another study: studies exchange files through the
workflow. ``tests/kernel/test_import_boundaries.py`` keeps it so.
"""

"""Loaded by every Python process of a benchmarked run (benchmarks/bench_job_overhead.py puts this folder first on
PYTHONPATH): times the first import of each watched library and, when the process was a workflow job, appends
its rule, wildcards and import seconds to the file named by MEDREPRO_IMPORT_LOG."""

import atexit
import builtins
import json
import os
import sys
import time

WATCHED = ("torch", "monai", "itk", "scipy", "sklearn", "matplotlib", "pandas", "numpy", "SimpleITK", "pydicom",
           "snakemake", "medpy", "PIL", "rocrate")
_seconds: dict[str, float] = {}
_original_import = builtins.__import__
_depth = [0]


def _timed_import(name, globals=None, locals=None, fromlist=(), level=0):
    top = name.partition(".")[0]
    if level or top not in WATCHED or top in _seconds or top in sys.modules or _depth[0]:
        return _original_import(name, globals, locals, fromlist, level)
    _depth[0] += 1  # only the outermost watched import is timed: nested ones count inside it
    start = time.perf_counter()
    try:
        return _original_import(name, globals, locals, fromlist, level)
    finally:
        _depth[0] -= 1
        _seconds[top] = _seconds.get(top, 0.0) + time.perf_counter() - start


def _process_start_time() -> float:
    import psutil  # as the job records take their process start (medrepro.provenance.records.process_started)

    return psutil.Process().create_time()


def _report():
    job = getattr(sys.modules.get("__main__"), "snakemake", None)  # the script preamble's job object
    target = os.environ.get("MEDREPRO_IMPORT_LOG")
    if job is None or not target:
        return
    line = {"rule": job.rule, "wildcards": dict(job.wildcards.items()), "imports": _seconds,
            "lifetime_s": time.time() - _process_start_time()}
    with open(target, "a") as log:
        log.write(json.dumps(line) + "\n")


if os.environ.get("MEDREPRO_IMPORT_LOG"):
    builtins.__import__ = _timed_import
    atexit.register(_report)

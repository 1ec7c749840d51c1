"""Every rule's wiring: it runs scripts/step.py and names a step function that exists."""

import re

from medrepro.pipeline.runner import resolve_step

from conftest import REPO


def test_every_rule_names_a_step_that_exists():
    rules = sorted((REPO / "workflow/rules").glob("*/*.smk"))
    steps = [m for path in rules for m in re.findall(r'step="([\w.:]+)"', path.read_text())]
    scripts = [m for path in rules for m in re.findall(r'script:\n\s+"([^"]+)"', path.read_text())]
    assert len(steps) == len(scripts) >= 30
    assert set(scripts) == {"../../../scripts/step.py"}
    for name in steps:
        assert callable(resolve_step(name)), name

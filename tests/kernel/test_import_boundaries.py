"""The package's layers: the kernel knows no study, shared code knows no study, studies know no other study.

Every module under ``src/medrepro`` is parsed (not imported) and each of its
imports, at any depth (inside functions too), is resolved to a module name,
relative imports included. A violation names the importing file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "src" / "medrepro"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = ["medrepro", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, module) for every import in ``path``; ``from a import b`` yields ``a.b`` as well as ``a``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def layer(module: str) -> tuple[str, str | None]:
    """('kernel', None), ('shared', None) or ('study', <name>) for a medrepro module; ('external', None) else."""
    parts = module.split(".")
    if parts[0] != "medrepro":
        return "external", None
    if len(parts) > 1 and parts[1] == "studies":
        return ("study", parts[2]) if len(parts) > 2 else ("studies", None)
    if len(parts) > 1 and parts[1] == "shared":
        return "shared", None
    return "kernel", None


def violations(root: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path, root)
        kind, study = layer(importer)
        reported = set()
        for line, target in imported_modules(path, root):
            if line in reported:
                continue  # one message per import statement
            target_kind, target_study = layer(target)
            where = f"{path.relative_to(root.parent)}:{line} imports {target}"
            if kind in ("kernel", "shared") and target_kind in ("study", "studies"):
                problems.append(f"{where}: the {kind} must not import a study")
                reported.add(line)
            elif kind == "study" and target_kind == "study" and target_study != study:
                problems.append(f"{where}: study {study!r} must not import study {target_study!r} (exchange files)")
                reported.add(line)
    return problems


def test_the_kernel_and_shared_code_import_no_study_and_studies_import_no_other_study():
    assert violations() == []


def kernel_test_violations(root: Path = REPO / "tests" / "kernel") -> list[str]:
    """Imports of a study (or of the studies package) by a kernel test: the kernel is tested on its own."""
    problems = {}
    for path in sorted(root.rglob("*.py")):
        for line, target in imported_modules(path, root):
            if layer(target)[0] in ("study", "studies"):  # one message per import statement
                problems.setdefault((path, line), f"{path.relative_to(root.parent)}:{line} imports {target}: "
                                                  "kernel tests must not import a study")
    return list(problems.values())


def test_kernel_tests_import_no_study(tmp_path):
    assert kernel_test_violations() == []
    (tmp_path / "test_leak.py").write_text("def test_x():\n    from medrepro.studies.chest import steps\n")
    (found,) = kernel_test_violations(tmp_path)
    assert "test_leak.py:2 imports medrepro.studies.chest" in found and "must not import a study" in found


@pytest.mark.parametrize("offender, source, expected", [
    ("metrics/leak.py", "from medrepro.studies.chest import networks\n", "the kernel must not import a study"),
    ("leak.py", "def f():\n    import medrepro.studies.chest.steps\n", "the kernel must not import a study"),
    ("shared/leak.py", "from medrepro.studies import chest\n", "the shared must not import a study"),
    ("studies/mammo/leak.py", "from medrepro.studies.chest.losses import RegistrationLoss\n",
     "study 'mammo' must not import study 'chest'"),
    ("studies/mammo/deep/leak.py", "from ...chest import steps\n", "study 'mammo' must not import study 'chest'"),
])
def test_a_violation_is_found_and_named(tmp_path, offender, source, expected):
    root = tmp_path / "medrepro"
    for package in ("", "metrics", "shared", "studies", "studies/chest", "studies/mammo", "studies/mammo/deep"):
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text("")
    (root / "studies/chest/steps.py").write_text("from medrepro.spatial.warp import warp\n")  # a study may use the kernel
    (root / "studies/mammo/ok.py").write_text("from medrepro.shared import breast\nfrom . import ok\n")
    assert violations(root) == []
    (root / offender).write_text(source)
    found = violations(root)
    assert len(found) == 1 and expected in found[0] and offender in found[0]

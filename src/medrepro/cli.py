"""The ``medrepro`` command line.

    medrepro provenance results/tables/chest_registration.csv --row JSRT/AC-RegNet --column dsc_mean
    medrepro provenance results/tables/chest_registration.csv --row JSRT/AC-RegNet --column dsc_mean --json
    medrepro provenance --export results/provenance.crate.zip --results results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medrepro.errors import MedreproError


def _default_provenance_dir(table: Path) -> Path:
    """Tables live in <results>/tables/, records in <results>/provenance/."""
    return table.resolve().parent.parent / "provenance"


def cmd_provenance(args: argparse.Namespace) -> int:
    from medrepro.provenance import explain_cell, format_explanation, normpath

    if args.export:
        return cmd_export(args)
    missing = [name for name, value in (("TABLE", args.table), ("--row", args.row), ("--column", args.column))
               if value is None]
    if missing:
        args.parser.error(f"missing {', '.join(missing)} (required unless --export is given)")
    table = Path(args.table)
    if not table.exists():
        raise MedreproError(f"{table}: no such table")
    prov_dir = Path(args.provenance_dir) if args.provenance_dir else _default_provenance_dir(table)
    expl = explain_cell(prov_dir, normpath(table), args.row, args.column)
    if args.json:
        for step in expl["steps"]:
            step.pop("job", None) if not args.full else None
        json.dump(expl, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(format_explanation(expl, verbose_packages=not args.brief))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import time

    from medrepro.crate import export_crate

    if args.table or args.row or args.column:
        args.parser.error("--export writes the whole run; it takes no TABLE, --row or --column")
    results = Path(args.results) if args.results else (
        Path(args.provenance_dir).parent if args.provenance_dir else Path("results"))
    prov_dir = Path(args.provenance_dir) if args.provenance_dir else results / "provenance"
    start = time.perf_counter()
    out = export_crate(prov_dir, args.export, results_dir=results)
    print(f"{out}: Workflow Run RO-Crate, {out.stat().st_size / 1e6:.2f} MB, "
          f"written in {time.perf_counter() - start:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medrepro", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prov = sub.add_parser("provenance", help="trace a table cell back to the data, code and settings that made it")
    prov.add_argument("table", nargs="?", help="a generated table (CSV); not with --export")
    prov.add_argument("--row", help="row key, the table's key columns joined by '/', e.g. JSRT/AC-RegNet")
    prov.add_argument("--column", help="column name, e.g. dsc_mean")
    prov.add_argument("--provenance-dir", help="records directory (default: <results>/provenance)")
    prov.add_argument("--json", action="store_true", help="machine-readable output")
    prov.add_argument("--full", action="store_true", help="with --json: include every full job record")
    prov.add_argument("--brief", action="store_true", help="omit package versions")
    prov.add_argument("--export", metavar="ZIP",
                      help="write every record of the run as a Workflow Run RO-Crate zip instead")
    prov.add_argument("--results", help="with --export: the results directory (default: results)")
    prov.set_defaults(func=cmd_provenance, parser=prov)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MedreproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``medrepro`` command line.

    medrepro provenance results/tables/chest_registration.csv --row JSRT/AC-RegNet --column dsc_mean
    medrepro provenance results/tables/chest_registration.csv --row JSRT/AC-RegNet --column dsc_mean --json
    medrepro provenance --export results/provenance.crate.zip --results results
    medrepro data repin JSRT --raw-dir DIR --pin FILE --verified-copy FILE --reason "corrected masks"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from medrepro.errors import MedreproError

SIGPIPE_STATUS = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader went away


def _default_provenance_dir(table: Path) -> Path:
    """Tables live in <results>/tables/, records in <results>/provenance/."""
    return table.resolve().parent.parent / "provenance"


def cmd_provenance(args: argparse.Namespace) -> int:
    from medrepro.provenance.records import explain_cell, format_explanation, normpath, read_table

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
    if not args.provenance_dir and not (prov_dir / "jobs").is_dir():
        read_table(table)  # a file that is no table is named as such first
        raise MedreproError(f"{table}: no provenance records in {prov_dir / 'jobs'}, where a table in "
                            "<results_dir>/tables/ has them; give --provenance-dir <results_dir>/provenance")
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

    from medrepro.provenance.crate import export_crate

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


def cmd_data_repin(args: argparse.Namespace) -> int:
    from medrepro.provenance.pinning import repin

    repin(args.dataset, args.raw_dir, args.pin, reason=args.reason, verified_copies=args.verified_copy)
    return 0


def add_data_parser(sub) -> None:
    """``medrepro data repin``: accept a dataset's changed raw files on purpose (the workflow stops on any change)."""
    data = sub.add_parser("data", help="raw data pins: accept a changed dataset on purpose")
    actions = data.add_subparsers(dest="action", required=True)
    repin = actions.add_parser(
        "repin", help="make the files now in a raw directory its pin, listing and logging every difference",
        description="The command to copy is printed by the check that stopped the workflow.")
    repin.add_argument("dataset", help="the dataset's name, as the message that stopped the workflow gives it")
    repin.add_argument("--raw-dir", required=True, help="the dataset's raw directory")
    repin.add_argument("--pin", required=True, help="its pin (a sha256sum manifest)")
    repin.add_argument("--verified-copy", action="append", default=[],
                       help="the obtain step's copy of the old pin, removed so that the next run verifies again")
    repin.add_argument("--reason", help="why the data changed (kept in the pin's log)")
    repin.set_defaults(func=cmd_data_repin, parser=repin)


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
    add_data_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()  # here, so that a closed pipe is met inside this try
        return status
    except MedreproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader stopped early (`| head`): not an error of ours. Stop quietly, with the status of a
        # process ended by SIGPIPE, and point stdout at /dev/null so that the flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return SIGPIPE_STATUS


if __name__ == "__main__":
    sys.exit(main())

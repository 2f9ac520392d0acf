"""``python -m conformance audit TARGET [--like ENTRY] [--kwargs k=v ...] [--contract ...]``,
``python -m conformance report [--dir reports] [--name conformance]`` and
``python -m conformance measured [--report reports/conformance.json] [FILE ...]``."""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def report_main(argv: Sequence[str]) -> int:
    """Merge the slice reports of a ``--splits N`` run into NAME.{json,md}; exit 1, with one line
    naming the files, when they are not the N groups of one run."""
    from conformance import report

    parser = argparse.ArgumentParser(
        prog="python -m conformance report",
        description="Merge reports/NAME.slice-K-of-N.json (one per CI machine) into NAME.json and "
        "NAME.md, refusing slices of different runs or an incomplete set.",
    )
    parser.add_argument("--dir", type=Path, default=Path("reports"), help="default: reports")
    parser.add_argument("--name", default="conformance", help="report name (default: conformance)")
    args = parser.parse_args(argv)
    try:
        table = report.merge_slices(args.dir, args.name)
    except report.SliceError as e:
        print(f"conformance report: {e}", file=sys.stderr)
        return 1
    print(report.markdown(table), end="")
    print(f"conformance report: wrote {args.dir / args.name}.json and .md ({len(table)} rows)")
    return 0


def measured_main(argv: Sequence[str]) -> int:
    """Rewrite the docs' measured tables (between ``<!-- measured:NAME:begin/end -->``) from a
    report of the ``ci`` matrix, with the command that ran it and the date."""
    import datetime
    import json

    from conformance import report

    parser = argparse.ArgumentParser(
        prog="python -m conformance measured",
        description="Rewrite the measured tables of the docs from reports/conformance.json "
        "(run the matrix first: nox -s \"conformance(device='cpu')\").",
    )
    parser.add_argument("files", nargs="*", type=Path, default=[Path("docs/verified.md")])
    parser.add_argument("--report", type=Path, default=Path("reports/conformance.json"))
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    parser.add_argument(
        "--command",
        default="nox -s \"conformance(device='cpu')\"",
        help="the command that wrote the report, as the docs should state it",
    )
    args = parser.parse_args(argv)
    table = [r for r in json.loads(args.report.read_text()) if r["device"] == "cpu"]
    blocks = report.measured_blocks(table, args.date, args.command, str(args.report))
    for path in args.files:
        names = report.rewrite_measured(path, blocks)
        print(f"conformance measured: {path}: {', '.join(names) or 'no measured:NAME markers'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    if argv[:1] == ["measured"]:
        return measured_main(argv[1:])
    from conformance.audit import main as audit_main

    return audit_main(argv)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m conformance audit TARGET [--like ENTRY] [--kwargs k=v ...] [--contract ...]`` and
``python -m conformance report [--dir reports] [--name conformance]``."""

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


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    from conformance.audit import main as audit_main

    return audit_main(argv)


if __name__ == "__main__":
    sys.exit(main())

"""Audit any optimizer: ``python -m conformance audit TARGET`` and ``conformance.audit.audit()``.

Both are a thin layer over the pytest options of the plugin (``conformance/plugin.py``): the same
checks, report rows and reproductions as ``nox -s conformance``, aimed at another subject. Bad
targets, entries and kwargs are refused up front with one line that names the problem.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from conformance import registry
from conformance import subject as subjects_
from conformance.core.repro import import_path

DTYPES = registry.REAL_DTYPES + registry.COMPLEX_DTYPES


def pytest_args(
    target=None,
    *,
    like=None,
    kwargs: Sequence[str] = (),
    contract="ulp",
    reference="matching",
    suite=None,
    dtypes=None,
    devices=("cpu",),
    profile="ci",
    workers=None,
    report=None,
    shrink_seconds=None,
    layouts=None,
    without=(),
) -> list[str]:
    """The pytest command line of an audit (validated: raises ``SubjectError`` on bad input)."""
    without = sorted(subjects_.parse_without(without))
    if target is not None:
        subjects_.subjects(  # fail here, in one line, not inside pytest's collection
            target,
            like=like,
            kwargs=subjects_.parse_kwargs(kwargs),
            contract=contract,
            without=without,
        )
    args = ["--pyargs", "conformance", "-p", "no:cacheprovider"]
    if target is not None:
        path = target if isinstance(target, str) else import_path(target)
        args += [f"--conformance-subject={path}", f"--conformance-contract={contract}"]
        args += [f"--conformance-kwargs={kv}" for kv in kwargs]
    if suite:
        args.append(f"--conformance-suite={suite}")
    if like:
        args.append(f"--conformance-like={like if isinstance(like, str) else ','.join(like)}")
    args.append(f"--conformance-reference={reference}")
    if without:
        args.append(f"--conformance-without={','.join(without)}")
    if dtypes:
        unknown = [d for d in dtypes if d not in DTYPES]
        if unknown:
            raise subjects_.SubjectError(
                f"unknown dtype {unknown[0]!r}; known: {', '.join(DTYPES)}"
            )
        args.append(f"--conformance-dtypes={','.join(dtypes)}")
    args += [f"--device={d}" for d in devices]
    args.append(f"--conformance-report={report or 'audit'}")
    if profile:
        args.append(f"--hypothesis-profile={profile}")
    if workers:
        args += ["-n", str(workers)]
    if layouts:
        args.append(f"--conformance-layouts={','.join(layouts)}")
    if shrink_seconds is not None:
        args.append(f"--conformance-shrink-seconds={shrink_seconds}")
    return args


def audit(target=None, **options) -> int:
    """Run the conformance checks on ``target`` (a class or ``"package.module:Class"``); writes
    ``reports/audit.{json,md}`` and returns pytest's exit code (0: every check passed).

    Options: ``like`` (registry entry name), ``kwargs`` (``["fused=True"]``), ``contract``
    (``"bitwise"`` or ``"ulp"``), ``reference``, ``suite``, ``dtypes``, ``devices``, ``profile``
    (default ``"ci"``: derandomized, so a rerun reproduces),
    ``workers`` (xdist processes; ``"auto"``), ``report`` (file name under reports/),
    ``shrink_seconds``, ``without`` (capabilities the subject lacks, declared:
    ``["sparse", "closure"]``; see ``conformance.subject.CAPABILITIES``).
    """
    import pytest

    return int(pytest.main(pytest_args(target, **options)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="Check an optimizer against its spec and torch.optim. Arguments it does not "
        "know go to pytest (e.g. -k, -x).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    a = commands.add_parser("audit", help="audit an optimizer class (or a built-in suite)")
    a.add_argument("target", nargs="?", help="package.module:Class, e.g. torch.optim:Adam")
    a.add_argument("--like", help="registry entry it implements: " + ", ".join(registry.BY_NAME))
    a.add_argument("--kwargs", nargs="*", default=[], metavar="NAME=VALUE")
    a.add_argument("--contract", choices=subjects_.CONTRACTS, default="ulp")
    a.add_argument("--reference", choices=subjects_.REFERENCES, default="matching")
    a.add_argument("--suite", choices=sorted(subjects_.SUITES), help="instead of a target")
    a.add_argument("--dtypes", nargs="*", metavar="DTYPE", help=", ".join(DTYPES))
    a.add_argument(
        "--without",
        default="",
        metavar="CAPABILITIES",
        help="comma-separated capabilities the subject lacks, declared (cases are drawn without "
        "them, rows about them skip): " + ", ".join(subjects_.CAPABILITIES),
    )
    a.add_argument("--devices", nargs="*", default=["cpu"], choices=("cpu", "cuda"))
    a.add_argument(
        "--profile", default="ci", help="Hypothesis profile: dev, ci (default), thorough, explore"
    )
    a.add_argument("-n", "--workers", help="pytest-xdist workers (e.g. auto)")
    a.add_argument("--report", default="audit", help="report name under reports/")
    a.add_argument(
        "--layouts",
        nargs="*",
        choices=("contiguous", "strided", "transposed"),
        help="param layouts to draw (default: all)",
    )
    a.add_argument(
        "--shrink-seconds",
        type=float,
        default=20.0,
        help="shrink each failing example for at most this long (default 20; Hypothesis: 300)",
    )
    args, pytest_extra = parser.parse_known_args(argv)  # the rest goes to pytest (-k, -x, ...)
    if (args.target is None) == (args.suite is None):
        parser.error("give a TARGET or --suite, not both")
    options = {k: v for k, v in vars(args).items() if k not in ("command", "target")}
    try:
        cli = pytest_args(args.target, **options)
    except subjects_.SubjectError as e:
        print(f"conformance audit: {e}", file=sys.stderr)
        return 2
    import pytest

    return int(pytest.main(cli + pytest_extra))

"""The pytest plugin of the conformance matrix: subjects from the options, parametrization from
the registry, skips with their reasons, and the report (rows collected per process, merged by the
xdist controller).

It is registered through the ``pytest11`` entry point (pyproject.toml), not as a conftest, so that
its options exist wherever the package is installed: a user's CI can run
``pytest --pyargs conformance --conformance-subject=mypkg.optim:MyAdam --conformance-like=Adam``.
Its hooks act only on tests marked ``check`` (the modules ``conformance/test_*.py``).
"""

from __future__ import annotations

import json

import pytest
import torch

from conformance import checks, registry, report, slices, strategies
from conformance import subject as subjects_
from conformance.core import gloo, judge, profiles

profiles.load_from_env()


def pytest_addoption(parser):
    group = parser.getgroup("conformance", "verified-optim conformance matrix")
    group.addoption(
        "--device",
        action="append",
        choices=("cpu", "cuda", gloo.DEVICE),
        help="device(s) to run the conformance matrix on (default: cpu); repeatable. "
        f"{gloo.DEVICE}: the distributed check on DTensor params of a "
        f"{gloo.WORLD_SIZE}-rank gloo mesh, and only it",
    )
    group.addoption(
        "--conformance-subject",
        metavar="TARGET",
        help="optimizer class to check, 'package.module:Class' (default: impl's classes)",
    )
    group.addoption(
        "--conformance-like",
        metavar="ENTRY",
        help="registry entry (spec) the subject claims, e.g. Adam; comma-separated for several "
        "(default: from the class hierarchy)",
    )
    group.addoption(
        "--conformance-kwargs",
        action="append",
        metavar="NAME=VALUE",
        help="fixed constructor kwarg of the subject (a Python literal), e.g. fused=True",
    )
    group.addoption(
        "--conformance-contract",
        choices=subjects_.CONTRACTS,
        help="bitwise (vs torch.optim's reference path) or ulp (within the derived bound of the "
        "exact spec); default: ulp for a --conformance-subject, bitwise for impl",
    )
    group.addoption(
        "--conformance-reference",
        choices=subjects_.REFERENCES,
        default="matching",
        help="torch.optim path a bitwise subject is compared with (default: matching)",
    )
    group.addoption(
        "--conformance-suite",
        choices=sorted(subjects_.SUITES),
        help="a built-in set of subjects: impl (the default), impl-fused (impl's fused=True "
        "kernels) or torch (torch.optim's foreach and fused paths), the last two under the ulp "
        "contract",
    )
    group.addoption(
        "--conformance-dtypes",
        metavar="DTYPES",
        help="comma-separated dtypes to run (default: every dtype each check applies to)",
    )
    group.addoption(
        "--conformance-without",
        metavar="CAPABILITIES",
        help="comma-separated capabilities the subject lacks, declared: "
        f"{', '.join(subjects_.CAPABILITIES)} (cases drawn without them; rows about them skip)",
    )
    group.addoption(
        "--conformance-shrink-seconds",
        type=float,
        metavar="SECONDS",
        help="stop shrinking a failing example after this long (Hypothesis's own limit: 300 s); "
        "an audit of paths with many failures uses it to finish in minutes",
    )
    group.addoption(
        "--conformance-layouts",
        metavar="LAYOUTS",
        help="comma-separated param layouts to draw: contiguous, strided, transposed (default: "
        "all); e.g. to see a subject's ULPs apart from a layout bug",
    )
    group.addoption(
        "--conformance-report",
        metavar="NAME",
        help="writes reports/NAME.{json,md} (default: conformance, or audit for other subjects)",
    )
    group.addoption(
        "--splits",
        type=int,
        metavar="N",
        help="run one of N slices of the collected items, balanced by conformance/durations.json "
        "(with --group); writes reports/NAME.slice-K-of-N.json for `python -m conformance report`",
    )
    group.addoption(
        "--group",
        type=int,
        metavar="K",
        help="which slice of --splits to run, 1-based",
    )
    group.addoption(
        "--store-durations",
        action="store_true",
        help="merge this run's setup+call+teardown seconds per test into "
        "conformance/durations.json (what --splits balances by)",
    )


def _subjects(config) -> list:
    """The subjects of the run, each with the capabilities it lacks: declared (the suite's,
    ``--conformance-without``) or found by trying (``Subject.probed``)."""
    option = config.getoption
    target, suite = option("conformance_subject"), option("conformance_suite")
    if target and suite:
        raise pytest.UsageError("pass --conformance-subject or --conformance-suite, not both")
    without = option("conformance_without") or ()
    try:
        if target:
            found = subjects_.subjects(
                target,
                like=(option("conformance_like") or "").split(",")
                if option("conformance_like")
                else None,
                kwargs=subjects_.parse_kwargs(option("conformance_kwargs")),
                contract=option("conformance_contract") or "ulp",
                reference=option("conformance_reference"),
                without=without,
            )
        else:
            found = subjects_.SUITES[suite or "impl"]()
            if like := option("conformance_like"):
                found = [s for s in found if s.entry.name in like.split(",")]
            found = [subjects_.declare_without(s, without) for s in found]
    except subjects_.SubjectError as e:
        raise pytest.UsageError(str(e)) from None
    return [s.probed() for s in found]


def _dtypes(config):
    text = config.getoption("conformance_dtypes")
    if not text:
        return None
    dtypes = tuple(d.strip() for d in text.split(","))
    unknown = [d for d in dtypes if d not in registry.REAL_DTYPES + registry.COMPLEX_DTYPES]
    if unknown:
        raise pytest.UsageError(f"unknown dtype {unknown[0]!r}")
    return dtypes


def pytest_configure(config):
    config.addinivalue_line("markers", "check(name): the conformance check a test runs")
    config.addinivalue_line("markers", "regressions: replays conformance/regressions.py")
    # One intra-op thread per process: xdist workers share the cores.
    torch.set_num_threads(1)
    config._conformance_subjects = _subjects(config)
    if layouts := config.getoption("conformance_layouts"):
        chosen = tuple(x.strip() for x in layouts.split(","))
        if unknown := set(chosen) - set(strategies.LAYOUTS):
            raise pytest.UsageError(f"unknown layout {sorted(unknown)[0]!r}")
        strategies.LAYOUTS = chosen
    if (seconds := config.getoption("conformance_shrink_seconds")) is not None:
        profiles.limit_shrinking(seconds)
    config._conformance_dtypes = _dtypes(config)
    default = all(s.is_impl_default for s in config._conformance_subjects)
    config._conformance_report_name = config.getoption("conformance_report") or (
        "conformance" if default else "audit"
    )
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistRows(), "conformance-xdist-rows")
    slices.validate(config.getoption("splits"), config.getoption("group"))
    if config.getoption("store_durations") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(slices.DurationRecorder(), "conformance-durations")


def _devices(config) -> tuple[str, ...]:
    return tuple(dict.fromkeys(config.getoption("device") or ["cpu"]))


def _regressions(metafunc) -> None:
    """Each row of conformance/regressions.py on each subject that claims its entry."""
    from conformance.regressions import REGRESSIONS

    config = metafunc.config
    dtypes, devices = config._conformance_dtypes, _devices(config)
    pairs = [
        (registry.Target(s, case.dtype, case.device), (check, name, case))
        for k, (check, name, case) in enumerate(REGRESSIONS)
        for s in config._conformance_subjects
        if s.entry.name == name
        and case.device in devices
        and (dtypes is None or case.dtype in dtypes)
    ]
    ids = [
        f"{t.subject.id}{check}-{name}-{case.dtype}-{REGRESSIONS.index((check, name, case))}"
        for t, (check, name, case) in pairs
    ]
    metafunc.parametrize(("target", "regression"), pairs, ids=ids)


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("regressions"):
        return _regressions(metafunc)
    marker = metafunc.definition.get_closest_marker("check")
    if marker is None or "target" not in metafunc.fixturenames:
        return
    config = metafunc.config
    kind = checks.CHECKS[marker.args[0]]
    targets = kind.targets(
        config._conformance_subjects, _devices(config), config._conformance_dtypes
    )
    if not targets and kind.on_gloo:
        reason = f"the distributed check runs on --device={gloo.DEVICE} (nox -s distributed)"
        targets = [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="not-this-device")]
        return metafunc.parametrize("target", targets)
    metafunc.parametrize("target", targets, ids=[t.id for t in targets])


def _cuda_unavailable_reason() -> str | None:
    if torch.cuda.is_available():
        return None
    return f"CUDA not available: torch.cuda.is_available() is False (torch {torch.__version__})"


def _target_of(item) -> registry.Target | None:
    """The item's target (``None`` also for an empty parametrization, e.g. a check that applies
    to none of the subjects)."""
    target = getattr(getattr(item, "callspec", None), "params", {}).get("target")
    return target if isinstance(target, registry.Target) else None


@pytest.fixture(autouse=True)
def _device_available(request):
    target = _target_of(request.node)
    if target is None:
        return
    if target.device == "cuda" and (reason := _cuda_unavailable_reason()):
        pytest.skip(reason)
    if target.device == gloo.DEVICE and (reason := gloo.unavailable_reason()):
        pytest.skip(reason)
    marker = request.node.get_closest_marker("check")
    if marker and (reason := target.entry.refusal(marker.args[0], target.dtype)):
        pytest.skip(f"refused by the registry: {reason}")
    _, check = _target_and_check(request.node)
    regression = getattr(request.node, "callspec", None).params.get("regression")
    case = regression[2] if regression else None
    if reason := target.subject.lack_of_row(check, target.dtype, target.device, case):
        pytest.skip(reason)
    if reason := target.subject.unsupported(target.dtype, target.device):
        pytest.skip(reason)


def _target_and_check(item):
    target = _target_of(item)
    if target is None:
        return None, None
    if marker := item.get_closest_marker("check"):
        return target, marker.args[0]
    regression = getattr(item, "callspec", None).params.get("regression")
    return (target, regression[0]) if regression else (None, None)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    judge.MARGINS.start()  # the margin of this item's judgments only


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    target, check = _target_and_check(item)
    if target is None:
        return rep
    if rep.when == "call":  # every example's judgments, failing and shrinking ones included
        report.margin(target, check, judge.MARGINS.take())
    if rep.skipped:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        report.outcome(target, check, "skip", reason.removeprefix("Skipped: "))
    elif rep.failed:
        message = str(call.excinfo.value) if call.excinfo else rep.longreprtext
        report.outcome(target, check, "fail", message.strip().splitlines()[0][:300])
    elif rep.when == "call":
        report.outcome(target, check, "pass", "")
    return rep


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: slice what will actually run
def pytest_collection_modifyitems(session, config, items):
    splits, group = config.getoption("splits"), config.getoption("group")
    if splits is None:
        return
    kept, dropped = slices.select(items, splits, group, slices.load_durations())
    config._conformance_slice = {
        "items": [i.nodeid for i in kept],
        "collected": len(items),
        "checks": any(_target_of(i) is not None for i in items),
    }
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


class _XdistRows:
    """Controller side: collect each worker's rows (and its slice: workers all collect and slice
    alike, the controller collects nothing) when it shuts down."""

    def __init__(self):
        self.rows: list[dict] = []
        self.slice: dict | None = None

    @pytest.hookimpl
    def pytest_testnodedown(self, node, error):
        self.rows += json.loads(node.workeroutput.get("conformance_rows", "[]"))
        if "conformance_slice" in node.workeroutput:
            self.slice = json.loads(node.workeroutput["conformance_slice"])


def pytest_sessionfinish(session, exitstatus):
    gloo.close_pool()
    config = session.config
    if hasattr(config, "workerinput"):  # xdist worker: hand rows to the controller
        config.workeroutput["conformance_rows"] = json.dumps(list(report.ROWS.values()))
        if hasattr(config, "_conformance_slice"):
            config.workeroutput["conformance_slice"] = json.dumps(config._conformance_slice)
        return
    if recorder := config.pluginmanager.get_plugin("conformance-durations"):
        recorder.write()
    merged: dict = {}
    report.merge(merged, list(report.ROWS.values()))
    plugin = config.pluginmanager.get_plugin("conformance-xdist-rows")
    if plugin is not None:
        report.merge(merged, plugin.rows)
    name = config._conformance_report_name
    if config.getoption("splits") is not None:
        _write_slice(config, merged, plugin.slice if plugin else None)
    elif merged:
        lacks = report.capability_lacks(config._conformance_subjects, list(merged.values()))
        config._conformance_table = report.write(config.rootpath / "reports", merged, name, lacks)
    _fail_on_undeclared_refusals(session, list(merged.values()))


def _fail_on_undeclared_refusals(session, rows: list[dict]) -> None:
    """A requested row that ran no example because the subject refused its dtype fails the run,
    and so does a capability the subject was found to refuse (its cases were drawn without
    it), unless the lack was declared: by the user (``--conformance-dtypes``,
    ``--conformance-without``; the audit's ``--dtypes``, ``--without``), by the built-in suite
    (``Subject.lacks``) or with a reason in the registry (``Entry.refused``)."""
    lacks = report.capability_lacks(session.config._conformance_subjects, rows)
    refusals = report.undeclared_refusals(rows, subjects_.REFUSES, lacks)
    session.config._conformance_lacks = lacks
    session.config._conformance_refusals = refusals
    if refusals and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _write_slice(config, merged: dict, from_workers: dict | None) -> None:
    """This machine's share only, with what ``python -m conformance report`` needs to check
    that the shares it merges are one run's: nothing on disk is merged here."""
    sliced = from_workers or getattr(config, "_conformance_slice", None)
    if config.option.collectonly or sliced is None or not (merged or sliced["checks"]):
        return  # nothing ran, or not a conformance run (e.g. tests/ sliced)
    meta = {
        **slices.provenance(config.rootpath),
        "profile": slices.profile_name(),
        "name": config._conformance_report_name,
        "splits": config.getoption("splits"),
        "group": config.getoption("group"),
        "devices": list(_devices(config)),
        "suite": config.getoption("conformance_suite")
        or config.getoption("conformance_subject")
        or "impl",
        "torch": torch.__version__,
        "collected": sliced["collected"],
        "items": sliced["items"],
    }
    directory = config.rootpath / "reports"
    config._conformance_table = report.write_slice(directory, merged, meta)
    path = report.slice_path(directory, meta["name"], meta["group"], meta["splits"])
    config._conformance_report_files = [f"reports/{path.name}"]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    table = getattr(config, "_conformance_table", None)
    if table is None:
        return
    name = config._conformance_report_name
    where = getattr(config, "_conformance_report_files", None)
    where = where or [f"reports/{name}.md", f"reports/{name}.json"]
    terminalreporter.section("conformance summary")
    terminalreporter.write(report.summary(table, where))
    if lines := report.lack_lines(getattr(config, "_conformance_lacks", [])):
        terminalreporter.write("\n" + "\n".join(lines) + "\n")
    if refusals := getattr(config, "_conformance_refusals", None):
        terminalreporter.section(
            "undeclared refusals: rows that ran no example, capabilities drawn without", red=True
        )
        for r in refusals:
            terminalreporter.write_line(
                f"{r['optimizer']} {r['check']} {r['dtype']}: {r['reason']}"
            )
        terminalreporter.write_line(
            "The run fails: declare the lack with --conformance-dtypes or --conformance-without "
            "(audit: --dtypes, --without), or fix the subject if it should take them."
        )

"""pytest plumbing of the conformance matrix: parametrization from the registry, CUDA skips,
and the report (rows collected per process, merged by the xdist controller)."""

from __future__ import annotations

import json

import pytest
import torch

from conformance import registry, report


def pytest_configure(config):
    config.addinivalue_line("markers", "check(name): the conformance check a test runs")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistRows(), "conformance-xdist-rows")


def _devices(config) -> tuple[str, ...]:
    return tuple(dict.fromkeys(config.getoption("device") or ["cpu"]))


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("check")
    if marker is None or "target" not in metafunc.fixturenames:
        return
    targets = registry.targets(marker.args[0], _devices(metafunc.config))
    metafunc.parametrize("target", targets, ids=[t.id for t in targets])


def _cuda_unavailable_reason() -> str | None:
    if torch.cuda.is_available():
        return None
    return f"CUDA not available: torch.cuda.is_available() is False (torch {torch.__version__})"


@pytest.fixture(autouse=True)
def _device_available(request):
    target = getattr(getattr(request.node, "callspec", None), "params", {}).get("target")
    if target is not None and target.device == "cuda" and (reason := _cuda_unavailable_reason()):
        pytest.skip(reason)


def _target_and_check(item):
    marker = item.get_closest_marker("check")
    target = getattr(getattr(item, "callspec", None), "params", {}).get("target")
    return (target, marker.args[0]) if marker and target is not None else (None, None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    target, check = _target_and_check(item)
    if target is None:
        return rep
    if rep.skipped:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        report.outcome(target, check, "skip", reason.removeprefix("Skipped: "))
    elif rep.failed:
        message = str(call.excinfo.value) if call.excinfo else rep.longreprtext
        report.outcome(target, check, "fail", message.strip().splitlines()[0][:300])
    elif rep.when == "call":
        report.outcome(target, check, "pass", "")
    return rep


class _XdistRows:
    """Controller side: collect each worker's rows when it shuts down."""

    def __init__(self):
        self.rows: list[dict] = []

    @pytest.hookimpl
    def pytest_testnodedown(self, node, error):
        self.rows += json.loads(node.workeroutput.get("conformance_rows", "[]"))


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if hasattr(config, "workerinput"):  # xdist worker: hand rows to the controller
        config.workeroutput["conformance_rows"] = json.dumps(list(report.ROWS.values()))
        return
    merged: dict = {}
    report.merge(merged, list(report.ROWS.values()))
    plugin = config.pluginmanager.get_plugin("conformance-xdist-rows")
    if plugin is not None:
        report.merge(merged, plugin.rows)
    if not merged:
        return
    config._conformance_table = report.write(config.rootpath / "reports", merged)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    table = getattr(config, "_conformance_table", None)
    if table is None:
        return
    terminalreporter.section("conformance report (reports/conformance.md)")
    terminalreporter.write(report.markdown(table))

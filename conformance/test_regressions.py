"""The regression table (conformance/regressions.py), replayed under every profile."""

import pytest

from conformance import checks, registry, report, subject
from conformance.regressions import REGRESSIONS


def _subject(name: str):
    """impl's class for the named registry entry, as the default run builds it."""
    return next(s for s in subject.impl_subjects() if s.entry.name == name)


@pytest.mark.parametrize(
    ("check", "name", "case"),
    REGRESSIONS,
    ids=[f"{check}-{name}-{case.dtype}-{k}" for k, (check, name, case) in enumerate(REGRESSIONS)],
)
def test_regression(check, name, case):
    target = registry.Target(_subject(name), case.dtype, case.device)
    report.example(target, check, checks.CHECKS[check](target.subject, case))

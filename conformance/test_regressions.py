"""The regression table (conformance/regressions.py), replayed under every profile, on every
subject that claims the row's registry entry (impl's classes by default)."""

import pytest

from conformance import checks, report


@pytest.mark.regressions
def test_regression(target, regression):
    check, _, case = regression
    report.example(target, check, checks.CHECKS[check](target.subject, case))

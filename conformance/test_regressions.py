"""The regression table (conformance/regressions.py), replayed under every profile, on every
subject that claims the row's registry entry (impl's classes by default)."""

import pytest

from conformance import report
from conformance.checks import CHECKS


@pytest.mark.regressions
def test_regression(target, regression):
    check, _, case = regression
    report.example(target, check, CHECKS[check](target.subject, case))

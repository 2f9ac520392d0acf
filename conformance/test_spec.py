"""impl vs its SymPy spec: one step from an arbitrary valid state against the exact result
correctly rounded into the dtype; several float64 steps against the float64 oracle."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import checks, profiles, report, strategies

# mpmath evaluates every element exactly: keep the tensors small (the shapes still cover 0-d,
# empty, 1-4 dims and non-contiguous layouts).
SPEC_SIZE = {"max_params": 2, "max_side": 2}


@pytest.mark.check("spec")
@profiles.for_check("spec")
@given(data=st.data())
def test_matches_spec(target, data):
    case = data.draw(
        strategies.cases(
            target.entry, target.dtype, target.device, steps=(1, 1), purpose="spec", **SPEC_SIZE
        ),
        label="case",
    )
    ulp = checks.matches_spec(target.subject, case)
    report.example(target, "spec", ulp)


@pytest.mark.check("spec_trajectory")
@profiles.for_check("spec_trajectory")
@given(data=st.data())
def test_trajectory_matches_spec(target, data):
    case = data.draw(
        strategies.cases(
            target.entry,
            target.dtype,
            target.device,
            steps=(2, 8),
            purpose="spec_trajectory",
            **SPEC_SIZE,
        ),
        label="case",
    )
    ulp = checks.trajectory_matches_spec(target.subject, case)
    report.example(target, "spec_trajectory", ulp)

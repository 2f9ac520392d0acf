"""The subject vs its SymPy spec: one step from an arbitrary valid state against the exact result
correctly rounded into the dtype; several steps, each judged the same way."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import report, strategies
from conformance.checks import CHECKS
from conformance.core.case import Purpose

SPEC, SPEC_TRAJECTORY = CHECKS["spec"], CHECKS["spec_trajectory"]
# mpmath evaluates every element exactly: keep the tensors small (the shapes still cover 0-d,
# empty, 1-4 dims and non-contiguous layouts).
SPEC_SIZE = {"max_params": 2, "max_side": 2}


@pytest.mark.check(SPEC.name)
@SPEC.settings()
@given(data=st.data())
def test_matches_spec(target, data):
    case = data.draw(
        strategies.cases(
            target.entry,
            target.dtype,
            target.device,
            steps=(1, 1),
            purpose=Purpose.SPEC,
            tensor_betas=target.subject.takes("tensor_betas"),
            **SPEC_SIZE,
        ),
        label="case",
    )
    report.example(target, SPEC.name, SPEC(target.subject, case))


@pytest.mark.check(SPEC_TRAJECTORY.name)
@SPEC_TRAJECTORY.settings()
@given(data=st.data())
def test_trajectory_matches_spec(target, data):
    case = data.draw(
        strategies.cases(
            target.entry,
            target.dtype,
            target.device,
            steps=(2, 8),
            purpose=Purpose.SPEC_TRAJECTORY,
            tensor_betas=target.subject.takes("tensor_betas"),
            **SPEC_SIZE,
        ),
        label="case",
    )
    report.example(target, SPEC_TRAJECTORY.name, SPEC_TRAJECTORY(target.subject, case))

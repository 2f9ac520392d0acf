"""impl vs torch.optim: multi-step trajectories from arbitrary starting states, params and every
state tensor, bitwise unless the registry declares a bound."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import checks, profiles, report, strategies


@pytest.mark.check("torch")
@profiles.for_check("torch")
@given(data=st.data())
def test_matches_torch(target, data):
    case = data.draw(
        strategies.cases(target.entry, target.dtype, target.device, subnormals=True), label="case"
    )
    ulp = checks.matches_torch(target.subject, case)
    report.example(target, "torch", ulp)

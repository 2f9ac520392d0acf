"""Bad input: hyperparameters outside the domain and non-finite gradients (``bad_input``). The
subject raises like torch.optim (same class, same message) or propagates NaN/Inf like it, and a
step it refuses changes nothing."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import bad_input, report
from conformance.checks import CHECKS

ERRORS = CHECKS["errors"]


@pytest.mark.check(ERRORS.name)
@ERRORS.settings()
@given(data=st.data())
def test_errors_like_reference(target, data):
    case, defaults = data.draw(
        bad_input.bad_cases(
            target.entry, target.dtype, target.device, contract=target.subject.contract
        ),
        label="bad case",
    )
    report.example(target, ERRORS.name, ERRORS(target.subject, case, defaults))

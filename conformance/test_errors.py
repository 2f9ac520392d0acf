"""Bad input: hyperparameters outside the domain and non-finite gradients (``bad_input``). The
subject raises like torch.optim (same class, same message) or propagates NaN/Inf like it, and a
step it refuses changes nothing."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import bad_input, checks, profiles, report


@pytest.mark.check("errors")
@profiles.for_check("errors")
@given(data=st.data())
def test_errors_like_reference(target, data):
    case, defaults = data.draw(
        bad_input.bad_cases(target.entry, target.dtype, target.device), label="bad case"
    )
    ulp = checks.errors_like_reference(target.subject, case, defaults)
    report.example(target, "errors", ulp)

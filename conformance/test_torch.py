"""The subject vs torch.optim: multi-step trajectories from arbitrary starting states, params and
every state tensor, bitwise unless the registry declares a bound."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import report, strategies
from conformance.checks import CHECKS

TORCH = CHECKS["torch"]


@pytest.mark.check(TORCH.name)
@TORCH.settings()
@given(data=st.data())
def test_matches_torch(target, data):
    # the subject's entry draws no sparse gradients or second group where it lacks them
    # (conformance.subject.Subject._honoured); a tensor lr is the case's own flag
    case = data.draw(
        strategies.cases(
            target.entry,
            target.dtype,
            target.device,
            subnormals=True,
            tensor_lr=target.subject.takes("tensor_lr"),
            tensor_betas=target.subject.takes("tensor_betas"),
        ),
        label="case",
    )
    report.example(target, TORCH.name, TORCH(target.subject, case))

"""The check kinds of the optimizers that are not elementwise (``conformance.kinds.adafactor``,
``muon``, ``lbfgs``): Adafactor's factored moments, Muon's singular values and scale invariance,
LBFGS's two-loop direction, strong Wolfe conditions and convergence."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import report, strategies
from conformance.checks import CHECKS
from conformance.core.case import Purpose

FACTORED_MOMENTS = CHECKS["factored_moments"]
SINGULAR_VALUES = CHECKS["singular_values"]
SCALE_INVARIANCE = CHECKS["scale_invariance"]
TWO_LOOP = CHECKS["two_loop"]
WOLFE = CHECKS["wolfe"]
CONVERGENCE = CHECKS["convergence"]
# mpmath evaluates Adafactor's statement over every element at once: small tensors
SMALL = {"max_params": 2, "max_side": 3}


def _case(target, data, purpose, steps=(1, 1), **kw):
    return data.draw(
        strategies.cases(
            target.entry, target.dtype, target.device, steps=steps, purpose=purpose, **kw
        ),
        label="case",
    )


@pytest.mark.check(FACTORED_MOMENTS.name)
@FACTORED_MOMENTS.settings()
@given(data=st.data())
def test_factored_moments_match_the_statement(target, data):
    case = _case(target, data, Purpose.SPEC, **SMALL)
    report.example(target, FACTORED_MOMENTS.name, FACTORED_MOMENTS(target.subject, case))


@pytest.mark.check(SINGULAR_VALUES.name)
@SINGULAR_VALUES.settings()
@given(data=st.data())
def test_update_singular_values_follow_the_polynomial(target, data):
    case = _case(target, data, Purpose.SINGULAR_VALUES, max_side=4)
    report.example(target, SINGULAR_VALUES.name, SINGULAR_VALUES(target.subject, case))


@pytest.mark.check(SCALE_INVARIANCE.name)
@SCALE_INVARIANCE.settings()
@given(data=st.data(), k=st.integers(-4, 4))
def test_gradients_scaled_by_a_power_of_two_give_the_same_update(target, data, k):
    case = _case(target, data, Purpose.BOUNDED, steps=(1, 3))
    report.example(target, SCALE_INVARIANCE.name, SCALE_INVARIANCE(target.subject, case, k))


@pytest.mark.check(TWO_LOOP.name)
@TWO_LOOP.settings()
@given(data=st.data())
def test_direction_is_the_bfgs_product(target, data):
    case = _case(target, data, Purpose.BOUNDED, steps=(1, 6))
    report.example(target, TWO_LOOP.name, TWO_LOOP(target.subject, case))


@pytest.mark.check(WOLFE.name)
@WOLFE.settings()
@given(data=st.data())
def test_accepted_steps_satisfy_strong_wolfe(target, data):
    case = _case(target, data, Purpose.BOUNDED, steps=(1, 6))
    report.example(target, WOLFE.name, WOLFE(target.subject, case))


@pytest.mark.check(CONVERGENCE.name)
@CONVERGENCE.settings()
@given(data=st.data())
def test_converges_to_the_minimiser(target, data):
    case = _case(target, data, Purpose.BOUNDED)
    report.example(target, CONVERGENCE.name, CONVERGENCE(target.subject, case))

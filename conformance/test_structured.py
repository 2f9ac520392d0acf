"""The check kinds of the optimizers that are not elementwise (``conformance.structured``):
Adafactor's factored moments, Muon's singular values and scale invariance, LBFGS's two-loop
direction, strong Wolfe conditions and convergence."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import checks, profiles, report, strategies

# mpmath evaluates Adafactor's statement over every element at once: small tensors
SMALL = {"max_params": 2, "max_side": 3}


def _case(target, data, purpose, steps=(1, 1), **kw):
    return data.draw(
        strategies.cases(
            target.entry, target.dtype, target.device, steps=steps, purpose=purpose, **kw
        ),
        label="case",
    )


@pytest.mark.check("factored_moments")
@profiles.for_check("factored_moments")
@given(data=st.data())
def test_factored_moments_match_the_statement(target, data):
    case = _case(target, data, "spec", **SMALL)
    report.example(
        target, "factored_moments", checks.CHECKS["factored_moments"](target.subject, case)
    )


@pytest.mark.check("singular_values")
@profiles.for_check("singular_values")
@given(data=st.data())
def test_update_singular_values_follow_the_polynomial(target, data):
    case = _case(target, data, "singular_values", max_side=4)
    report.example(
        target, "singular_values", checks.CHECKS["singular_values"](target.subject, case)
    )


@pytest.mark.check("scale_invariance")
@profiles.for_check("scale_invariance")
@given(data=st.data(), k=st.integers(-4, 4))
def test_gradients_scaled_by_a_power_of_two_give_the_same_update(target, data, k):
    case = _case(target, data, "bounded", steps=(1, 3))
    checks.CHECKS["scale_invariance"](target.subject, case, k)
    report.example(target, "scale_invariance", 0.0)


@pytest.mark.check("two_loop")
@profiles.for_check("two_loop")
@given(data=st.data())
def test_direction_is_the_bfgs_product(target, data):
    case = _case(target, data, "bounded", steps=(1, 6))
    report.example(target, "two_loop", checks.CHECKS["two_loop"](target.subject, case))


@pytest.mark.check("wolfe")
@profiles.for_check("wolfe")
@given(data=st.data())
def test_accepted_steps_satisfy_strong_wolfe(target, data):
    case = _case(target, data, "bounded", steps=(1, 6))
    report.example(target, "wolfe", checks.CHECKS["wolfe"](target.subject, case))


@pytest.mark.check("convergence")
@profiles.for_check("convergence")
@given(data=st.data())
def test_converges_to_the_minimiser(target, data):
    case = _case(target, data, "bounded")
    report.example(target, "convergence", checks.CHECKS["convergence"](target.subject, case))

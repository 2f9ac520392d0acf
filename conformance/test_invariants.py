"""Properties that hold whatever the numbers: maximize, complex, save/load, grads untouched,
determinism, and Nesterov's look-ahead definition."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import checks, profiles, report, strategies


def _case(target, data, steps=(1, 4)):
    return data.draw(
        strategies.cases(
            target.entry, target.dtype, target.device, steps=steps, purpose="invariant"
        ),
        label="case",
    )


@pytest.mark.check("maximize")
@profiles.for_check("maximize")
@given(data=st.data())
def test_maximize_is_minimizing_negation(target, data):
    report.example(
        target,
        "maximize",
        checks.maximize_is_minimizing_negation(target.subject, _case(target, data)),
    )


@pytest.mark.check("complex_as_real")
@profiles.for_check("complex_as_real")
@given(data=st.data())
def test_complex_is_real_pair(target, data):
    # paths that round differently are compared on the well-conditioned (spec) domain
    purpose = "spec" if target.entry.complex_ulp else "invariant"
    case = data.draw(
        strategies.cases(target.entry, target.dtype, target.device, purpose=purpose), label="case"
    )
    ulp = checks.complex_is_real_pair(target.subject, case)
    report.example(target, "complex_as_real", ulp)


@pytest.mark.check("state_dict_roundtrip")
@profiles.for_check("state_dict_roundtrip")
@given(data=st.data())
def test_state_dict_roundtrip(target, data):
    ulp = checks.state_dict_roundtrip(target.subject, _case(target, data, steps=(2, 5)))
    report.example(target, "state_dict_roundtrip", ulp)


@pytest.mark.check("grad_untouched")
@profiles.for_check("grad_untouched")
@given(data=st.data())
def test_step_leaves_grad_untouched(target, data):
    report.example(
        target, "grad_untouched", checks.grad_untouched(target.subject, _case(target, data))
    )


@pytest.mark.check("deterministic")
@profiles.for_check("deterministic")
@given(data=st.data())
def test_deterministic(target, data):
    report.example(
        target, "deterministic", checks.deterministic(target.subject, _case(target, data))
    )


@pytest.mark.check("nesterov_lookahead")
@profiles.for_check("nesterov_lookahead")
@given(
    problem=strategies.quadratic_quartic(),
    lr=st.floats(1e-3, 0.05),
    momentum=st.floats(0.01, 0.95),
    steps=st.integers(1, 10),
)
def test_nesterov_tracks_lookahead(target, problem, lr, momentum, steps):
    hyper = {"lr": lr, "momentum": momentum, "nesterov": True}
    ulp = checks.nesterov_lookahead(target.subject, problem, hyper, steps)
    report.example(target, "nesterov_lookahead", ulp)


@pytest.mark.check("memory_safety")
@profiles.for_check("memory_safety")
@given(data=st.data())
def test_step_writes_only_its_own_elements(target, data):
    report.example(
        target, "memory_safety", checks.memory_safety(target.subject, _case(target, data))
    )


@pytest.mark.check("sparse_rows")
@profiles.for_check("sparse_rows")
@given(data=st.data())
def test_sparse_gradients_touch_only_their_rows(target, data):
    report.example(target, "sparse_rows", checks.sparse_rows(target.subject, _case(target, data)))

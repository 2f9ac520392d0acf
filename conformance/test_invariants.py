"""Properties that hold whatever the numbers: maximize, complex, save/load, grads untouched,
determinism, Nesterov's look-ahead definition, memory safety and sparse rows."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import report, strategies
from conformance.checks import CHECKS
from conformance.core.case import Purpose

MAXIMIZE = CHECKS["maximize"]
COMPLEX_AS_REAL = CHECKS["complex_as_real"]
STATE_DICT_ROUNDTRIP = CHECKS["state_dict_roundtrip"]
GRAD_UNTOUCHED = CHECKS["grad_untouched"]
DETERMINISTIC = CHECKS["deterministic"]
NESTEROV_LOOKAHEAD = CHECKS["nesterov_lookahead"]
MEMORY_SAFETY = CHECKS["memory_safety"]
SPARSE_ROWS = CHECKS["sparse_rows"]


def _case(target, data, steps=(1, 4), purpose=Purpose.INVARIANT):
    return data.draw(
        strategies.cases(target.entry, target.dtype, target.device, steps=steps, purpose=purpose),
        label="case",
    )


def _judge(kind, target, case, *args):
    report.example(target, kind.name, kind(target.subject, case, *args))


@pytest.mark.check(MAXIMIZE.name)
@MAXIMIZE.settings()
@given(data=st.data())
def test_maximize_is_minimizing_negation(target, data):
    _judge(MAXIMIZE, target, _case(target, data))


@pytest.mark.check(COMPLEX_AS_REAL.name)
@COMPLEX_AS_REAL.settings()
@given(data=st.data())
def test_complex_is_real_pair(target, data):
    # paths that round differently are compared on the well-conditioned (spec) domain
    purpose = Purpose.SPEC if target.entry.complex_ulp else Purpose.INVARIANT
    case = data.draw(
        strategies.cases(target.entry, target.dtype, target.device, purpose=purpose), label="case"
    )
    _judge(COMPLEX_AS_REAL, target, case)


@pytest.mark.check(STATE_DICT_ROUNDTRIP.name)
@STATE_DICT_ROUNDTRIP.settings()
@given(data=st.data())
def test_state_dict_roundtrip(target, data):
    _judge(STATE_DICT_ROUNDTRIP, target, _case(target, data, steps=(2, 5)))


@pytest.mark.check(GRAD_UNTOUCHED.name)
@GRAD_UNTOUCHED.settings()
@given(data=st.data())
def test_step_leaves_grad_untouched(target, data):
    _judge(GRAD_UNTOUCHED, target, _case(target, data))


@pytest.mark.check(DETERMINISTIC.name)
@DETERMINISTIC.settings()
@given(data=st.data())
def test_deterministic(target, data):
    _judge(DETERMINISTIC, target, _case(target, data))


@pytest.mark.check(NESTEROV_LOOKAHEAD.name)
@NESTEROV_LOOKAHEAD.settings()
@given(
    problem=strategies.quadratic_quartic(),
    lr=st.floats(1e-3, 0.05),
    momentum=st.floats(0.01, 0.95),
    steps=st.integers(1, 10),
)
def test_nesterov_tracks_lookahead(target, problem, lr, momentum, steps):
    hyper = {"lr": lr, "momentum": momentum, "nesterov": True}
    _judge(NESTEROV_LOOKAHEAD, target, problem, hyper, steps)


@pytest.mark.check(MEMORY_SAFETY.name)
@MEMORY_SAFETY.settings()
@given(data=st.data())
def test_step_writes_only_its_own_elements(target, data):
    _judge(MEMORY_SAFETY, target, _case(target, data))


@pytest.mark.check(SPARSE_ROWS.name)
@SPARSE_ROWS.settings()
@given(data=st.data())
def test_sparse_gradients_touch_only_their_rows(target, data):
    _judge(SPARSE_ROWS, target, _case(target, data))

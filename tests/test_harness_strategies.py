"""The strategies generate what they promise."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import registry, strategies
from conformance.core.case import DTYPES


@settings(max_examples=30, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(list(registry.REAL_DTYPES)))
def test_values_are_representable_and_bounded(data, dtype):
    torch_dtype = DTYPES[dtype]
    tiny, huge = strategies.magnitude_bounds(torch_dtype)
    a = data.draw(strategies.arrays(torch_dtype, (4,)))
    mags = np.abs(a)
    assert np.all((mags == 0) | ((mags >= tiny) & (mags <= huge)))
    # exactly representable: the round trip through the dtype changes nothing
    assert np.array_equal(torch.from_numpy(a).to(torch_dtype).double().numpy(), a)
    assert np.all(np.isfinite(mags**2 * 4))  # squares cannot overflow even float64


@settings(max_examples=30, deadline=None)
@given(data=st.data(), entry=st.sampled_from(registry.REGISTRY))
def test_starting_states_are_valid(data, entry):
    case = data.draw(strategies.cases(entry, "float32", "cpu"))
    for state in case.state.values():
        if "step" in state:
            assert state["step"] >= 1 and state["step"] == int(state["step"])
        for key in ("exp_avg_sq", "sum", "square_avg"):
            if key in state and "grad_avg" not in state:
                assert np.all(state[key] >= 0)
        if "max_exp_avg_sq" in state:
            assert np.all(state["max_exp_avg_sq"] >= state["exp_avg_sq"])
        if "grad_avg" in state:
            assert np.all(state["square_avg"] >= state["grad_avg"] ** 2)
    # every param index is in exactly one group, and groups are non-empty
    indices = [i for g in case.groups for i in g["params"]]
    assert sorted(indices) == list(range(len(case.params))) and all(
        g["params"] for g in case.groups
    )
    # materialized layouts are what they claim
    for p, spec in zip(case.make_params(), case.params, strict=True):
        assert p.is_contiguous() or spec.layout != "contiguous"
        if spec.layout != "contiguous" and p.numel() > 1 and max(p.shape) > 1:
            assert not p.is_contiguous() or spec.layout == "transposed"


@settings(max_examples=10, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(list(DTYPES)))
def test_case_repr_round_trips(data, dtype):
    """``repr(case)`` is the repro snippet's constructor: it must rebuild the same case."""
    from conformance.core.case import Case, P  # noqa: F401  (names used by eval)

    case = data.draw(strategies.cases(registry.BY_NAME["Adam"], dtype, "cpu"))
    again = eval(repr(case))
    assert repr(again) == repr(case)

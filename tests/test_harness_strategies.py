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


def _fused(name: str):
    from conformance.subject import Subject

    entry = registry.BY_NAME[name]
    return Subject(entry.impl, entry, {"fused": True}, "ulp").entry


@settings(max_examples=120, deadline=None)
@given(data=st.data(), entry=st.sampled_from(registry.REGISTRY))
def test_vector_sized_params_are_drawn_within_the_entrys_shapes(data, entry):
    """A minority of cases has one param of a vector-sized length (a SIMD body and its tail),
    in the dims the entry takes; an LBFGS quadratic's Hessian stays small."""
    case = data.draw(strategies.cases(entry, "float32", "cpu"))
    fewest, most = entry.param_dims
    for i in range(len(case.params)):
        shape = case.shape(i)
        assert fewest <= len(shape) <= most, (entry.name, shape)
        if max(shape, default=0) > 3:
            assert max(shape) in strategies.VECTOR_LENGTHS and not entry.objective, shape
    assert sum(max(case.shape(i), default=0) > 3 for i in range(len(case.params))) <= 1


def test_vector_lengths_straddle_every_lane_count():
    lengths = set(strategies.VECTOR_LENGTHS)
    for lanes in (8, 16, 32, 64):
        for k in (1, 2, 4):
            assert {lanes * k - 1, lanes * k, lanes * k + 1} <= lengths, (lanes, k)
    assert max(lengths) >= 256


@settings(max_examples=60, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(list(registry.REAL_DTYPES)))
def test_grad_scaler_inputs_are_exact_powers_of_two_for_fused_spec_cases(data, dtype):
    """Only a fused subject's spec cases draw GradScaler's inputs; the scaled gradients are
    normal numbers of the dtype, so that dividing by the scale gives back the drawn ones."""
    entry = _fused(data.draw(st.sampled_from(["Adam", "AdamW", "SGD", "Adagrad"])))
    case = data.draw(strategies.cases(entry, dtype, "cpu", purpose="spec", steps=(1, 3)))
    plain = data.draw(strategies.cases(entry, dtype, "cpu", purpose="invariant"))
    assert plain.grad_scale is None
    if case.grad_scale is None:
        return
    from conformance.core.case import Case, P  # noqa: F401  (names used by eval)

    assert repr(eval(repr(case))) == repr(case)  # the repro's constructor keeps them
    k = np.log2(case.grad_scale)
    assert k == int(k) and -8 <= k <= 16, case.grad_scale
    assert len(case.found_inf) == case.steps and set(case.found_inf) <= {0.0, 1.0}
    info = torch.finfo(DTYPES[dtype])
    for step in case.grads:
        for g in step:
            if g is None:
                continue
            mags = np.abs(g)
            assert np.all((mags == 0) | ((mags >= info.smallest_normal) & (mags <= info.max)))
            assert np.array_equal(torch.from_numpy(g).to(DTYPES[dtype]).double().numpy(), g)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(list(registry.REAL_DTYPES)))
def test_visible_step_draws_stay_in_the_spec_domain(data, dtype):
    """Params drawn so that the step shows (all zero; |p| near lr) keep the spec purpose's
    domain: one sign and magnitudes 0 or within [2**-20, 2**20] and the dtype's bounds."""
    case = data.draw(strategies.cases(registry.BY_NAME["Adam"], dtype, "cpu", purpose="spec"))
    tiny, huge = strategies.magnitude_bounds(DTYPES[dtype])
    lo, hi = max(tiny, 2.0**-20), min(huge, 2.0**20)
    for p in case.params:
        mags = p.values
        assert np.all(mags >= 0) and np.all((mags == 0) | ((mags >= lo) & (mags <= hi)))

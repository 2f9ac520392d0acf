"""Numeric oracles derived from the specs: float64 vs exact, torch cross-check, for_group."""

import math

import numpy as np
import pytest
import torch

import specs
from conformance.core.ulp import scaled_ulp_error
from specs import ALL_SPECS, VARIANTS, for_group, ulp_distance

PARAM = np.array([0.5, -1.25, 3.0, 1e-3])
GRAD = np.array([0.1, -2.0, 0.75, 1e-4])
HYPER = {
    "lr": 0.1,
    "momentum": 0.9,
    "dampening": 0.1,
    "weight_decay": 0.01,
    "lr_decay": 0.01,
    "initial_accumulator_value": 0.1,
}
# a started state; grad_avg² < square_avg keeps centered RMSprop's variance positive
STARTED = {
    "step": 4.0,
    "momentum_buffer": np.array([0.3, -0.2, 1.0, 1e-3]),
    "sum": np.array([0.2, 0.05, 1.5, 1e-3]),
    "square_avg": np.array([0.2, 0.05, 1.5, 1e-3]),
    "exp_avg_sq": np.array([0.2, 0.05, 1.5, 1e-3]),
    "max_exp_avg_sq": np.array([0.3, 0.01, 1.5, 2e-3]),
    "grad_avg": np.array([0.1, -0.1, 0.5, 0.01]),
    "exp_avg": np.array([0.1, -0.1, 0.5, 0.01]),
    "exp_inf": np.array([0.3, 0.4, 0.5, 1e-3]),
    "acc_delta": np.array([0.01, 0.02, 0.3, 1e-4]),
    "ax": np.array([0.4, -1.0, 2.5, 1e-3]),
    "prev": np.array([0.1, 2.0, -0.5, 0.0]),
    "step_size": np.array([0.01, 0.02, 0.05, 1e-3]),
    "mu_product": np.array(np.float32(0.5)),
    "eta": np.array(np.float32(0.05)),
    "mu": np.array(np.float32(0.25)),
}


def hyper_for(spec):
    return {**spec.defaults, **{k: v for k, v in HYPER.items() if k in spec.defaults}}


@pytest.mark.parametrize("fresh", [False, True], ids=["started", "fresh"])
@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda spec: spec.name)
def test_float64_and_exact_oracles_agree(spec, fresh):
    state = {} if fresh else {v.name: STARTED[v.name] for v in spec.state}
    hyper = hyper_for(spec)
    fast = spec.step_float64(PARAM, GRAD, state, hyper)
    exact = spec.step_exact(PARAM, GRAD, state, hyper, "float64")
    assert set(fast) == set(exact) == {"param", *(v.name for v in spec.state)}
    # in ULPs at the scale of each output's value before the step, so that p' = p - q1 - q2
    # cancelling (NAdam's 1e-3 element) does not count; Adam's float64 1 − β2^t (≈0.005 at
    # t=5) loses ~8 bits to cancellation; the rest round a handful of times
    bound = 32 if "Adam" in spec.name else 4
    before = {"param": PARAM, **state}
    for key in fast:
        error = scaled_ulp_error(
            *(torch.as_tensor(np.asarray(x, np.float64)) for x in (fast[key], exact[key])),
            torch.as_tensor(np.asarray(before.get(key, 0.0), np.float64)),
            torch.float64,
        )
        assert float(error.max()) <= bound, (key, float(error.max()))


def test_exact_oracle_flags_a_wrong_value():
    spec = specs.adam()
    state = {v.name: STARTED[v.name] for v in spec.state}
    exact = spec.step_exact(PARAM, GRAD, state, spec.defaults, "float32")["param"]
    one_ulp_off = np.nextafter(exact.astype(np.float32), np.float32(np.inf)).astype(np.float64)
    assert [ulp_distance(a, b, "float32") for a, b in zip(exact, one_ulp_off)] == [1.0] * 4
    # the float32 rounding of the float64 oracle agrees with the exact oracle here
    fast = spec.step_float64(PARAM, GRAD, state, spec.defaults)["param"]
    np.testing.assert_array_equal(fast.astype(np.float32).astype(np.float64), exact)


def test_seed_eps_inside_sqrt_is_told_apart():
    text, code = VARIANTS["seed:AdaGrad(text)"], VARIANTS["seed:AdaGrad(code)"]
    grad = np.array([1e-5, 3e-6])  # small accumulators, where eps placement matters
    p = np.array([1.0, -2.0])
    a = text.step_exact(p, grad, {}, text.defaults, "float32")["param"]
    b = code.step_exact(p, grad, {}, code.defaults, "float32")["param"]
    assert min(ulp_distance(x, y, "float32") for x, y in zip(a, b)) > 100


def test_exact_oracle_rounds_ties_to_even_in_float16():
    spec = specs.sgd()
    grad = -np.array([2.0**-11, 3 * 2.0**-11, 2.0**-30])
    out = spec.step_exact(np.ones(3), grad, {}, {"lr": 1.0}, "float16")
    np.testing.assert_array_equal(out["param"], [1.0, 1 + 2**-9, 1.0])


def test_exact_oracle_recomputes_values_that_look_like_ties():
    # 1 + 2**-53 + 2**-100 needs 101 bits; at 64 bits it looks like a float64 tie (-> 1.0)
    grad = np.array([-(2.0**-53 + 2.0**-100)])
    out = specs.sgd().step_exact(np.ones(1), grad, {}, {"lr": 1.0}, "float64", digits=5)
    assert out["param"][0] == 1 + 2**-52


def test_exact_oracle_subnormal_and_overflow():
    spec = specs.sgd()
    out = spec.step_exact(
        np.array([0.0, 60000.0]), np.array([-(2.0**-24), -6000.0]), {}, {"lr": 1.0}, "float16"
    )
    np.testing.assert_array_equal(out["param"], [2.0**-24, math.inf])


def test_nan_and_inf_propagate():
    spec = specs.adagrad()
    hyper = {**spec.defaults, "eps": 0.0}
    grad = np.array([math.nan, math.inf, 0.0, 1.0])  # 0/(√0 + 0) is NaN in IEEE
    for out in (
        spec.step_float64(np.ones(4), grad, {}, hyper),
        spec.step_exact(np.ones(4), grad, {}, hyper, "bfloat16"),
    ):
        assert np.isnan(out["param"][:3]).all() and 0.98 < out["param"][3] < 1


def test_sgd_first_step_is_signalled_by_a_missing_buffer():
    spec = specs.sgd(momentum=True)
    hyper = {"lr": 0.1, "momentum": 0.9, "dampening": 0.5, "weight_decay": 0.0}
    first = spec.step_float64(PARAM, GRAD, {}, hyper)
    np.testing.assert_array_equal(first["momentum_buffer"], GRAD)  # undamped
    later = spec.step_float64(PARAM, GRAD, {"momentum_buffer": GRAD}, hyper)
    np.testing.assert_allclose(later["momentum_buffer"], 1.4 * GRAD)


def test_run_float64_on_the_seed_quadratic():
    spec = VARIANTS["seed:GD"]
    scale = np.array([2.0, 20.0])  # ∇(x1² + 10·x2²)
    path = spec.run_float64(np.array([4.0, 3.0]), lambda x: scale * x, {"lr": 0.01}, 5)
    assert path.shape == (6, 2)
    np.testing.assert_allclose(
        path, np.array([4.0, 3.0]) * (1 - 0.01 * scale) ** np.arange(6)[:, None]
    )


TORCH_CASES = [
    ("SGD", {"lr": 0.1}, "SGD"),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1}, "SGD[momentum]"),
    (
        "SGD",
        {"lr": 0.1, "momentum": 0.9, "nesterov": True, "maximize": True},
        "SGD[momentum,nesterov,maximize]",
    ),
    (
        "Adagrad",
        {"lr_decay": 0.1, "initial_accumulator_value": 0.2, "weight_decay": 0.1},
        "Adagrad",
    ),
    (
        "RMSprop",
        {"centered": True, "momentum": 0.5, "weight_decay": 0.1},
        "RMSprop[centered,momentum]",
    ),
    ("RMSprop", {"maximize": True}, "RMSprop[maximize]"),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}, "Adam"),
    ("Adam", {"amsgrad": True, "maximize": True, "betas": (0.8, 0.99)}, "Adam[amsgrad,maximize]"),
    ("Adam", {"decoupled_weight_decay": True}, "AdamW"),
    ("AdamW", {"amsgrad": True, "lr": torch.tensor(0.01, dtype=torch.float64)}, "AdamW[amsgrad]"),
]


@pytest.mark.parametrize(("name", "kwargs", "spec_name"), TORCH_CASES, ids=lambda c: str(c))
def test_matches_torch_optim_in_float64(name, kwargs, spec_name):
    x = torch.tensor(PARAM, dtype=torch.float64, requires_grad=True)
    optimizer = getattr(torch.optim, name)([x], **kwargs)
    spec, hyper = for_group(name, optimizer.param_groups[0])
    assert spec.name == spec_name
    param, state = PARAM, {}
    for k in range(3):
        grad = GRAD * (1 + k) - 0.05 * k
        x.grad = torch.tensor(grad)
        optimizer.step()
        state = spec.step_float64(param, grad, state, hyper)
        param = state.pop("param")
    np.testing.assert_allclose(x.detach().numpy(), param, rtol=1e-12, atol=1e-15)
    for key, value in state.items():
        np.testing.assert_allclose(optimizer.state[x][key].numpy(), value, rtol=1e-12, atol=1e-15)


def test_for_group_splits_betas_and_reads_tensor_lr():
    spec, hyper = for_group(
        "Adam", {"lr": torch.tensor(0.5), "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0}
    )
    assert spec.name == "Adam"
    assert hyper == {"lr": 0.5, "beta1": 0.8, "beta2": 0.9, "eps": 1e-6, "weight_decay": 0.0}
    assert for_group("SGD", {"lr": 0.1, "momentum": 0})[0].name == "SGD"


def test_exact_oracle_survives_inputs_spanning_eighty_decades():
    """lerp(m, g, 1 - b1) with b1 = 0 is g exactly, however large m was: no cancellation."""
    spec, hyper = specs.for_group(
        "Adam",
        {
            "lr": 1.0,
            "betas": (0.0, 0.999),
            "eps": 0.0,
            "weight_decay": 0.0,
            "amsgrad": False,
            "maximize": False,
        },
    )
    state = {"step": 0, "exp_avg": np.array([7.48e80]), "exp_avg_sq": np.array([1.0])}
    out = spec.step_exact(np.array([0.0]), np.array([1.0]), state, hyper, "float64")
    assert out["exp_avg"][0] == 1.0
    # v = 1 and v_hat = 1 / (1 - b2), so the step is -sqrt(1 - b2), b2 being the double 0.999
    import mpmath

    with mpmath.workdps(60):
        expected = float(-mpmath.sqrt(1 - mpmath.mpf(0.999)))
    assert out["param"][0] == expected

"""impl is bitwise identical to torch.optim 2.13: params and every state tensor, every flag.

Sweeps each optimizer's full flag grid x {for-loop, foreach} x dtypes over multi-step runs with a
matrix, a 0-d, an empty and a non-contiguous parameter in two param groups, with some gradients
None. The property-based search over values and states is ``conformance``'s job; this is the
exhaustive flag sweep.
"""

from __future__ import annotations

import pytest
import torch

import impl
from tests._bitwise import assert_bitwise_equal, assert_state_dicts_bitwise_equal
from tests._torch_pairs import (
    OPTIMIZER_NAMES,
    PAIRS,
    combo_id,
    flag_combinations,
    pattern,
    run_pair,
)

SWEEP = [
    pytest.param(name, flags, id=f"{name}[{combo_id(flags)}]")
    for name in OPTIMIZER_NAMES
    for flags in flag_combinations(name)
]
PATHS = [pytest.param(False, id="for-loop"), pytest.param(True, id="foreach")]
REAL = [pytest.param(d, id=str(d).removeprefix("torch.")) for d in (torch.float32, torch.float64)]
LOW_AND_COMPLEX = [
    pytest.param(d, id=str(d).removeprefix("torch."))
    for d in (torch.float16, torch.bfloat16, torch.complex64, torch.complex128)
]


def assert_same_trajectory(name, flags, dtype, foreach, **run):
    def compare(step, mine, theirs):
        for i, (p, q) in enumerate(zip(mine_params, their_params)):
            assert_bitwise_equal(p, q, f"{name} param {i} after step {step + 1}")
        assert_state_dicts_bitwise_equal(
            mine.state_dict(), theirs.state_dict(), f"{name} after step {step + 1}"
        )

    # run_pair creates the params; capture them on the first callback.
    mine_params = their_params = None

    def after_step(step, mine, theirs):
        nonlocal mine_params, their_params
        mine_params = [p for g in mine.param_groups for p in g["params"]]
        their_params = [p for g in theirs.param_groups for p in g["params"]]
        compare(step, mine, theirs)

    run_pair(name, flags, dtype, foreach=foreach, after_step=after_step, **run)


@pytest.mark.parametrize("foreach", PATHS)
@pytest.mark.parametrize("dtype", REAL)
@pytest.mark.parametrize("name, flags", SWEEP)
def test_bitwise_equal_to_torch(name, flags, dtype, foreach):
    assert_same_trajectory(name, flags, dtype, foreach)


@pytest.mark.parametrize("foreach", PATHS)
@pytest.mark.parametrize("dtype", LOW_AND_COMPLEX)
@pytest.mark.parametrize("name, flags", SWEEP)
def test_low_precision_and_complex_match_torch(name, flags, dtype, foreach):
    assert_same_trajectory(name, flags, dtype, foreach)


TENSOR_LR_PATHS = [
    pytest.param(name, flags, foreach, id=f"{name}[{combo_id(flags)}]-{path}")
    for name, flags in ((p.values[0], p.values[1]) for p in SWEEP)
    for foreach, path in ((False, "for-loop"), (True, "foreach"))
    if not (foreach and name in ("Adam", "AdamW"))  # torch refuses a tensor lr with foreach
]


@pytest.mark.parametrize("dtype", REAL)
@pytest.mark.parametrize("name, flags, foreach", TENSOR_LR_PATHS)
def test_tensor_lr_matches_torch(name, flags, foreach, dtype):
    """A float32 tensor lr rounds where torch's code rounds it."""
    assert_same_trajectory(name, flags, dtype, foreach=foreach, lr=torch.tensor(0.05))


@pytest.mark.parametrize("amsgrad", [False, True], ids=["plain", "amsgrad"])
@pytest.mark.parametrize("beta_dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_tensor_betas_match_torch(name, dtype, beta_dtype, amsgrad):
    """Betas of another dtype than the params': torch divides out of place, so on the 0-d
    param the quotient promotes to the betas' dtype (0-d with 0-d)."""
    betas = (torch.tensor(0.8, dtype=beta_dtype), torch.tensor(0.95, dtype=beta_dtype))
    assert_same_trajectory(name, {"betas": betas, "amsgrad": amsgrad}, dtype, foreach=False)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_float64_tensor_betas_on_a_bfloat16_scalar_param_match_torch(name):
    """The conformance torch row's case: a 0-d bfloat16 param at its second step with float64
    betas, where sqrt(v) / sqrt(1 - beta2^t) rounded into bfloat16 moves the param 1 ULP."""
    ends = []
    for module in (torch.optim, impl):
        p = torch.zeros((), dtype=torch.bfloat16)
        betas = tuple(torch.tensor(b, dtype=torch.float64) for b in (0.8984375, 0.99609375))
        opt = getattr(module, name)([p], lr=0.654296875, betas=betas, weight_decay=0.0)
        moments = {k: torch.zeros((), dtype=torch.bfloat16) for k in ("exp_avg", "exp_avg_sq")}
        opt.load_state_dict(
            {**opt.state_dict(), "state": {0: {"step": torch.tensor(1.0), **moments}}}
        )
        p.grad = torch.ones((), dtype=torch.bfloat16)
        opt.step()
        ends.append(p.item())
    assert ends[1] == ends[0], f"impl {ends[1]} != torch {ends[0]}"


@pytest.mark.parametrize("foreach", PATHS)
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128], ids=str)
def test_adadelta_complex_step_rounds_like_torch(dtype, foreach):
    """torch's for-loop Adadelta adds ``-lr * delta`` to a complex param in complex arithmetic
    (the product rounds before the sum), its foreach path as one fused real ``add``. The sweep's
    steps are too small against its params for that rounding to show; these are not."""
    impl_cls, torch_cls = PAIRS["Adadelta"]
    p = pattern((64,), 0.4, dtype) * 1e-3
    q = p.clone()
    mine = impl_cls([p], lr=0.37, foreach=foreach)
    theirs = torch_cls([q], lr=0.37, foreach=foreach)
    for step in range(4):
        g = pattern((64,), 10.0 * step, dtype)
        p.grad, q.grad = g.clone(), g.clone()
        mine.step()
        theirs.step()
        assert_bitwise_equal(p, q, f"Adadelta {dtype} param after step {step + 1}")
        assert_state_dicts_bitwise_equal(mine.state_dict(), theirs.state_dict(), "Adadelta")


@pytest.mark.parametrize("foreach", PATHS)
@pytest.mark.parametrize("name, flags", SWEEP)
def test_float64_default_dtype_makes_float64_steps(name, flags, foreach):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert_same_trajectory(name, flags, torch.float64, foreach, steps=2)
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("foreach", PATHS)
@pytest.mark.parametrize(
    "name, flags",
    [
        ("SGD", {}),
        ("SGD", {"momentum": 0.9, "dampening": 0.2, "weight_decay": 0.0}),
        ("SGD", {"momentum": 0.9, "nesterov": True, "maximize": True}),
        ("Adagrad", {"lr_decay": 0.1, "maximize": True}),
        ("Adagrad", {"initial_accumulator_value": 0.3}),
    ],
    ids=lambda v: v if isinstance(v, str) else combo_id(v),
)
def test_sparse_gradients_match_torch(name, flags, foreach):
    impl_cls, torch_cls = __import__("tests._torch_pairs", fromlist=["PAIRS"]).PAIRS[name]
    p = torch.arange(12, dtype=torch.float32).reshape(4, 3) / 7
    q = p.clone()
    mine = impl_cls([p], lr=0.1, foreach=foreach, **flags)
    theirs = torch_cls([q], lr=0.1, foreach=foreach, **flags)
    for step in range(4):
        # Duplicate indices on purpose: the update must coalesce before squaring.
        indices = torch.tensor([[step % 4, 1, 1], [0, 2, 2]])
        values = torch.tensor([0.5, -1.5 - step, 0.25])
        grad = torch.sparse_coo_tensor(indices, values, (4, 3), check_invariants=True)
        p.grad, q.grad = grad.clone(), grad.clone()
        mine.step()
        theirs.step()
        assert_bitwise_equal(p, q, f"{name} sparse step {step + 1}")
        assert_state_dicts_bitwise_equal(mine.state_dict(), theirs.state_dict(), name)


def test_foreach_nesterov_leaves_grad_untouched_unlike_torch():
    """torch's foreach SGD(nesterov) writes g + mu*b into p.grad; impl keeps p.grad intact."""
    flags = {"momentum": 0.9, "nesterov": True}

    def grads_after_two_steps(cls):
        p = torch.linspace(-1, 1, 5)
        opt = cls([p], lr=0.1, foreach=True, **flags)
        grad = torch.linspace(2, 3, 5)
        for _ in range(2):
            p.grad = grad.clone()
            opt.step()
        return p.grad, grad

    (mine, given), (theirs, _) = (
        grads_after_two_steps(SGD_PAIR[0]),
        grads_after_two_steps(SGD_PAIR[1]),
    )
    assert_bitwise_equal(mine, given, "impl p.grad after step")
    assert not torch.equal(theirs, given), "torch no longer mutates p.grad: drop the divergence"


SGD_PAIR = __import__("tests._torch_pairs", fromlist=["PAIRS"]).PAIRS["SGD"]

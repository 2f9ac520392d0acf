"""impl.Adafactor against torch.optim.Adafactor: bitwise equal params and state after every step.

Params mix every shape Adafactor treats differently: a matrix (with a transposed, non-contiguous
gradient), a 3-d tensor (a batch of factored matrices), a vector, a 0-d scalar, a transposed
strided view and a strided vector, in two groups; some gradients are ``None`` at some steps, so
params of one bucket are at different step counts. Gradients are deterministic functions of
(param index, step). Empty params are left out of these runs: torch raises ``ZeroDivisionError``
on them (``test_empty_param_raises_like_torch``).
"""

from __future__ import annotations

import copy
import itertools
import pickle
import re

import pytest
import torch
from torch.nn import Parameter
from torch.testing._internal import common_optimizers as torch_table

from impl.adafactor import Adafactor
from tests._bitwise import assert_bitwise_equal, assert_state_dicts_bitwise_equal
from tests._torch_pairs import clone_params, pattern
from tests._torch_table import construction_outcome, error_outcome

INFO = next(info for info in torch_table.optim_db if info.optim_cls is torch.optim.Adafactor)
STEPS = 5
PATHS = pytest.mark.parametrize("foreach", [False, True], ids=["for-loop", "foreach"])


def make_params(dtype: torch.dtype) -> list[torch.Tensor]:
    transposed = pattern((6, 4), 0.5, dtype).t()[:, ::2]  # 4 x 3, non-contiguous
    strided = pattern((10,), 0.6, dtype)[::2]
    assert not transposed.is_contiguous() and not strided.is_contiguous()
    return [
        pattern((3, 4), 0.1, dtype),
        pattern((2, 3, 4), 0.2, dtype),
        pattern((5,), 0.3, dtype),
        pattern((), 0.4, dtype),
        transposed,
        strided,
    ]


def grad_for(p: torch.Tensor, index: int, step: int, scale: float = 1.0) -> torch.Tensor | None:
    """No gradient for every third (param, step) pair; the matrix's gradient is a transposed
    view (norms and matmuls over a non-contiguous gradient, state shaped after it)."""
    if (index + step) % 3 == 2:
        return None
    seed = 10.0 * step + index
    if index == 0:
        return (pattern(p.shape[::-1], seed, p.dtype) * scale).t()
    return pattern(p.shape, seed, p.dtype) * scale


def groups(params: list[torch.Tensor], lr) -> list[dict]:
    """Two groups, the second at half the lr (a new tensor for a tensor lr)."""
    return [{"params": params[:3]}, {"params": params[3:], "lr": lr / 2}]


def set_grads(pairs, step: int, scale: float = 1.0) -> None:
    for i, (p, q) in enumerate(pairs):
        g = grad_for(p, i, step, scale)
        p.grad, q.grad = (None, None) if g is None else (g.clone(), g.clone())


def assert_same(mine, theirs, params, twins, what: str) -> None:
    for i, (p, q) in enumerate(zip(params, twins, strict=True)):
        assert_bitwise_equal(p, q, f"{what}: param {i}")
    assert_state_dicts_bitwise_equal(mine.state_dict(), theirs.state_dict(), what)
    for i, (p, q) in enumerate(zip(params, twins)):  # layouts too (variance follows the grad)
        for key, value in theirs.state.get(q, {}).items():
            assert mine.state[p][key].stride() == value.stride(), f"{what}: {i} {key} strides"


def run_pair(kwargs: dict, dtype=torch.float32, *, steps=STEPS, scale=1.0, build=None):
    """Step impl and torch side by side, comparing everything after every step."""
    build = build or (lambda params, kw: groups(params, kw.get("lr", 1e-2)))
    params = make_params(dtype)
    twins = clone_params(params)
    mine = Adafactor(build(params, kwargs), **copy.deepcopy(kwargs))
    theirs = torch.optim.Adafactor(build(twins, kwargs), **copy.deepcopy(kwargs))
    for step in range(steps):
        set_grads(zip(params, twins), step, scale)
        mine.step()
        theirs.step()
        assert_same(mine, theirs, params, twins, f"{kwargs} {dtype} after step {step + 1}")
    return mine, theirs, params, twins


# -- 1. torch's own configurations ------------------------------------------------------------
CONFIGS = INFO.optim_inputs_func(device="cpu")


def test_torch_table_has_configurations():
    assert len(CONFIGS) >= 5, "torch's Adafactor table shrank: the replay is vacuous"


@PATHS
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=[c.desc for c in CONFIGS])
def test_torch_configuration_is_bitwise_equal(index, dtype, foreach):
    kwargs = {**copy.deepcopy(INFO.optim_inputs_func(device="cpu")[index].kwargs)}
    run_pair({**kwargs, "foreach": foreach}, dtype)


# -- 2. errors --------------------------------------------------------------------------------
def _error_inputs():
    torch.manual_seed(0)  # torch's table draws its sample params; the values are irrelevant
    return INFO.optim_error_inputs_func(device="cpu", dtype=torch.float32)


@pytest.mark.parametrize(
    "index",
    range(len(_error_inputs())),
    ids=[e.optimizer_error_input.desc for e in _error_inputs()],
)
def test_replays_torch_error_inputs(index):
    error_input = _error_inputs()[index]
    theirs = error_outcome(torch.optim.Adafactor, error_input)
    assert theirs[0] is not None, "torch itself no longer raises here"
    assert re.search(error_input.error_regex, theirs[1]), "torch's message changed"
    assert error_outcome(Adafactor, error_input) == theirs


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": -1.0},
        {"lr": float("nan")},
        {"lr": torch.tensor([0.1, 0.2])},
        {"lr": torch.tensor([-0.1])},
        {"beta2_decay": 0.1},
        {"eps": (-1.0, -1.0)},  # epsilon1's message first
        {"eps": (None, -1.0)},
        {"d": 0.5},
        {"d": float("nan")},
        {"weight_decay": -0.1},
        {"lr": -1.0, "weight_decay": -0.1},  # the first check wins
    ],
    ids=str,
)
def test_invalid_hyperparameters_raise_like_torch(kwargs):
    theirs = construction_outcome(torch.optim.Adafactor, kwargs)
    assert theirs[0] is not None, f"torch accepts {kwargs}"
    assert construction_outcome(Adafactor, kwargs) == theirs


@pytest.mark.parametrize("bad", ["complex", "sparse", "complex-and-sparse"])
def test_refused_step_raises_like_torch_and_changes_nothing(bad):
    """torch raises in its per-group init, after stepping the earlier groups; impl raises the
    same error before touching any param or state."""
    messages = []
    for cls in (Adafactor, torch.optim.Adafactor):
        dense = torch.linspace(-1, 1, 6).reshape(2, 3)
        other = torch.ones(3, dtype=torch.complex64) if "complex" in bad else torch.ones(3)
        opt = cls([{"params": [dense]}, {"params": [other]}])
        dense.grad = torch.ones(2, 3)
        if "sparse" in bad:
            indices = torch.tensor([[0, 2]])
            values = torch.ones(2, dtype=other.dtype)
            other.grad = torch.sparse_coo_tensor(indices, values, (3,), check_invariants=True)
        else:
            other.grad = torch.ones_like(other)
        before = [dense.clone(), other.clone(), copy.deepcopy(opt.state_dict())]
        with pytest.raises(RuntimeError) as raised:
            opt.step()
        messages.append(str(raised.value))
        if cls is Adafactor:
            assert_bitwise_equal(dense, before[0], "dense param after the refused step")
            assert_bitwise_equal(other, before[1], "refused param after the refused step")
            assert_state_dicts_bitwise_equal(opt.state_dict(), before[2], "refused step")
    assert messages[0] == messages[1]


@PATHS
def test_empty_param_raises_like_torch(foreach):
    """0.0 / 0.0 in the param's RMS: ZeroDivisionError mid-step, after earlier params (and, on
    the foreach path, the whole bucket's step counts) have moved; impl ends in the same state."""
    outcomes = []
    for cls in (Adafactor, torch.optim.Adafactor):
        params = [
            pattern((3, 4), 0.1, torch.float32),
            torch.zeros(0),
            pattern((5,), 0.3, torch.float32),
        ]
        opt = cls(params, foreach=foreach)
        for p in params:
            p.grad = torch.ones_like(p)
        with pytest.raises(ZeroDivisionError) as raised:
            opt.step()
        outcomes.append((str(raised.value), params, opt))
    (mine_message, params, mine), (their_message, twins, theirs) = outcomes
    assert mine_message == their_message == "float division by zero"
    assert_same(mine, theirs, params, twins, "after the refused step")


def test_tensor_lr_foreach_mixed_schedule_raises_like_torch():
    """With a tensor lr, rho_t is lr (a tensor) while lr <= 1/sqrt(t) and a float after; a
    foreach bucket mixing both hands _foreach_mul_ a mixed list: torch's TypeError, after the
    state has moved. The for-loop path takes the same inputs."""
    results = []
    for cls in (Adafactor, torch.optim.Adafactor):
        p, q = pattern((2, 3), 0.1, torch.float32), pattern((3, 2), 0.2, torch.float32)
        opt = cls([p, q], lr=torch.tensor(0.8), foreach=True)
        p.grad = pattern((2, 3), 1.0, torch.float32)
        opt.step()  # p: t = 1, rho = lr
        q.grad = pattern((3, 2), 2.0, torch.float32)
        with pytest.raises(TypeError) as raised:
            opt.step()  # p: t = 2, rho = 1/sqrt(2), a float; q: t = 1, rho = lr
        results.append((str(raised.value), [p, q], opt))
    assert results[0][0] == results[1][0]
    assert_same(results[0][2], results[1][2], results[0][1], results[1][1], "refused step")
    run_pair({"lr": torch.tensor(0.8), "foreach": False})


# -- 3. state_dict cross-loading --------------------------------------------------------------
@PATHS
@pytest.mark.parametrize("direction", ["impl->torch", "torch->impl"])
def test_state_dict_cross_loads_mid_run(direction, foreach):
    """Three steps side by side, then a fresh optimizer of the other class loads the state and
    continues on copies of the params, bitwise with the uninterrupted optimizer of its class."""
    kwargs = {"foreach": foreach, "weight_decay": 0.1, "eps": (1e-30, 1e-3)}
    mine, theirs, params, twins = run_pair(kwargs, steps=3)
    source, target_cls = (mine, torch.optim.Adafactor)
    if direction == "torch->impl":
        source, target_cls = (theirs, Adafactor)
    loaded_params = clone_params(params)
    loaded = target_cls(groups(loaded_params, 1e-2), **kwargs)
    loaded.load_state_dict(copy.deepcopy(source.state_dict()))
    assert_state_dicts_bitwise_equal(loaded.state_dict(), source.state_dict(), "after loading")
    for step in range(3, 6):
        set_grads(zip(params, twins), step)
        for p, q in zip(loaded_params, params):
            p.grad = None if q.grad is None else q.grad.clone()
        mine.step()
        theirs.step()
        loaded.step()
        what = f"{direction}, step {step + 1}"
        if target_cls is Adafactor:
            assert_same(loaded, theirs, loaded_params, twins, what)
        else:
            assert_same(mine, loaded, params, loaded_params, what)


def test_setstate_fills_foreach_and_tensorises_step_like_torch():
    results = []
    for cls in (Adafactor, torch.optim.Adafactor):
        p = pattern((2, 3), 0.1, torch.float32)
        opt = cls([p])
        p.grad = torch.ones_like(p)
        opt.step()
        state = opt.__getstate__()
        del state["param_groups"][0]["foreach"]
        state["state"][p]["step"] = 3.0
        opt.__setstate__(state)
        clone = pickle.loads(pickle.dumps(opt))
        results.append((opt.state_dict(), clone.state_dict()))
    assert_state_dicts_bitwise_equal(results[0][0], results[1][0], "after __setstate__")
    assert_state_dicts_bitwise_equal(results[0][1], results[1][1], "after pickling")
    assert results[0][0]["param_groups"][0]["foreach"] is None
    assert results[0][0]["state"][0]["step"].dtype == torch.float32


def test_step_runs_the_closure_with_grad_and_returns_its_loss():
    p = Parameter(pattern((2, 3), 0.1, torch.float32))
    opt = Adafactor([p])

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    before = p.detach().clone()
    loss = opt.step(closure)
    assert loss.grad_fn is not None  # the closure ran with grad enabled
    assert opt.state[p]["step"].item() == 1.0
    assert not torch.equal(p.detach(), before)


# -- 4. eps1=None across dtypes ---------------------------------------------------------------
def _mixed_dtype_groups(params, kwargs):
    """float32 and float64 params in one group: which dtype's eps serves both is torch's quirk."""
    for i in (1, 3, 5):
        params[i].data = params[i].data.double()
    return [{"params": params}]


@PATHS
def test_eps1_none_with_two_dtypes_in_one_group(foreach):
    """Tiny gradients (1e-9: g^2 below float32's eps^2, above float64's) make eps1 decide the
    update. The for-loop path takes eps1 from the group's first param with a gradient, the
    foreach path from torch's first (device, dtype) bucket (float64 here)."""
    run_pair({"foreach": foreach}, build=_mixed_dtype_groups, scale=1e-9)


def test_eps1_none_quirk_is_live():
    """The paths disagree by far more than rounding on a float64 param grouped after a float32
    one, so the test above would see impl choosing the other eps."""
    ends = []
    for foreach in (False, True):
        _, _, params, _ = run_pair(
            {"foreach": foreach}, build=_mixed_dtype_groups, scale=1e-9, steps=1
        )
        ends.append(params[1])
    assert ends[0].dtype == torch.float64
    assert (ends[0] - ends[1]).abs().max() > 1e-3


# -- 5. flag sweep ----------------------------------------------------------------------------
SWEEP = list(
    itertools.product(
        [False, True],  # maximize
        [0.0, 0.1],  # weight_decay
        [None, 1e-30],  # eps1
        [1.0, 1.5],  # d
        [-0.8, -0.5],  # beta2_decay
        ["float", "tensor"],  # lr
    )
)


@PATHS
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize(
    "maximize, weight_decay, eps1, d, beta2_decay, lr",
    SWEEP,
    ids=[f"max={m},wd={w},eps1={e},d={d},b2={b},lr={lr}" for m, w, e, d, b, lr in SWEEP],
)
def test_flag_sweep_is_bitwise_equal(
    maximize, weight_decay, eps1, d, beta2_decay, lr, dtype, foreach
):
    kwargs = {
        "lr": torch.tensor(0.02) if lr == "tensor" else 0.02,
        "maximize": maximize,
        "weight_decay": weight_decay,
        "eps": (eps1, 1e-3),
        "d": d,
        "beta2_decay": beta2_decay,
        "foreach": foreach,
    }
    run_pair(kwargs, dtype)


@PATHS
@pytest.mark.parametrize("lr", [torch.tensor([0.01]), torch.tensor(0.01, dtype=torch.float64)])
def test_one_element_and_float64_tensor_lr(lr, foreach):
    run_pair({"lr": lr, "foreach": foreach, "weight_decay": 0.1}, torch.float64)


# -- paths and dtypes -------------------------------------------------------------------------
def test_foreach_none_is_the_for_loop_path():
    """Adafactor defaults to the for-loop path even where other optimizers go foreach."""
    none_run = run_pair({"foreach": None}, build=_mixed_dtype_groups, scale=1e-9, steps=2)
    loop_run = run_pair({"foreach": False}, build=_mixed_dtype_groups, scale=1e-9, steps=2)
    foreach_run = run_pair({"foreach": True}, build=_mixed_dtype_groups, scale=1e-9, steps=2)
    for p, q in zip(none_run[2], loop_run[2]):
        assert_bitwise_equal(p, q, "foreach=None vs foreach=False")
    assert not all(torch.equal(p, r) for p, r in zip(none_run[2], foreach_run[2]))


@PATHS
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"maximize": True, "weight_decay": 0.1, "d": 1.5}, {"lr": torch.tensor(0.01)}],
    ids=["defaults", "flags", "tensor-lr"],
)
def test_low_precision_is_bitwise_equal(kwargs, dtype, foreach):
    """torch computes in the param's dtype; impl does the same kernels, so the same bits."""
    run_pair({**kwargs, "foreach": foreach}, dtype)

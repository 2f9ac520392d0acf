"""impl.Muon against torch.optim.Muon: bitwise equal params and state after every step, torch's
own configurations and error table, state_dict cross-loading, a flag sweep, and
``newton_schulz`` against torch's private ``_zeropower_via_newtonschulz`` (the oracle).

Gradients are deterministic functions of (param index, step); the params are 2-d in every
layout the iteration branches on: square, tall (transposed inside), wide, a non-contiguous
transposed view and a 1 x N row, in two param groups.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import re

import pytest
import torch
from torch.nn import Parameter
from torch.optim._muon import _zeropower_via_newtonschulz as torch_newton_schulz
from torch.optim._muon import muon as torch_muon
from torch.testing._internal import common_optimizers as torch_table

from impl.muon import Muon, muon_update, newton_schulz
from tests._bitwise import assert_bitwise_equal, assert_state_dicts_bitwise_equal
from tests._torch_pairs import clone_params, pattern
from tests._torch_table import construction_outcome, error_outcome

INFO = next(info for info in torch_table.optim_db if info.optim_cls is torch.optim.Muon)
# torch's own default, read from its signature (impl restates it; the api tests compare them)
DEFAULT_COEFFICIENTS = inspect.signature(torch.optim.Muon).parameters["ns_coefficients"].default
STEPS = 4
ALL_DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


# -- side-by-side runs ------------------------------------------------------------------------
def make_params(dtype: torch.dtype) -> list[torch.Tensor]:
    view = pattern((3, 6), 0.5, dtype).T  # 6 x 3: tall and non-contiguous
    assert not view.is_contiguous()
    return [
        pattern((4, 4), 0.1, dtype),
        pattern((5, 3), 0.2, dtype),
        view,
        pattern((3, 5), 0.3, dtype),
        pattern((1, 7), 0.4, dtype),
    ]


def grad_for(p: torch.Tensor, index: int, step: int) -> torch.Tensor | None:
    """Every third (param, step) pair has no gradient; the others carry the param's strides,
    so the momentum buffer (``zeros_like(grad)``) is non-contiguous for the view too."""
    if (index + step) % 3 == 2:
        return None
    g = torch.empty_strided(p.size(), p.stride(), dtype=p.dtype)
    return g.copy_(pattern(p.shape, 10.0 * step + index, p.dtype))


def groups(params, second: dict | None = None) -> list[dict]:
    return [{"params": params[:3]}, {"params": params[3:], **(second or {})}]


def set_grads(step: int, *param_lists) -> None:
    for i, ps in enumerate(zip(*param_lists)):
        g = grad_for(ps[0], i, step)
        for p in ps:
            p.grad = None if g is None else g.clone(memory_format=torch.preserve_format)


def assert_same(mine, theirs, params, twins, what: str) -> None:
    for i, (p, q) in enumerate(zip(params, twins)):
        assert_bitwise_equal(p.detach(), q.detach(), f"{what}: param {i}")
        # bits() compares contiguous copies: the buffer's layout is checked here
        if p in mine.state or q in theirs.state:
            ours, their = mine.state[p]["momentum_buffer"], theirs.state[q]["momentum_buffer"]
            assert ours.stride() == their.stride(), f"{what}: buffer {i} strides"
    assert_state_dicts_bitwise_equal(mine.state_dict(), theirs.state_dict(), what)


def run_pair(kwargs: dict, dtype: torch.dtype, *, second: dict | None = None, steps=STEPS):
    params = [Parameter(p) for p in make_params(dtype)]
    twins = [Parameter(p) for p in clone_params([p.detach() for p in params])]
    mine = Muon(groups(params, second), **copy.deepcopy(kwargs))
    theirs = torch.optim.Muon(groups(twins, copy.deepcopy(second)), **copy.deepcopy(kwargs))
    for step in range(steps):
        set_grads(step, params, twins)
        mine.step()
        theirs.step()
        assert_same(mine, theirs, params, twins, f"step {step}")
    return mine, theirs, params, twins


def test_params_keep_their_layouts():
    params = [Parameter(p) for p in make_params(torch.float32)]
    assert not params[2].is_contiguous() and params[2].shape == (6, 3)
    assert not grad_for(params[2], 2, 1).is_contiguous()


# -- 1. torch's own configurations ------------------------------------------------------------
def _configurations():
    for index, optim_input in enumerate(INFO.optim_inputs_func(device="cpu")):
        yield pytest.param(index, id=optim_input.desc)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("index", list(_configurations()))
def test_torch_configuration_is_bitwise_equal(index, dtype):
    kwargs = INFO.optim_inputs_func(device="cpu")[index].kwargs
    second = {} if torch.is_tensor(kwargs.get("lr")) else {"lr": kwargs.get("lr", 1e-3) * 0.5}
    mine, _, params, _ = run_pair(kwargs, dtype, second=second)
    assert all("momentum_buffer" in mine.state[p] for p in params)


def test_torch_table_has_configurations():
    assert len(INFO.optim_inputs_func(device="cpu")) >= 7


# -- 2. torch's error table -------------------------------------------------------------------
def _error_inputs():
    torch.manual_seed(0)  # torch's table draws its sample params; the values are irrelevant
    return INFO.optim_error_inputs_func(device="cpu", dtype=torch.float32)


@pytest.mark.parametrize(
    "index",
    [pytest.param(i, id=e.optimizer_error_input.desc) for i, e in enumerate(_error_inputs())],
)
def test_replays_torch_error_inputs(index):
    error_input = _error_inputs()[index]
    theirs = error_outcome(torch.optim.Muon, error_input, (2, 2))
    assert theirs[0] is not None, "torch itself no longer raises here"
    assert re.search(error_input.error_regex, theirs[1]), "torch's message changed"
    assert error_outcome(Muon, error_input, (2, 2)) == theirs


def test_torch_error_table_is_not_vacuous():
    assert len(_error_inputs()) >= 6


def _construct(cls, kwargs, params=None):
    return construction_outcome(cls, kwargs, params, shape=(2, 2))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": -1.0},
        {"lr": float("nan")},
        {"lr": torch.tensor([0.1, 0.2])},
        {"lr": torch.tensor(-0.1)},
        {"momentum": -0.5},
        {"weight_decay": -1e-3},
        {"adjust_lr_fn": "Original"},
        {"lr": -1.0, "momentum": -1.0, "adjust_lr_fn": "x"},  # the first check wins
        {"momentum": -1.0, "weight_decay": -1.0},
        {"foreach": True},  # torch's Muon has no foreach argument: a TypeError
        {"fused": True},
    ],
    ids=str,
)
def test_invalid_arguments_raise_like_torch(kwargs):
    theirs = _construct(torch.optim.Muon, kwargs)
    assert theirs[0] is not None, f"torch accepts {kwargs}"
    assert _construct(Muon, kwargs) == theirs


@pytest.mark.parametrize(
    "params",
    [
        [Parameter(torch.zeros(3))],
        [Parameter(torch.zeros(2, 2)), Parameter(torch.zeros(1, 2, 2))],
        [{"params": [Parameter(torch.zeros(2, 2))]}, {"params": [Parameter(torch.zeros(()))]}],
        Parameter(torch.zeros(3)),  # not an iterable: the base class's TypeError comes first
    ],
    ids=["1-d", "3-d", "0-d-in-second-group", "bare-tensor"],
)
def test_non_2d_params_are_refused_at_construction(params):
    theirs = _construct(torch.optim.Muon, {}, params)
    assert theirs[0] is not None
    assert _construct(Muon, {}, copy.deepcopy(params)) == theirs


def _step_error(cls, build):
    """Build (params, optimizer) with ``cls``, step once; the error, the params and the state."""
    params, opt = build(cls)
    try:
        opt.step()
    except Exception as e:
        return (type(e), str(e)), [p.detach().clone() for p in params], opt.state_dict()
    return (None, None), [p.detach().clone() for p in params], opt.state_dict()


def _with_grads(params, grads=None):
    for i, p in enumerate(params):
        p.grad = torch.ones_like(p) if grads is None else grads[i]
    return params


def _two_groups(cls, params, first: dict, second: dict):
    return params, cls([{"params": params[:1], **first}, {"params": params[1:], **second}])


STEP_ERRORS = {
    # group 0 steps in torch before group 1 raises
    "ns_steps=100": lambda cls: _two_groups(
        cls,
        _with_grads([Parameter(torch.eye(2)), Parameter(torch.ones(2, 3))]),
        {"ns_steps": 3},
        {"ns_steps": 100},
    ),
    "ns_steps=None": lambda cls: _two_groups(
        cls, _with_grads([Parameter(torch.eye(2)), Parameter(torch.eye(2))]), {}, {"ns_steps": None}
    ),
    "two-coefficients": lambda cls: _two_groups(
        cls,
        _with_grads([Parameter(torch.eye(2)), Parameter(torch.eye(2))]),
        {},
        {"ns_coefficients": (3.0, -4.0)},
    ),
    "ns_steps-checked-before-coefficients": lambda cls: _two_groups(
        cls,
        _with_grads([Parameter(torch.eye(2)), Parameter(torch.eye(2))]),
        {},
        {"ns_steps": 101, "ns_coefficients": (3.0,)},
    ),
    "sparse-gradient": lambda cls: _two_groups(
        cls,
        _with_grads(
            [Parameter(torch.eye(2)), Parameter(torch.eye(2))],
            [torch.ones(2, 2), torch.eye(2).to_sparse()],
        ),
        {},
        {},
    ),
    # in one group, the first offending param decides, whatever the later params bring
    "complex-param-before-a-sparse-gradient": lambda cls: _two_groups(
        cls,
        _with_grads(
            [Parameter(torch.eye(2)), torch.eye(2, dtype=torch.complex64), Parameter(torch.eye(2))],
            [torch.ones(2, 2), torch.ones(2, 2, dtype=torch.complex64), torch.eye(2).to_sparse()],
        ),
        {},
        {},
    ),
    "sparse-gradient-before-a-complex-param": lambda cls: _two_groups(
        cls,
        _with_grads(
            [Parameter(torch.eye(2)), Parameter(torch.eye(2)), torch.eye(2, dtype=torch.complex64)],
            [torch.ones(2, 2), torch.eye(2).to_sparse(), torch.ones(2, 2, dtype=torch.complex64)],
        ),
        {},
        {},
    ),
    # the 2-d check is only in the constructor; torch raises at the param itself, mid-group
    "1-d-param-through-add_param_group": lambda cls: _added_group(
        cls,
        _with_grads([Parameter(torch.eye(2)), Parameter(torch.eye(2)), Parameter(torch.ones(3))]),
    ),
    # "original" divides rows by cols in Python: the param after NS, before the update
    "3x0-param": lambda cls: _two_groups(
        cls, _with_grads([Parameter(torch.eye(2)), Parameter(torch.zeros(3, 0))]), {}, {}
    ),
    "0x0-param": lambda cls: _two_groups(
        cls,
        _with_grads([Parameter(torch.eye(2)), Parameter(torch.zeros(0, 0))]),
        {},
        {"adjust_lr_fn": "original"},
    ),
}


def _added_group(cls, params):
    opt = cls(params[:1], lr=0.1)
    opt.add_param_group({"params": params[1:]})
    return params, opt


@pytest.mark.parametrize("name", list(STEP_ERRORS))
def test_step_errors_match_torch_and_impl_changes_nothing(name):
    """Same class and message as torch. torch raises mid-step (earlier params moved, momentum
    buffers created or lerped); impl raises before touching anything."""
    theirs, _, _ = _step_error(torch.optim.Muon, STEP_ERRORS[name])
    assert theirs[0] is not None, "torch accepts this step"
    params, opt = STEP_ERRORS[name](Muon)
    before = [p.detach().clone() for p in params]
    mine, after, state = _step_error(Muon, lambda _: (params, opt))
    assert mine == theirs
    for i, (p, q) in enumerate(zip(after, before)):
        assert_bitwise_equal(p, q, f"param {i} after the refused step")
    assert state["state"] == {}, "impl created state in a refused step"


def test_torch_moves_params_before_a_step_error():
    """The divergence the previous test allows: torch's group 0 steps before group 1 raises."""
    _, after, state = _step_error(torch.optim.Muon, STEP_ERRORS["ns_steps=100"])
    assert not torch.equal(after[0], torch.eye(2))
    assert state["state"][1]["momentum_buffer"].eq(0.05).all()  # lerped, then the raise


def test_a_zero_by_n_param_steps_and_an_n_by_zero_one_under_match_rms_adamw():
    for kwargs, shape in [({}, (0, 3)), ({"adjust_lr_fn": "match_rms_adamw"}, (3, 0))]:
        for cls in (Muon, torch.optim.Muon):
            p = Parameter(torch.zeros(shape))
            p.grad = torch.zeros(shape)
            opt = cls([p], **kwargs)
            opt.step()
            assert opt.state[p]["momentum_buffer"].shape == shape


def test_foreach_exists_only_in_the_functional_form_like_torch():
    """torch's Muon takes no ``foreach`` argument; a group that carries ``foreach=True`` steps
    as any other (step never passes it on); only the functional ``muon`` refuses it."""
    errors = []
    for fn in (torch_muon, muon_update):
        with pytest.raises(RuntimeError) as raised:
            fn(
                [],
                [],
                [],
                foreach=True,
                lr=0.1,
                weight_decay=0.0,
                momentum=0.9,
                nesterov=True,
                ns_coefficients=DEFAULT_COEFFICIENTS,
                ns_steps=5,
                eps=1e-7,
                adjust_lr_fn=None,
                **({"has_complex": False} if fn is torch_muon else {}),
            )
        errors.append(str(raised.value))
    assert errors[0] == errors[1] == "Foreach is not supported for Muon yet"
    mine = run_pair({}, torch.float32, second={"foreach": True}, steps=2)[0]
    assert mine.param_groups[1]["foreach"] is True


# -- 3. state_dict cross-loading --------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("lr", [0.02, torch.tensor(0.02)], ids=["float-lr", "tensor-lr"])
def test_state_dict_cross_load_continues_bitwise(dtype, lr):
    kwargs = {"lr": lr, "weight_decay": 0.05, "adjust_lr_fn": "match_rms_adamw"}
    mine, theirs, params, twins = run_pair(kwargs, dtype, steps=3)
    # impl -> torch and torch -> impl, each on fresh optimizers over copies of the params
    to_torch_params = [Parameter(p) for p in clone_params([p.detach() for p in params])]
    to_impl_params = [Parameter(p) for p in clone_params([p.detach() for p in twins])]
    to_torch = torch.optim.Muon(groups(to_torch_params), lr=0.5)
    to_impl = Muon(groups(to_impl_params), lr=0.5)
    to_torch.load_state_dict(copy.deepcopy(mine.state_dict()))
    to_impl.load_state_dict(copy.deepcopy(theirs.state_dict()))
    assert_state_dicts_bitwise_equal(to_impl.state_dict(), to_torch.state_dict(), "after load")
    runs = [(mine, params), (theirs, twins), (to_torch, to_torch_params), (to_impl, to_impl_params)]
    for step in range(3, 6):
        set_grads(step, *(ps for _, ps in runs))
        for opt, _ in runs:
            opt.step()
        for opt, ps in runs[1:]:
            assert_same(mine, opt, params, ps, f"step {step}, {type(opt).__module__}")


# -- 4. the flag sweep ------------------------------------------------------------------------
SWEEP = [
    dict(zip(("nesterov", "momentum", "weight_decay", "adjust_lr_fn", "ns_steps"), values))
    for values in itertools.product(
        (True, False), (0.0, 0.9), (0.0, 0.1), (None, "original", "match_rms_adamw"), (1, 5)
    )
]


def _flags_id(flags: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in flags.items())


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("flags", SWEEP, ids=_flags_id)
def test_flag_sweep_is_bitwise_equal(flags, dtype):
    run_pair({**flags, "lr": 0.05}, dtype, second={"lr": 0.02})


EXTRAS = [
    {"ns_coefficients": (3.4, -4.7, 2.0)},
    {"ns_coefficients": (2.0, -1.5, 0.5), "ns_steps": 3},
    {"ns_coefficients": [1.5, -0.5, 0.0]},  # a list works in torch too
    {"ns_steps": 0},  # the normalised (bfloat16) update itself
    {"eps": 1e-3},
    {"eps": 10.0},  # a clamp above every gradient's norm: no normalisation at all
    {"eps": 0.0},
    {"lr": torch.tensor(0.05)},
    {"lr": torch.tensor([0.05])},  # 1-element 1-d: squeezed as torch does
    {"lr": torch.tensor(0.05, dtype=torch.float64), "weight_decay": 0.3},
    {"momentum": 1.0},  # the buffer never moves from 0
    {"adjust_lr_fn": "unknown"},  # only via a param group in torch; the ratio is 1
]


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("nesterov", [True, False], ids=["nesterov", "plain"])
@pytest.mark.parametrize("extra", EXTRAS, ids=_flags_id)
def test_extra_hyperparameters_are_bitwise_equal(extra, nesterov, dtype):
    extra = dict(extra)
    second = {"adjust_lr_fn": extra.pop("adjust_lr_fn")} if "adjust_lr_fn" in extra else None
    run_pair({**extra, "nesterov": nesterov, "weight_decay": 0.1}, dtype, second=second)


def test_closure_is_called_with_grad_enabled_and_its_loss_returned():
    losses = []
    for cls in (Muon, torch.optim.Muon):
        p = Parameter(pattern((3, 4), 0.1, torch.float32))
        opt = cls([p], lr=0.1)

        def closure(p=p, opt=opt):
            opt.zero_grad()
            loss = (p**3).sum()
            loss.backward()
            return loss

        losses.append((opt.step(closure).item(), p.detach().clone()))
    assert losses[0][0] == losses[1][0]
    assert_bitwise_equal(losses[0][1], losses[1][1], "param after closure step")


# -- 5. newton_schulz against torch's private function ----------------------------------------
NS_INPUTS = {
    "square": lambda dtype: pattern((4, 4), 1.0, dtype),
    "tall": lambda dtype: pattern((7, 3), 2.0, dtype),
    "wide": lambda dtype: pattern((3, 7), 3.0, dtype),
    "row": lambda dtype: pattern((1, 9), 4.0, dtype),
    "column": lambda dtype: pattern((9, 1), 5.0, dtype),
    "transposed-view": lambda dtype: pattern((5, 8), 6.0, dtype).T,
    "strided-view": lambda dtype: pattern((6, 10), 7.0, dtype)[::2, 1::3],
    "large": lambda dtype: pattern((48, 32), 8.0, dtype),
    "zero": lambda dtype: torch.zeros(3, 4, dtype=dtype),
    "empty": lambda dtype: torch.zeros(0, 4, dtype=dtype),
}


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize(
    "coefficients, steps, eps",
    [(DEFAULT_COEFFICIENTS, 5, 1e-7), ((3.4, -4.7, 2.0), 2, 1e-7), ((1.5, -0.5, 0.0), 8, 4.0)],
    ids=["default", "custom", "clamping-eps"],
)
@pytest.mark.parametrize("shape", list(NS_INPUTS))
def test_newton_schulz_is_torchs_iteration_bitwise(shape, coefficients, steps, eps, dtype):
    matrix = NS_INPUTS[shape](dtype)
    ours_in, theirs_in = clone_params([matrix, matrix])
    ours = newton_schulz(ours_in, coefficients, steps, eps)
    theirs = torch_newton_schulz(theirs_in, coefficients, steps, eps)
    assert ours.dtype == torch.bfloat16
    assert ours.stride() == theirs.stride()
    assert_bitwise_equal(ours, theirs, f"newton_schulz {shape}")
    # a bfloat16 input is normalised in place by both (the cast does not copy)
    assert_bitwise_equal(ours_in, theirs_in, "input after newton_schulz")


@pytest.mark.parametrize(
    "args",
    [
        (torch.eye(2), DEFAULT_COEFFICIENTS, 100, 1e-7),
        (torch.ones(2, 2, 2), DEFAULT_COEFFICIENTS, 5, 1e-7),
        (torch.ones(3), (1.0, 2.0), 5, 1e-7),
        (torch.eye(2), (1.0, 2.0, 3.0, 4.0), 5, 1e-7),
        (torch.ones(3), (1.0, 2.0), 100, 1e-7),
    ],
    ids=["100-steps", "3-d", "1-d-and-2-coefficients", "4-coefficients", "all-wrong"],
)
def test_newton_schulz_refuses_like_torch(args):
    outcomes = []
    for fn in (newton_schulz, torch_newton_schulz):
        with pytest.raises(ValueError) as raised:
            fn(*args)
        outcomes.append(str(raised.value))
    assert outcomes[0] == outcomes[1]


def test_newton_schulz_makes_singular_values_near_one():
    """The docstring's claim: default coefficients push every singular value of a well-
    conditioned matrix into roughly [0.65, 1.2] after five steps."""
    s = torch.linalg.svdvals(
        newton_schulz(pattern((16, 8), 1.0, torch.float64), DEFAULT_COEFFICIENTS, 5, 1e-7).double()
    )
    assert s.min() > 0.6 and s.max() < 1.25, s


# -- torch's quirks, pinned ---------------------------------------------------------------------
def test_bfloat16_without_nesterov_normalises_the_momentum_buffer_in_place():
    """``grad.bfloat16()`` is the buffer itself for a bfloat16 param, and torch divides it in
    place by its norm: the stored momentum has unit Frobenius norm after every step."""
    for cls in (Muon, torch.optim.Muon):
        p = Parameter(pattern((3, 4), 0.1, torch.bfloat16))
        p.grad = pattern((3, 4), 0.2, torch.bfloat16) * 8
        opt = cls([p], nesterov=False, momentum=0.9)
        opt.step()
        norm = opt.state[p]["momentum_buffer"].float().norm().item()
        assert abs(norm - 1) < 1e-2, norm


@pytest.mark.parametrize("k", [-20, -4, 10, 40])
def test_power_of_two_gradient_scaling_leaves_the_trajectory_bitwise_unchanged(k):
    """eps is a clamp, not an added term: while every norm is above it, 2**k * grad gives the
    same bits (buffer scaled exactly, normalisation removes it)."""
    ends = []
    for scale in (1.0, 2.0**k):
        p = Parameter(pattern((3, 5), 0.1, torch.float32))
        opt = Muon([p], lr=0.1)
        for step in range(4):
            p.grad = pattern((3, 5), step, torch.float32) * scale
            opt.step()
        ends.append(p.detach().clone())
    assert_bitwise_equal(ends[1], ends[0], f"param with grads scaled by 2**{k}")


def test_zero_gradient_gives_a_zero_update_not_nan():
    for cls in (Muon, torch.optim.Muon):
        p = Parameter(torch.ones(2, 3))
        p.grad = torch.zeros(2, 3)
        cls([p], lr=0.1, weight_decay=0.5).step()
        assert torch.equal(p.detach(), torch.full((2, 3), 0.95))


def test_eps_zero_and_a_zero_gradient_give_nan_params_in_both():
    """eps is not validated; at 0 the clamp leaves 0/0 for a zero gradient."""
    ends = []
    for cls in (Muon, torch.optim.Muon):
        p = Parameter(torch.ones(2, 3))
        p.grad = torch.zeros(2, 3)
        cls([p], lr=0.1, eps=0.0).step()
        ends.append(p.detach().clone())
    assert ends[0].isnan().all()
    assert_bitwise_equal(ends[0], ends[1], "param after 0/0")


def test_a_gradient_whose_norm_overflows_gives_a_zero_update():
    """The Frobenius norm of the bfloat16 matrix overflows to inf once the squares pass the
    float32 range (elements of 1e19 here): X / inf is 0, so such a step only decays."""
    ends = []
    for cls in (Muon, torch.optim.Muon):
        p = Parameter(torch.ones(2, 3))
        p.grad = torch.full((2, 3), 1e19)  # momentum 0: the update is the gradient itself
        cls([p], lr=0.1, weight_decay=0.0, momentum=0.0).step()
        ends.append(p.detach().clone())
    assert torch.equal(ends[0], torch.ones(2, 3))
    assert_bitwise_equal(ends[0], ends[1], "param after an overflowing gradient")

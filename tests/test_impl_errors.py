"""Bad input raises what torch.optim raises (same class, same message) and changes nothing.

The first test replays torch's own error-input table (``common_optimizers.py``) against impl.
"""

from __future__ import annotations

import copy
import re

import pytest
import torch
from torch.nn import Parameter
from torch.testing._internal import common_optimizers as torch_table

import impl
from tests._bitwise import assert_bitwise_equal, assert_state_dicts_bitwise_equal
from tests._torch_pairs import OPTIMIZER_NAMES, PAIRS
from tests._torch_table import construction_outcome, error_outcome

ERROR_INPUT_FUNCS = {
    name: getattr(torch_table, f"optim_error_inputs_func_{name.lower()}")
    for name in OPTIMIZER_NAMES
}


def _torch_error_inputs(name: str):
    torch.manual_seed(0)  # torch's table draws its sample params with randn; values are irrelevant
    return ERROR_INPUT_FUNCS[name](device="cpu", dtype=torch.float32)


CASES = [
    pytest.param(name, index, id=f"{name}-{error_input.optimizer_error_input.desc}")
    for name in OPTIMIZER_NAMES
    for index, error_input in enumerate(_torch_error_inputs(name))
]


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_torch_table_has_error_inputs(name):
    assert len(_torch_error_inputs(name)) >= 6, "torch's error table shrank: the replay is vacuous"


@pytest.mark.parametrize("name, index", CASES)
def test_replays_torch_error_inputs(name, index):
    error_input = _torch_error_inputs(name)[index]
    impl_cls, torch_cls = PAIRS[name]
    theirs = error_outcome(torch_cls, error_input)
    assert theirs[0] is not None, "torch itself no longer raises here"
    assert re.search(error_input.error_regex, theirs[1]), "torch's message changed"
    assert error_outcome(impl_cls, error_input) == theirs


HYPERPARAMETER_ERRORS = {
    "SGD": [
        {"lr": -1.0},
        {"momentum": -0.5},
        {"weight_decay": -1e-3},
        {"nesterov": True},
        {"nesterov": True, "momentum": 0.9, "dampening": 0.1},
        {"lr": torch.tensor([0.1, 0.2])},
    ],
    "Adagrad": [
        {"lr": -1.0},
        {"lr": float("nan")},
        {"lr_decay": -1.0},
        {"weight_decay": -1.0},
        {"initial_accumulator_value": -1.0},
        {"eps": -1.0},
    ],
    "RMSprop": [
        {"lr": -1.0},
        {"eps": -1.0},
        {"momentum": -1.0},
        {"weight_decay": -1.0},
        {"alpha": -1.0},
    ],
    "Adam": [
        {"lr": -1.0},
        {"eps": -1.0},
        {"betas": (1.0, 0.9)},
        {"betas": (0.9, -0.1)},
        {"betas": (0, 0.9)},
        {"weight_decay": -1.0},
        {"lr": torch.tensor(0.1), "foreach": True},
        {"betas": (torch.tensor(0.9), torch.tensor(0.99)), "foreach": True},
        {"fused": True, "foreach": True},
        {"fused": True, "differentiable": True},
    ],
}
HYPERPARAMETER_ERRORS["AdamW"] = HYPERPARAMETER_ERRORS["Adam"]


@pytest.mark.parametrize(
    "name, kwargs",
    [
        pytest.param(name, kwargs, id=f"{name}-{kwargs}")
        for name, cases in HYPERPARAMETER_ERRORS.items()
        for kwargs in cases
    ],
)
def test_invalid_hyperparameters_raise_like_torch(name, kwargs):
    impl_cls, torch_cls = PAIRS[name]
    theirs = construction_outcome(torch_cls, kwargs)
    assert theirs[0] is not None, f"torch accepts {kwargs}"
    assert construction_outcome(impl_cls, kwargs) == theirs


def test_rmsprop_accepts_alpha_above_one_like_torch():
    assert construction_outcome(impl.RMSprop, {"alpha": 1.5}) == (None, None)
    assert construction_outcome(torch.optim.RMSprop, {"alpha": 1.5}) == (None, None)


UNSUPPORTED = [
    (name, flag)
    for name in OPTIMIZER_NAMES
    for flag in ("fused", "capturable", "differentiable")
    if flag in PAIRS[name][1].__init__.__code__.co_varnames
    and not (flag == "fused" and PAIRS[name][0].has_fused_kernels)
]


@pytest.mark.parametrize("name, flag", UNSUPPORTED, ids=[f"{n}-{f}" for n, f in UNSUPPORTED])
def test_unimplemented_flags_raise_naming_the_flag(name, flag):
    with pytest.raises(NotImplementedError, match=rf"impl\.{name} does not implement {flag}=True"):
        PAIRS[name][0]([Parameter(torch.zeros(2))], **{flag: True})


@pytest.mark.parametrize("name, flag", UNSUPPORTED, ids=[f"{n}-{f}" for n, f in UNSUPPORTED])
def test_unimplemented_flag_in_a_loaded_group_raises_at_step_and_changes_nothing(name, flag):
    p = Parameter(torch.linspace(-1, 1, 4))
    opt = PAIRS[name][0]([p], lr=0.1)
    p.grad = torch.ones(4)
    opt.step()
    saved = copy.deepcopy(opt.state_dict())
    saved["param_groups"][0][flag] = True
    opt.load_state_dict(saved)
    before_p, before_state = p.detach().clone(), copy.deepcopy(opt.state_dict())
    with pytest.raises(NotImplementedError, match=flag):
        opt.step()
    assert_bitwise_equal(p.detach(), before_p, "param after the refused step")
    assert_state_dicts_bitwise_equal(opt.state_dict(), before_state, "state after refused step")


SPARSE_REFUSERS = ["Adam", "AdamW", "RMSprop"]


def _sparse_grad(n: int) -> torch.Tensor:
    indices, values = torch.tensor([[0, n - 1]]), torch.tensor([1.0, -2.0])
    return torch.sparse_coo_tensor(indices, values, (n,), check_invariants=True)


@pytest.mark.parametrize("name", [*SPARSE_REFUSERS, "Adagrad-with-weight-decay"])
def test_sparse_gradient_refusal_matches_torch_and_loses_nothing(name):
    """torch raises mid-step, after updating earlier params; impl raises before touching any."""
    kwargs = {"weight_decay": 0.1} if name.startswith("Adagrad") else {}
    name = name.split("-")[0]
    impl_cls, torch_cls = PAIRS[name]
    messages = []
    for cls in (impl_cls, torch_cls):
        dense, sparse = torch.linspace(-1, 1, 4), torch.linspace(1, 2, 4)
        opt = cls([{"params": [dense]}, {"params": [sparse]}], lr=0.1, **kwargs)
        dense.grad, sparse.grad = torch.ones(4), _sparse_grad(4)
        before = [dense.clone(), sparse.clone(), copy.deepcopy(opt.state_dict())]
        with pytest.raises(RuntimeError) as raised:
            opt.step()
        messages.append(str(raised.value))
        if cls is impl_cls:
            assert_bitwise_equal(dense, before[0], "dense param after refused step")
            assert_bitwise_equal(sparse, before[1], "sparse param after refused step")
            assert_state_dicts_bitwise_equal(opt.state_dict(), before[2], "state after refusal")
    assert messages[0] == messages[1]


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_tensor_lr_with_foreach_from_a_param_group_raises_at_step_like_torch(name):
    outcomes = []
    for cls in PAIRS[name]:
        p = Parameter(torch.ones(3))
        opt = cls([p], lr=0.1)
        opt.add_param_group(
            {"params": [Parameter(torch.ones(2))], "lr": torch.tensor(0.1), "foreach": True}
        )
        for group in opt.param_groups:
            for q in group["params"]:
                q.grad = torch.ones_like(q)
        with pytest.raises(RuntimeError) as raised:
            opt.step()
        outcomes.append(str(raised.value))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("foreach", [False, True], ids=["for-loop", "foreach"])
def test_a_step_refused_half_way_keeps_no_new_momentum_buffer(foreach):
    """torch stores SGD's new momentum buffers after its functional call: when the float16
    kernel refuses dampening=1e300 at the second param (a carried buffer), the first param has
    moved but keeps no buffer. impl ends in the same place."""
    ends = []
    for module in (torch.optim, impl):
        fresh, carried = torch.zeros(2, dtype=torch.float16), torch.zeros(2, dtype=torch.float16)
        opt = module.SGD([fresh, carried], lr=1.0, momentum=0.5, dampening=1e300, foreach=foreach)
        opt.state[carried]["momentum_buffer"] = torch.ones(2, dtype=torch.float16)
        fresh.grad, carried.grad = (
            torch.ones(2, dtype=torch.float16),
            torch.ones(2, dtype=torch.float16),
        )
        with pytest.raises(RuntimeError, match="without overflow"):
            opt.step()
        ends.append((fresh.tolist(), carried.tolist(), "momentum_buffer" in opt.state[fresh]))
    assert ends[1] == ends[0]


@pytest.mark.parametrize("name", ["NAdam", "RAdam"])
def test_tensor_betas_on_the_foreach_path_raise_torchs_error(name):
    """torch's NAdam and RAdam foreach paths pass 1 - beta2 positionally to _foreach_addcmul_,
    where a 0-d tensor binds to the packed ``scalars`` overload and is refused."""
    errors = []
    for module in (torch.optim, impl):
        p = torch.ones(3)
        p.grad = torch.ones(3)
        opt = getattr(module, name)([p], betas=torch.tensor([0.1, 0.2]), foreach=True)
        with pytest.raises(Exception) as info:
            opt.step()
        errors.append((type(info.value), str(info.value)))
    assert errors[1] == errors[0]


def test_adamax_foreach_refuses_a_one_element_eps_before_counting_the_step():
    """torch's foreach Adamax adds eps with _foreach_add_, which refuses a 1-element tensor,
    after it has counted the step and moved both moments. impl raises torch's error with the
    moments and the count as they were (the zero state a first step sets up stays, as torch's)."""
    errors, ends = [], []
    for module in (torch.optim, impl):
        p = torch.ones(3, dtype=torch.float64)
        p.grad = torch.full((3,), 0.5, dtype=torch.float64)
        opt = module.Adamax([p], eps=torch.tensor([0.1]), foreach=True)
        with pytest.raises(RuntimeError) as info:
            opt.step()
        errors.append(str(info.value))
        ends.append({k: v.tolist() for k, v in opt.state[p].items()})
    assert errors[1] == errors[0]
    assert ends[1] == {"step": 0.0, "exp_avg": [0.0] * 3, "exp_inf": [0.0] * 3}, ends[1]
    assert ends[0]["step"] == 1.0, f"torch's foreach Adamax no longer counts first: {ends[0]}"

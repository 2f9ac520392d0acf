"""A state_dict saved by torch.optim loads into impl and training continues bitwise; and back."""

from __future__ import annotations

import copy

import pytest
import torch

from tests._bitwise import assert_bitwise_equal, assert_state_dicts_bitwise_equal
from tests._torch_pairs import (
    OPTIMIZER_NAMES,
    PAIRS,
    clone_params,
    combo_id,
    flag_combinations,
    grad_for,
    make_params,
    param_groups,
)

SWEEP = [
    pytest.param(name, flags, id=f"{name}[{combo_id(flags)}]")
    for name in OPTIMIZER_NAMES
    for flags in flag_combinations(name)
]
DIRECTIONS = [
    pytest.param("torch->impl", id="torch-saves-impl-loads"),
    pytest.param("impl->torch", id="impl-saves-torch-loads"),
]


def _train(opt, params, steps: range) -> None:
    for step in steps:
        for i, p in enumerate(params):
            g = grad_for(p, i, step)
            p.grad = None if g is None else g.clone()
        opt.step()


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("foreach", [False, True], ids=["for-loop", "foreach"])
@pytest.mark.parametrize("name, flags", SWEEP)
def test_cross_load_continues_bitwise(name, flags, foreach, direction):
    impl_cls, torch_cls = PAIRS[name]
    saver_cls, loader_cls = (
        (torch_cls, impl_cls)
        if direction == "torch->impl"
        else (
            impl_cls,
            torch_cls,
        )
    )
    kwargs = {**flags, "lr": 0.05, "foreach": foreach}

    # The saver trains 3 steps and is the reference for 3 more.
    params = make_params(torch.float32)
    saver = saver_cls(param_groups(params, flags, 0.05), **kwargs)
    _train(saver, params, range(3))
    saved = copy.deepcopy(saver.state_dict())

    # The loader starts from a copy of the params mid-training and from the saved state.
    resumed = clone_params(params)
    loader = loader_cls(param_groups(resumed, flags, 0.05), **kwargs)
    loader.load_state_dict(saved)
    assert_state_dicts_bitwise_equal(loader.state_dict(), saver.state_dict(), "after load")

    _train(saver, params, range(3, 6))
    _train(loader, resumed, range(3, 6))
    for i, (p, q) in enumerate(zip(resumed, params)):
        assert_bitwise_equal(p, q, f"{direction}: param {i} three steps after the load")
    assert_state_dicts_bitwise_equal(loader.state_dict(), saver.state_dict(), "after resuming")


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_state_dict_layout_equals_torch_before_any_step(name):
    """Adagrad's eager state included; the others have none until the first step."""
    impl_cls, torch_cls = PAIRS[name]
    mine = impl_cls(make_params(torch.float32))
    theirs = torch_cls(make_params(torch.float32))
    assert_state_dicts_bitwise_equal(mine.state_dict(), theirs.state_dict(), name)


@pytest.mark.parametrize("name", [n for n in OPTIMIZER_NAMES if n != "SGD"])  # SGD has no step
def test_python_number_step_in_checkpoint_becomes_a_tensor(name):
    """Checkpoints from old torch versions store ``step`` as a number; torch converts it."""
    impl_cls, torch_cls = PAIRS[name]
    opts = []
    for cls in (impl_cls, torch_cls):
        params = make_params(torch.float32)
        opt = cls(params)
        _train(opt, params, range(2))
        saved = copy.deepcopy(opt.state_dict())
        for state in saved["state"].values():
            state["step"] = float(state["step"])
        fresh = cls(clone_params(params))
        fresh.load_state_dict(saved)
        opts.append(fresh)
    assert_state_dicts_bitwise_equal(opts[0].state_dict(), opts[1].state_dict(), name)

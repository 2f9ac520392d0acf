"""impl classes are drop-ins: same signatures, defaults, base class, hooks and schedulers."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch.nn import Parameter

import impl
from tests._bitwise import assert_bitwise_equal
from tests._torch_pairs import OPTIMIZER_NAMES, PAIRS


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_constructor_signature_equals_torch(name):
    impl_cls, torch_cls = PAIRS[name]
    mine, theirs = inspect.signature(impl_cls.__init__), inspect.signature(torch_cls.__init__)
    as_table = lambda sig: [(p.name, p.kind, p.default) for p in sig.parameters.values()]  # noqa: E731
    assert as_table(mine) == as_table(theirs)


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_defaults_equal_torch(name):
    impl_cls, torch_cls = PAIRS[name]
    assert (
        impl_cls([Parameter(torch.zeros(1))]).defaults
        == torch_cls([Parameter(torch.zeros(1))]).defaults
    )


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_is_a_torch_optimizer_with_an_algorithm_box(name):
    cls = getattr(impl, name)
    assert issubclass(cls, torch.optim.Optimizer)
    assert r"\begin{aligned}" in cls.__doc__, "the class docstring carries the update rule"
    assert "seed post" in cls.__doc__, "the docstring says how it differs from the seed's formula"


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_step_hooks_run(name):
    opt = getattr(impl, name)([Parameter(torch.ones(3))], lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda *_: calls.append("pre"))
    opt.register_step_post_hook(lambda *_: calls.append("post"))
    opt.param_groups[0]["params"][0].grad = torch.ones(3)
    opt.step()
    assert calls == ["pre", "post"]


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_closure_loss_is_returned(name):
    p = Parameter(torch.tensor([3.0, -1.0]))
    opt = getattr(impl, name)([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 10.0


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
def test_lr_scheduler_drives_impl_exactly_like_torch(nesterov):
    trajectories = []
    for cls in PAIRS["SGD"]:
        p = Parameter(torch.tensor([4.0, 3.0]))
        opt = cls([p], lr=0.1, momentum=0.9, nesterov=nesterov)
        schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        for _ in range(6):
            opt.zero_grad()
            (p[0] ** 2 + 10 * p[1] ** 2).backward()
            opt.step()
            schedule.step()
        trajectories.append((p.detach(), opt.param_groups[0]["lr"]))
    (mine, my_lr), (theirs, their_lr) = trajectories
    assert my_lr == their_lr == 0.1 * 0.5**3
    assert_bitwise_equal(mine, theirs, "SGD params after a StepLR schedule")


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_params_without_grad_get_no_state(name):
    used, unused = Parameter(torch.ones(2)), Parameter(torch.ones(2))
    opt = getattr(impl, name)(
        [used, unused], lr=0.1, **({"momentum": 0.9} if name == "SGD" else {})
    )
    used.grad = torch.ones(2)
    opt.step()
    has_state = [p in opt.state and len(opt.state[p]) > 0 for p in (used, unused)]
    # Adagrad creates state eagerly in __init__, exactly as torch does.
    assert has_state == [True, name == "Adagrad"]

"""torch's own optimizer configurations (``optim_db``'s ``optim_inputs_func``, the table
torch's tests use) run through impl: bitwise equal to torch.optim, params and every state entry.

Each configuration runs on both paths in float32 and float64, several steps over the mixed
params of ``_torch_pairs`` (a matrix, a 0-d, an empty and a non-contiguous tensor, in two groups)
with some gradients ``None``. A configuration that asks for a flag impl does not implement
(``capturable``, ``fused``, ``differentiable``) must raise ``NotImplementedError`` naming it.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.testing._internal.common_optimizers import optim_db

from impl._base import UNSUPPORTED_FLAGS
from tests._bitwise import assert_bitwise_equal, assert_state_dicts_bitwise_equal
from tests._torch_pairs import OPTIMIZER_NAMES, PAIRS, clone_params, grad_for, make_params

INFOS = {info.optim_cls.__name__: info for info in optim_db}


def _configurations():
    for name in OPTIMIZER_NAMES:
        for index, optim_input in enumerate(INFOS[name].optim_inputs_func(device="cpu")):
            yield pytest.param(name, index, id=f"{name}-{optim_input.desc}")


def _kwargs(name: str, index: int) -> dict:
    """A fresh copy (a tensor lr must not be shared between the two optimizers)."""
    return copy.deepcopy(INFOS[name].optim_inputs_func(device="cpu")[index].kwargs)


def _unsupported(kwargs: dict) -> str | None:
    return next((flag for flag in UNSUPPORTED_FLAGS if kwargs.get(flag)), None)


def _groups(params, kwargs):
    second = {"params": params[2:]}
    if "lr" in kwargs and not torch.is_tensor(kwargs["lr"]):
        second["lr"] = kwargs["lr"] * 0.5
    return [{"params": params[:2]}, second]


@pytest.mark.parametrize("foreach", [False, True], ids=["for-loop", "foreach"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize(("name", "index"), list(_configurations()))
def test_torch_configuration_is_bitwise_equal(name, index, dtype, foreach):
    impl_cls, torch_cls = PAIRS[name]
    kwargs = {**_kwargs(name, index), "foreach": foreach}
    if flag := _unsupported(kwargs):
        with pytest.raises(NotImplementedError, match=flag):
            impl_cls(_groups(make_params(dtype), kwargs), **kwargs)
        return
    params = make_params(dtype)
    twins = clone_params(params)
    try:  # some configurations are refused on one path (a tensor lr with foreach Adam)
        theirs = torch_cls(_groups(twins, kwargs), **{**_kwargs(name, index), "foreach": foreach})
    except Exception as refusal:
        with pytest.raises(type(refusal)) as raised:
            impl_cls(_groups(params, kwargs), **kwargs)
        assert str(raised.value) == str(refusal)
        return
    mine = impl_cls(_groups(params, kwargs), **kwargs)
    for step in range(10 if name == "RAdam" else 4):  # RAdam rectifies from t = 6
        for i, (p, q) in enumerate(zip(params, twins, strict=True)):
            g = grad_for(p, i, step)
            p.grad, q.grad = (None, None) if g is None else (g.clone(), g.clone())
        mine.step()
        theirs.step()
        for i, (p, q) in enumerate(zip(params, twins, strict=True)):
            assert_bitwise_equal(p, q, f"{name} {kwargs} param {i} after step {step + 1}")
        assert_state_dicts_bitwise_equal(
            mine.state_dict(), theirs.state_dict(), f"{name} {kwargs} after step {step + 1}"
        )

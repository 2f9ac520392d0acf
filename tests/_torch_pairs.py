"""Running an impl optimizer and its torch.optim twin side by side on identical inputs.

Inputs are deterministic functions of (param index, step), not random draws: the unit tests
sweep flags exhaustively, and the property-based search lives in ``conformance``.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterable

import torch

import impl

# The dense-gradient classes, in torch.optim's order; each runs once impl exports it.
# SparseAdam takes sparse gradients only and has tests of its own.
DENSE_NAMES = (
    "SGD",
    "Adagrad",
    "RMSprop",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "RAdam",
    "Adadelta",
    "ASGD",
    "Rprop",
)
OPTIMIZER_NAMES = tuple(name for name in DENSE_NAMES if name in impl.__all__)
PAIRS = {name: (getattr(impl, name), getattr(torch.optim, name)) for name in OPTIMIZER_NAMES}

# Every flag each optimizer has (beyond lr), with the values the sweep crosses.
FLAG_GRID: dict[str, dict[str, tuple]] = {
    "SGD": {
        "momentum": (0.0, 0.9),
        "dampening": (0.0, 0.3),
        "nesterov": (False, True),
        "weight_decay": (0.0, 0.1),
        "maximize": (False, True),
    },
    "Adagrad": {
        "lr_decay": (0.0, 0.1),
        "weight_decay": (0.0, 0.1),
        "initial_accumulator_value": (0.0, 0.5),
        "maximize": (False, True),
    },
    "RMSprop": {
        "momentum": (0.0, 0.9),
        "centered": (False, True),
        "weight_decay": (0.0, 0.1),
        "maximize": (False, True),
    },
    "Adam": {
        "amsgrad": (False, True),
        "weight_decay": (0.0, 0.1),
        "maximize": (False, True),
    },
    "AdamW": {
        "amsgrad": (False, True),
        "weight_decay": (0.0, 0.1),
        "maximize": (False, True),
    },
    "Adamax": {
        "weight_decay": (0.0, 0.1),
        "maximize": (False, True),
    },
    "NAdam": {
        "momentum_decay": (4e-3, 0.3),
        "weight_decay": (0.0, 0.1),
        "decoupled_weight_decay": (False, True),
        "maximize": (False, True),
    },
    "RAdam": {
        # rho_t > 5 (the rectified branch) needs t >= 6 for any beta2: STEPS runs 10
        "betas": ((0.9, 0.999), (0.8, 0.9)),
        "weight_decay": (0.0, 0.1),
        "decoupled_weight_decay": (False, True),
        "maximize": (False, True),
    },
    "Adadelta": {
        "rho": (0.9, 0.5),
        "weight_decay": (0.0, 0.1),
        "maximize": (False, True),
    },
    "ASGD": {
        # t0 = 1 starts the averaging (mu < 1, ax moving) at step 2; the default 1e6 never does
        "t0": (1e6, 1.0),
        "lambd": (1e-4, 0.1),
        "weight_decay": (0.0, 0.1),
        "maximize": (False, True),
    },
    "Rprop": {
        "etas": ((0.5, 1.2), (0.25, 2.0)),
        "step_sizes": ((1e-6, 50), (1e-3, 0.06)),
        "maximize": (False, True),
    },
}


# Steps per run: 4, except where a branch starts later (RAdam rectifies from t = 6 on).
STEPS = {"RAdam": 10}


def valid(name: str, flags: dict) -> bool:
    """torch rejects Nesterov without momentum or with dampening."""
    return not (
        name == "SGD" and flags["nesterov"] and (flags["momentum"] <= 0 or flags["dampening"] != 0)
    )


def flag_combinations(name: str) -> list[dict]:
    grid = FLAG_GRID[name]
    combos = (dict(zip(grid, values)) for values in itertools.product(*grid.values()))
    return [c for c in combos if valid(name, c)]


def combo_id(flags: dict) -> str:
    on = [k if v is True else f"{k}={v}" for k, v in flags.items() if v not in (False, 0.0)]
    return ",".join(on) or "defaults"


def pattern(shape: Iterable[int], seed: float, dtype: torch.dtype) -> torch.Tensor:
    """Deterministic, sign-mixed values spanning a few decades."""
    n = math.prod(shape)
    k = torch.arange(n, dtype=torch.float64)
    values = torch.sin(k * 1.618 + seed) * torch.exp(torch.cos(k * 0.7 + 2 * seed) * 2)
    if dtype.is_complex:
        imag = torch.cos(k * 0.577 - seed)
        values = torch.complex(values, imag)
    return values.reshape(tuple(shape)).to(dtype)


def make_params(dtype: torch.dtype) -> list[torch.Tensor]:
    """A matrix, a 0-d scalar, an empty tensor and a non-contiguous (transposed, strided) view."""
    base = pattern((6, 4), 0.5, dtype)
    strided = base.t()[:, ::2]  # a leaf: its base does not require grad
    assert not strided.is_contiguous()
    return [
        pattern((3, 4), 0.1, dtype),
        pattern((), 0.2, dtype),
        pattern((0,), 0.3, dtype),
        strided,
    ]


def clone_params(params):
    """Clones that keep each tensor's strides, so both optimizers see the same layouts."""
    clones = []
    for p in params:
        c = torch.empty_strided(p.size(), p.stride(), dtype=p.dtype)
        c.copy_(p)
        clones.append(c)
    return clones


def grad_for(p: torch.Tensor, index: int, step: int) -> torch.Tensor | None:
    """Every third (param, step) pair has no gradient, so lazily created state is exercised."""
    if (index + step) % 3 == 2:
        return None
    return pattern(p.shape, 10.0 * step + index, p.dtype)


def param_groups(params, flags: dict, lr) -> list[dict]:
    """Two groups with different hyperparameters."""
    second = {"params": params[2:], "lr": lr * 0.5 if not torch.is_tensor(lr) else lr / 2}
    return [{"params": params[:2]}, second]


def run_pair(
    name: str,
    flags: dict,
    dtype: torch.dtype,
    *,
    steps: int | None = None,
    lr=0.05,
    foreach: bool | None = None,
    after_step: Callable[[int, torch.optim.Optimizer, torch.optim.Optimizer], None] | None = None,
):
    """Step impl and torch on the same inputs; return both optimizers and their params."""
    impl_cls, torch_cls = PAIRS[name]
    params = make_params(dtype)
    twins = clone_params(params)
    kwargs = {**flags, "lr": lr, "foreach": foreach}
    mine = impl_cls(param_groups(params, flags, lr), **kwargs)
    theirs = torch_cls(param_groups(twins, flags, copy.deepcopy(lr)), **kwargs)
    for step in range(STEPS.get(name, 4) if steps is None else steps):
        for i, (p, q) in enumerate(zip(params, twins)):
            g = grad_for(p, i, step)
            p.grad = None if g is None else g.clone()
            q.grad = None if g is None else g.clone()
        mine.step()
        theirs.step()
        if after_step is not None:
            after_step(step, mine, theirs)
    return mine, theirs, params, twins

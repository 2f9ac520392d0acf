"""Adagrad (torch.optim.Adagrad; Duchi, Hazan & Singer 2011), as torch 2.13 computes it
(``_single_tensor_adagrad``)::

    g ← −g (maximize);  g ← g + λ·p
    η_t ← η/(1 + (t − 1)·lr_decay)
    s ← s + g²                       (s starts at initial_accumulator_value)
    p ← p − η_t·g/(√s + ε)
"""

from __future__ import annotations

import sympy

from .building_blocks import (
    eps,
    gradient,
    hyperparameter,
    lr,
    state,
    step_counter,
    suffix,
    weight_decay,
)
from .core import GRAD, PARAM, STEP, Spec

p, g, t = PARAM, GRAD, STEP


def adagrad(*, maximize: bool = False) -> Spec:
    eta, wd = lr(1e-2), weight_decay()
    decay = hyperparameter("lr_decay", 0.0)
    init = hyperparameter("initial_accumulator_value", 0.0, latex="s0")
    epsilon = eps(1e-10)
    sq = state("sum", "s", initial=init.symbol)
    s = sq.symbol
    clr = eta.symbol / (1 + (t - 1) * decay.symbol)
    return Spec(
        "Adagrad" + suffix(maximize=maximize),
        (eta, decay, wd, init, epsilon),
        (step_counter(), sq),
        (
            (t, t + 1),
            *gradient(maximize=maximize, decay=wd),
            (s, s + g**2),
            (p, p - clr * g / (sympy.sqrt(s) + epsilon.symbol)),
        ),
    )

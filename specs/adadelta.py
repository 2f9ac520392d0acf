"""Adadelta (torch.optim.Adadelta; Zeiler 2012), as torch 2.13 computes it
(``_single_tensor_adadelta``)::

    g ← −g (maximize);  g ← g + λ·p
    v ← ρ·v + (1 − ρ)·g²
    Δ ← √(u + ε)/√(v + ε)·g
    u ← ρ·u + (1 − ρ)·Δ²
    p ← p − η·Δ

torch scales the step by a learning rate η (default 1; the paper has none).
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


def adadelta(*, maximize: bool = False) -> Spec:
    """Adadelta (Zeiler 2012) with torch's lr (the paper's is 1) and eps inside both roots."""
    eta, epsilon, wd = lr(1.0), eps(1e-6), weight_decay()
    rho = hyperparameter("rho", 0.9, sympy.Interval(0, 1))
    v, u = state("square_avg", "v"), state("acc_delta", "u")
    delta = sympy.Symbol("Delta", real=True)
    r = rho.symbol
    return Spec(
        "Adadelta" + suffix(maximize=maximize),
        (eta, rho, epsilon, wd),
        (step_counter(), v, u),
        (
            (t, t + 1),
            *gradient(maximize=maximize, decay=wd),
            (v.symbol, r * v.symbol + (1 - r) * g**2),
            (
                delta,
                sympy.sqrt(u.symbol + epsilon.symbol) / sympy.sqrt(v.symbol + epsilon.symbol) * g,
            ),
            (u.symbol, r * u.symbol + (1 - r) * delta**2),
            (p, p - eta.symbol * delta),
        ),
    )

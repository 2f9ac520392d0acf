"""Adamax, Adam with the infinity norm (torch.optim.Adamax; Kingma & Ba 2015, section 7.1),
as torch 2.13 computes it (``_single_tensor_adamax``)::

    g ← −g (maximize);  g ← g + λ·p
    m ← m + (1 − β1)·(g − m)
    u ← max(β2·u, |g| + ε)
    p ← p − η/(1 − β1^t)·m/u

ε sits inside the max; the paper's u ← max(β2·u, |g|) has none
(``specs.proofs.adamax_eps_placement`` measures the difference).
"""

from __future__ import annotations

import sympy

from .building_blocks import (
    betas,
    ema,
    eps,
    gradient,
    lr,
    state,
    step_counter,
    suffix,
    weight_decay,
)
from .core import GRAD, PARAM, STEP, Spec

p, g, t = PARAM, GRAD, STEP


def adamax(*, maximize: bool = False) -> Spec:
    """Adamax as torch computes it: eps *inside* the infinity norm, ``u ← max(β2·u, |g| + eps)``
    (Kingma & Ba's u_t = max(β2·u, |g|) has no eps; ``proofs.adamax_eps_placement`` measures
    the difference)."""
    eta, epsilon, wd = lr(2e-3), eps(1e-8), weight_decay()
    beta1, beta2 = betas()
    m, u = state("exp_avg", "m"), state("exp_inf", "u")
    b1, b2 = beta1.symbol, beta2.symbol
    return Spec(
        "Adamax" + suffix(maximize=maximize),
        (eta, beta1, beta2, epsilon, wd),
        (step_counter(), m, u),
        (
            (t, t + 1),
            *gradient(maximize=maximize, decay=wd),
            ema(m.symbol, b1, g),
            (u.symbol, sympy.Max(b2 * u.symbol, sympy.Abs(g) + epsilon.symbol)),
            (p, p - eta.symbol / (1 - b1**t) * m.symbol / u.symbol),
        ),
    )

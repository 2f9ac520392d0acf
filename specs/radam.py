"""RAdam, Adam with the variance of its adaptive step rectified (torch.optim.RAdam; Liu et al.
2019), as torch 2.13 computes it (``_single_tensor_radam``)::

    g ← −g (maximize);  g ← g + λ·p  (or p ← p·(1 − η·λ), decoupled_weight_decay)
    m ← m + (1 − β1)·(g − m),  v ← β2·v + (1 − β2)·g²,  m̂ = m/(1 − β1^t)
    ρ_∞ = 2/(1 − β2) − 1,  ρ_t = ρ_∞ − 2t·β2^t/(1 − β2^t)
    p ← p − η·m̂·r_t·√(1 − β2^t)/(√v + ε)     if ρ_t > 5 (decided in double, as torch does)
    p ← p − η·m̂                              otherwise
    r_t = √((ρ_t − 4)(ρ_t − 2)ρ_∞/((ρ_∞ − 4)(ρ_∞ − 2)ρ_t))

Liu et al. rectify where ρ_t > 4 and have no ε, l_t = √((1 − β2^t)/v) (``specs.papers.radam``);
``specs.proofs.radam_threshold_band`` proves the two part only at the steps with 4 < ρ_t ≤ 5.
"""

from __future__ import annotations

import sympy

from .building_blocks import (
    betas,
    decoupled_or_l2,
    ema,
    eps,
    lr,
    state,
    step_counter,
    suffix,
    weight_decay,
)
from .core import GRAD, PARAM, STEP, Spec

p, g, t = PARAM, GRAD, STEP

RECTIFY = sympy.Symbol("r", real=True)


def radam_rho(beta2: sympy.Expr, step: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """(ρ_∞, ρ_t): the length of the simple moving average that approximates the EMA of g²
    (Liu et al. 2019; ``proofs.radam_rho_closed_form`` derives it)."""
    rho_inf = 2 / (1 - beta2) - 1
    return rho_inf, rho_inf - 2 * step * beta2**step / (1 - beta2**step)


def radam_rectification(rho_inf: sympy.Expr, rho: sympy.Expr) -> sympy.Expr:
    """Liu et al.'s variance rectification r_t for an SMA length ``rho`` (ρ_t)."""
    return sympy.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))


def _radam_rectifies(param, grad, state, hyper, dtype) -> dict:
    """torch decides ``rho_t > 5`` in Python doubles, op for op as below."""
    step = float(state.get("step", 0.0)) + 1
    beta2 = hyper.get("beta2", 0.999)
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * (beta2**step) / (1 - beta2**step)
    return {RECTIFY: 1.0 if rho_t > 5.0 else 0.0}


def radam(*, decoupled: bool = False, maximize: bool = False) -> Spec:
    """RAdam as torch computes it: unrectified (momentum SGD with bias correction) until
    ρ_t > 5 — decided in double, as torch does (Liu et al. use ρ_t > 4) — then
    ``m̂·r_t·sqrt(1 − β2^t)/(sqrt(v) + eps)``: eps is added to sqrt(v), not to sqrt(v̂)."""
    eta, epsilon, wd = lr(1e-3), eps(1e-8), weight_decay()
    beta1, beta2 = betas()
    m, v = state("exp_avg", "m"), state("exp_avg_sq", "v")
    b1, b2 = beta1.symbol, beta2.symbol
    rho_inf, rho_t = radam_rho(b2, t)
    rectification = radam_rectification(rho_inf, rho_t)
    m_hat = m.symbol / (1 - b1**t)
    adaptive = sympy.sqrt(1 - b2**t) / (sympy.sqrt(v.symbol) + epsilon.symbol)
    return Spec(
        "RAdam" + suffix(decoupled_weight_decay=decoupled, maximize=maximize),
        (eta, beta1, beta2, epsilon, wd),
        (step_counter(), m, v),
        (
            (t, t + 1),
            *decoupled_or_l2(maximize=maximize, decoupled=decoupled, eta=eta, wd=wd),
            ema(m.symbol, b1, g),
            (v.symbol, b2 * v.symbol + (1 - b2) * g**2),
            (
                p,
                sympy.Piecewise(
                    (p - eta.symbol * m_hat * rectification * adaptive, RECTIFY > 0),
                    (p - eta.symbol * m_hat, True),
                ),
            ),
        ),
        decided={RECTIFY: sympy.Piecewise((1, rho_t > 5), (0, True))},
        decide=_radam_rectifies,
        notes="the branch is torch's double-precision rho_t > 5",
    )

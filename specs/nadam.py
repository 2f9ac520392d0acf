"""NAdam, Adam with Nesterov momentum (torch.optim.NAdam; Dozat 2016), as torch 2.13 computes
it (``_single_tensor_nadam``)::

    g ← −g (maximize);  g ← g + λ·p  (or p ← p·(1 − η·λ), decoupled_weight_decay)
    μ_t = β1·(1 − ½·0.96^(t·ψ))        (ψ = momentum_decay)
    Π_t = Π_{t−1}·μ_t                  (mu_product, a float32 0-d state)
    m ← m + (1 − β1)·(g − m),  v ← β2·v + (1 − β2)·g²
    p ← p − η·(1 − μ_t)/(1 − Π_t)·g/d − η·μ_{t+1}/(1 − Π_t·μ_{t+1})·m/d,
        d = √(v/(1 − β2^t)) + ε

Where torch departs from Dozat's Algorithm 2 (``specs.papers.nadam``) is proved in
``specs.proofs.nadam_dozat_vs_torch``.
"""

from __future__ import annotations

import sympy

from .building_blocks import (
    betas,
    decoupled_or_l2,
    ema,
    eps,
    hyperparameter,
    lr,
    scalar_state_product,
    state,
    step_counter,
    suffix,
    weight_decay,
)
from .core import GRAD, PARAM, STEP, Spec, StateVar

p, g, t = PARAM, GRAD, STEP

MU_PRODUCT_ROUNDED = sympy.Symbol("Pi_t", positive=True)


def momentum_schedule(beta1: sympy.Expr, psi: sympy.Expr, step: sympy.Expr) -> sympy.Expr:
    """NAdam's μ_t = β1·(1 − ½·0.96^(t·ψ)) (Dozat 2016, with torch's ψ = momentum_decay)."""
    return beta1 * (1 - sympy.Rational(1, 2) * sympy.Rational(24, 25) ** (step * psi))


def _float32_product(param, grad, state, hyper, dtype) -> dict:
    """torch's ``mu_product *= mu``; the update then reads it back as a double."""
    t = float(state.get("step", 0.0)) + 1
    mu = hyper.get("beta1", 0.9) * (1.0 - 0.5 * 0.96 ** (t * hyper.get("momentum_decay", 4e-3)))
    return {MU_PRODUCT_ROUNDED: scalar_state_product(state.get("mu_product", 1.0), mu)}


def nadam(*, decoupled: bool = False, maximize: bool = False) -> Spec:
    """NAdam (Dozat 2016) as torch computes it: the momentum schedule μ_t, the running product
    Π_t = μ_1⋯μ_t kept in a float32 state (rounded every step: the oracle takes Π_t as torch
    stores it), the Nesterov-style mix of g and m, and ``sqrt(v/(1 − β2^t)) + eps``."""
    eta, epsilon, wd = lr(2e-3), eps(1e-8), weight_decay()
    beta1, beta2 = betas()
    psi = hyperparameter("momentum_decay", 4e-3, latex="psi")
    product = StateVar("mu_product", sympy.Symbol("Pi", positive=True), sympy.S.One, True, True)
    m, v = state("exp_avg", "m"), state("exp_avg_sq", "v")
    b1, b2 = beta1.symbol, beta2.symbol
    mu_t = momentum_schedule(b1, psi.symbol, t)
    mu_next = momentum_schedule(b1, psi.symbol, t + 1)
    pi_t = MU_PRODUCT_ROUNDED
    stored = product.symbol  # after its rule: Π_t as stored (decided), or exact (``exact()``)
    denominator = sympy.sqrt(v.symbol / (1 - b2**t)) + epsilon.symbol
    return Spec(
        "NAdam" + suffix(decoupled_weight_decay=decoupled, maximize=maximize),
        (eta, beta1, beta2, epsilon, wd, psi),
        (step_counter(), product, m, v),
        (
            (t, t + 1),
            *decoupled_or_l2(maximize=maximize, decoupled=decoupled, eta=eta, wd=wd),
            (product.symbol, pi_t),
            ema(m.symbol, b1, g),
            (v.symbol, b2 * v.symbol + (1 - b2) * g**2),
            (
                p,
                p
                - eta.symbol * (1 - mu_t) / (1 - stored) * g / denominator
                - eta.symbol * mu_next / (1 - stored * mu_next) * m.symbol / denominator,
            ),
        ),
        decided={pi_t: product.symbol * mu_t},
        decide=_float32_product,
        notes="Π_t is torch's float32 mu_product (rounded every step), read back as a double",
    )

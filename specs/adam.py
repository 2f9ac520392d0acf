"""Adam and AdamW (torch.optim.Adam, torch.optim.AdamW; Kingma & Ba 2015, Loshchilov & Hutter
2019), as torch 2.13 computes them (``_single_tensor_adam``)::

    g ← −g (maximize)
    g ← g + λ·p  (Adam: L2)           p ← p·(1 − η·λ)  (AdamW: decoupled)
    m ← m + (1 − β1)·(g − m)
    v ← β2·v + (1 − β2)·g²
    v_max ← max(v_max, v)  (amsgrad; the step below then reads v_max for v)
    p ← p − η·m̂/(√v̂ + ε),   m̂ = m/(1 − β1^t),  v̂ = v/(1 − β2^t)

The spec keeps this textbook form; ``specs.proofs.adam_implementable_form`` proves torch's
rearrangement η/(1 − β1^t)·m/(√v/√(1 − β2^t) + ε) equal to it.
"""

from __future__ import annotations

import sympy

from .building_blocks import betas, eps, gradient, lr, state, step_counter, suffix, weight_decay
from .core import GRAD, PARAM, STEP, Spec

p, g, t = PARAM, GRAD, STEP


def _adam(name: str, *, decoupled: bool, amsgrad: bool, maximize: bool) -> Spec:
    eta, epsilon = lr(1e-3), eps(1e-8)
    beta1, beta2 = betas()
    wd = weight_decay(1e-2 if decoupled else 0.0)
    m, v = state("exp_avg", "m"), state("exp_avg_sq", "v")
    states = [step_counter(), m, v]
    rules = [(t, t + 1), *gradient(maximize=maximize, decay=None if decoupled else wd)]
    if decoupled:
        rules.append((p, p * (1 - eta.symbol * wd.symbol)))
    b1, b2 = beta1.symbol, beta2.symbol
    rules.append((m.symbol, m.symbol + (1 - b1) * (g - m.symbol)))
    rules.append((v.symbol, b2 * v.symbol + (1 - b2) * g**2))
    second = v.symbol
    if amsgrad:
        vmax = state("max_exp_avg_sq", "vmax")
        states.append(vmax)
        rules.append((vmax.symbol, sympy.Max(vmax.symbol, v.symbol)))
        second = vmax.symbol
    # textbook form; torch's rearrangement is proved equal in specs.proofs
    m_hat = m.symbol / (1 - b1**t)
    v_hat = second / (1 - b2**t)
    rules.append((p, p - eta.symbol * m_hat / (sympy.sqrt(v_hat) + epsilon.symbol)))
    return Spec(
        name + suffix(amsgrad=amsgrad, maximize=maximize),
        (eta, beta1, beta2, epsilon, wd),
        tuple(states),
        tuple(rules),
    )


def adam(*, amsgrad: bool = False, maximize: bool = False) -> Spec:
    return _adam("Adam", decoupled=False, amsgrad=amsgrad, maximize=maximize)


def adamw(*, amsgrad: bool = False, maximize: bool = False) -> Spec:
    return _adam("AdamW", decoupled=True, amsgrad=amsgrad, maximize=maximize)


def adam_class(*, decoupled: bool, amsgrad: bool, maximize: bool) -> Spec:
    """torch.optim.Adam's rule for a param group: with ``decoupled_weight_decay=True`` torch's
    Adam takes AdamW's step, so its spec is AdamW's."""
    return (adamw if decoupled else adam)(amsgrad=amsgrad, maximize=maximize)

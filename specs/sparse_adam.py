"""SparseAdam, Adam for sparse gradients (torch.optim.SparseAdam), as torch 2.13 computes it
(``torch.optim._functional.sparse_adam``), on the rows a gradient names::

    m ← m + (1 − β1)·(g − m),  v ← v + (1 − β2)·(g² − v)
    p ← p − η·√(1 − β2^t)/(1 − β1^t)·m/(√v + ε)

Rows the gradient does not name keep their p, m and v. ε is added to √v before the bias
correction (Adam adds it to √v̂): ``specs.proofs.sparse_adam_is_scaled_eps_adam`` proves the
step is dense Adam's with ε/√(1 − β2^t).
"""

from __future__ import annotations

import sympy

from .building_blocks import betas, ema, eps, lr, state, step_counter
from .core import GRAD, PARAM, STEP, Spec

p, g, t = PARAM, GRAD, STEP


def sparse_adam() -> Spec:
    """SparseAdam on the rows a gradient names: Adam's moments, and eps added to sqrt(v)
    *before* the bias correction, ``lr·sqrt(1 − β2^t)/(1 − β1^t) · m/(sqrt(v) + eps)``, unlike
    Adam's ``sqrt(v̂) + eps``. Rows the gradient does not name do not change."""
    eta, epsilon = lr(1e-3), eps(1e-8)
    beta1, beta2 = betas()
    m, v = state("exp_avg", "m"), state("exp_avg_sq", "v")
    b1, b2 = beta1.symbol, beta2.symbol
    step_size = eta.symbol * sympy.sqrt(1 - b2**t) / (1 - b1**t)
    return Spec(
        "SparseAdam",
        (eta, beta1, beta2, epsilon),
        (step_counter(), m, v),
        (
            (t, t + 1),
            ema(m.symbol, b1, g),
            ema(v.symbol, b2, g**2),
            (p, p - step_size * m.symbol / (sympy.sqrt(v.symbol) + epsilon.symbol)),
        ),
        notes="touched rows only; eps is not bias-corrected",
    )

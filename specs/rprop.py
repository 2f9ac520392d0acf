"""Rprop (torch.optim.Rprop), which is iRprop− (Igel & Hüsken 2000), Riedmiller & Braun's
resilient backpropagation (1993) without weight-backtracking, as torch 2.13 computes it
(``_single_tensor_rprop``)::

    g ← −g (maximize)
    f = η+ where g·prev > 0,  η− where g·prev < 0,  1 elsewhere
    s ← min(max(s·f, step_size_min), step_size_max)
    g ← 0 where g·prev < 0
    p ← p − sign(g)·s,  prev ← g

The paper's weight-backtracking (``specs.papers.rprop``) is set against torch's rule in
``specs.proofs.rprop_backtracking``.
"""

from __future__ import annotations

import numpy as np
import sympy

from .building_blocks import gradient, hyperparameter, lr, state, step_counter, suffix
from .core import GRAD, PARAM, STEP, Spec, StateVar

p, g, t = PARAM, GRAD, STEP

SIGN = sympy.Symbol("sigma", real=True)


def _rprop_sign(param, grad, state, hyper, dtype) -> dict:
    """torch's ``grad.mul(prev).sign()``: the product rounded into the dtype (f16/bf16 via
    float32), so an underflow to 0 means "no sign change", factor 1."""
    import torch

    prev = state.get("prev")
    if prev is None:
        return {SIGN: np.zeros(np.shape(param))}
    product = torch.from_numpy(np.asarray(np.asarray(grad, np.float64) * np.asarray(prev)))
    return {SIGN: np.sign(product.to(_torch_dtype(dtype)).double().numpy())}


def _torch_dtype(dtype):
    import torch

    return dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype))


def rprop(*, maximize: bool = False) -> Spec:
    """Rprop as torch computes it (iRprop−, Igel & Hüsken 2000: no weight backtracking; the
    gradient is zeroed where its sign flipped): the step size grows by η+ where g·prev > 0,
    shrinks by η− where it is < 0, clamped to [min, max]; ``p ← p − sign(g)·step``."""
    eta = lr(1e-2)
    minus, plus = hyperparameter("etaminus", 0.5), hyperparameter("etaplus", 1.2)
    low, high = hyperparameter("step_size_min", 1e-6), hyperparameter("step_size_max", 50.0)
    prev = state("prev", "q")
    size = StateVar("step_size", sympy.Symbol("s", positive=True), eta.symbol)
    factor = sympy.Piecewise((plus.symbol, SIGN > 0), (minus.symbol, SIGN < 0), (1, True))
    kept = sympy.Symbol("g_kept", real=True)
    return Spec(
        "Rprop" + suffix(maximize=maximize),
        (eta, minus, plus, low, high),
        (step_counter(), prev, size),
        (
            (t, t + 1),
            *gradient(maximize=maximize),
            (size.symbol, sympy.Min(sympy.Max(size.symbol * factor, low.symbol), high.symbol)),
            (kept, sympy.Piecewise((0, SIGN < 0), (g, True))),
            (p, p - sympy.sign(kept) * size.symbol),
            (prev.symbol, kept),
        ),
        decided={SIGN: sympy.sign(g * prev.symbol)},
        decide=_rprop_sign,
        notes="the sign is of g·prev rounded into the dtype (an underflow to 0 keeps the step)",
    )

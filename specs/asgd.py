"""Averaged SGD (torch.optim.ASGD; Polyak & Juditsky 1992), as torch 2.13 computes it
(``_single_tensor_asgd``)::

    g ← −g (maximize);  g ← g + λ_wd·p
    p ← p·(1 − λ·η_t) − η_t·g
    ax ← ax + μ_t·(p − ax)                  (μ_t = 1 copies p)
    η_{t+1} = lr/(1 + λ·lr·t)^α,  μ_{t+1} = 1/max(1, t − t0)

η_t and μ_t are the values the *previous* step stored, in float32 0-d states. How this
averaging relates to Polyak–Juditsky's (``specs.papers.asgd``) is proved in
``specs.proofs.asgd_averaging`` and ``specs.proofs.asgd_polyak_juditsky``.
"""

from __future__ import annotations

import sympy

from .building_blocks import (
    gradient,
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

FIRST_ETA = sympy.Symbol("eta_0", positive=True)


def _first_eta(param, grad, state, hyper, dtype) -> dict:
    """A fresh ASGD state holds ``torch.as_tensor(lr)``: lr rounded into the scalar dtype."""
    return {FIRST_ETA: scalar_state_product(hyper.get("lr", 1e-2), 1.0)}


def asgd(*, maximize: bool = False) -> Spec:
    """ASGD as torch computes it: ``p ← p(1 − λ·η_t) − η_t·g`` with the η_t and μ_t the
    *previous* step stored (float32 0-d states), then Polyak–Juditsky averaging
    ``ax ← ax + μ_t(p − ax)`` (μ_t = 1 copies p), then η_{t+1} = lr/(1 + λ·lr·t)^α and
    μ_{t+1} = 1/max(1, t − t0)."""
    eta = lr(1e-2)
    lambd, power = hyperparameter("lambd", 1e-4), hyperparameter("alpha", 0.75)
    t0, wd = hyperparameter("t0", 1e6), weight_decay()
    # torch's fresh eta is lr stored in its scalar dtype (float32): decided, exactly lr
    rate = StateVar("eta", sympy.Symbol("eta_t", positive=True), FIRST_ETA, True, True)
    mu = StateVar("mu", sympy.Symbol("mu_t", positive=True), sympy.S.One, True, True)
    ax = state("ax", "a")
    return Spec(
        "ASGD" + suffix(maximize=maximize),
        (eta, lambd, power, t0, wd),
        (step_counter(), rate, mu, ax),
        (
            (t, t + 1),
            *gradient(maximize=maximize, decay=wd),
            (p, p * (1 - lambd.symbol * rate.symbol) - rate.symbol * g),
            (ax.symbol, ax.symbol + mu.symbol * (p - ax.symbol)),
            (rate.symbol, eta.symbol / (1 + lambd.symbol * eta.symbol * t) ** power.symbol),
            (mu.symbol, 1 / sympy.Max(1, t - t0.symbol)),
        ),
        decided={FIRST_ETA: eta.symbol},
        decide=_first_eta,
        notes="eta and mu are float32 states set at the end of a step: a step uses the previous",
    )

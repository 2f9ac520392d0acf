"""The pieces the torch-class specs share: hyperparameters with torch's names and defaults,
state variables, the spec name's flag suffix, torch's gradient preamble (maximize, then L2
weight decay), the exponential moving average in torch's lerp form, and the rounding of a 0-d
state torch keeps in its scalar dtype.

The family modules (``specs.sgd``, ``specs.adam``, …), the seed post's dialects
(``specs.seed``) and the papers' forms (``specs.papers``) build their specs from these, so one
hyperparameter has one symbol, one domain and one spelling everywhere.
"""

from __future__ import annotations

import numpy as np
import sympy

from .core import GRAD, NONNEGATIVE, PARAM, STEP, UNIT_INTERVAL, Hyper, StateVar, Update

p, g, t = PARAM, GRAD, STEP


def hyperparameter(
    name: str, default: float, domain: sympy.Set = NONNEGATIVE, latex: str | None = None
) -> Hyper:
    """A hyperparameter named as in torch's param_group, printed as ``latex`` (default: name)."""
    return Hyper(name, sympy.Symbol(latex or name, real=True), domain, default)


def lr(default: float) -> Hyper:
    return hyperparameter("lr", default, latex="eta")


def momentum_hyper(default: float = 0.0) -> Hyper:
    return hyperparameter("momentum", default, latex="mu")


def weight_decay(default: float = 0.0) -> Hyper:
    return hyperparameter("weight_decay", default, latex="lambda")


def eps(default: float) -> Hyper:
    return hyperparameter("eps", default, latex="epsilon")


def alpha(default: float) -> Hyper:
    return hyperparameter("alpha", default)


def betas(beta1: float = 0.9, beta2: float = 0.999) -> tuple[Hyper, Hyper]:
    """torch's ``betas`` pair, split into two scalar hyperparameters (``for_group`` splits it)."""
    return (
        hyperparameter("beta1", beta1, UNIT_INTERVAL, latex="beta1"),
        hyperparameter("beta2", beta2, UNIT_INTERVAL, latex="beta2"),
    )


def state(name: str, latex: str, initial=sympy.S.Zero) -> StateVar:
    """A per-element state named as in torch's ``optimizer.state[param]``."""
    return StateVar(name, sympy.Symbol(latex, real=True), initial)


def step_counter() -> StateVar:
    return StateVar("step", t, sympy.S.Zero, scalar=True)


def suffix(**flags: bool) -> str:
    """The flags that are on, as a spec name's suffix: ``suffix(amsgrad=True)`` is ``[amsgrad]``."""
    on = [name for name, value in flags.items() if value]
    return f"[{','.join(on)}]" if on else ""


def gradient(*, maximize: bool, decay: Hyper | None = None) -> tuple[Update, ...]:
    """torch's shared preamble: negate for maximize, then L2 decay folded into the gradient."""
    rules = [(g, -g)] if maximize else []
    if decay is not None:
        rules.append((g, g + decay.symbol * p))
    return tuple(rules)


def decoupled_or_l2(*, maximize: bool, decoupled: bool, eta: Hyper, wd: Hyper) -> tuple:
    """``decoupled_weight_decay``: ``p ← p(1 − ηλ)`` before the step (as AdamW), or else the
    L2 term folded into the gradient (as Adam). NAdam and RAdam take either."""
    if decoupled:
        return (*gradient(maximize=maximize), (p, p * (1 - eta.symbol * wd.symbol)))
    return gradient(maximize=maximize, decay=wd)


def ema(m: sympy.Symbol, beta: sympy.Symbol, value: sympy.Expr) -> Update:
    """``m ← m + (1 − β)(value − m)``: torch's lerp form of the EMA β·m + (1 − β)·value
    (``specs.proofs.ema_lerp_form`` proves them equal)."""
    return (m, m + (1 - beta) * (value - m))


def scalar_state_product(stored, factor: float) -> float:
    """``state *= factor`` on a 0-d state in torch's scalar dtype (float32; float64 under a
    float64 default dtype): the double factor cast into it, the product rounded into it."""
    import torch

    real = np.float64 if torch.get_default_dtype() == torch.float64 else np.float32
    return float(real(float(np.asarray(stored))) * real(factor))

"""RMSprop (torch.optim.RMSprop; Tieleman & Hinton 2012, lecture 6.5; centered: Graves 2013),
as torch 2.13 computes it (``_single_tensor_rmsprop``)::

    g ← −g (maximize);  g ← g + λ·p
    v ← α·v + (1 − α)·g²
    m ← m + (1 − α)·(g − m),  ṽ ← v − m²       (centered; else ṽ ← v)
    b ← μ·b + g/(√ṽ + ε),  p ← p − η·b         (momentum > 0)
    p ← p − η·g/(√ṽ + ε)                       (momentum = 0)
"""

from __future__ import annotations

import sympy

from .building_blocks import (
    alpha,
    eps,
    gradient,
    lr,
    momentum_hyper,
    state,
    step_counter,
    suffix,
    weight_decay,
)
from .core import GRAD, PARAM, STEP, Spec

p, g, t = PARAM, GRAD, STEP


def rmsprop(*, centered: bool = False, momentum: bool = False, maximize: bool = False) -> Spec:
    eta, a, epsilon, wd = lr(1e-2), alpha(0.99), eps(1e-8), weight_decay()
    hypers = [eta, a, epsilon, wd]
    sq = state("square_avg", "v")
    states = [step_counter(), sq]
    rules = [(t, t + 1), *gradient(maximize=maximize, decay=wd)]
    rules.append((sq.symbol, a.symbol * sq.symbol + (1 - a.symbol) * g**2))
    variance = sq.symbol
    if centered:
        avg = state("grad_avg", "m")
        states.append(avg)
        rules.append((avg.symbol, avg.symbol + (1 - a.symbol) * (g - avg.symbol)))
        variance = sq.symbol - avg.symbol**2
    denominator = sympy.sqrt(variance) + epsilon.symbol
    if momentum:
        mu = momentum_hyper()
        hypers.append(mu)
        buf = state("momentum_buffer", "b")
        states.append(buf)
        rules.append((buf.symbol, mu.symbol * buf.symbol + g / denominator))
        rules.append((p, p - eta.symbol * buf.symbol))
    else:
        rules.append((p, p - eta.symbol * g / denominator))
    return Spec(
        "RMSprop" + suffix(centered=centered, momentum=momentum, maximize=maximize),
        tuple(hypers),
        tuple(states),
        tuple(rules),
    )

"""SGD, with heavy-ball or Nesterov momentum (torch.optim.SGD; Polyak 1964, Sutskever et al.
2013), as torch 2.13 computes it (``_single_tensor_sgd``)::

    g ← −g (maximize);  g ← g + λ·p
    b ← μ·b + (1 − τ)·g              (first step: b ← g, no dampening)
    d ← g + μ·b (nesterov), else b
    p ← p − η·d

``specs.proofs.nesterov_rewrite`` proves the Nesterov form is look-ahead Nesterov (while η is
constant: ``specs.proofs.nesterov_lr_schedule``).
"""

from __future__ import annotations

import sympy

from .building_blocks import gradient, hyperparameter, lr, momentum_hyper, suffix, weight_decay
from .core import GRAD, PARAM, Spec, StateVar

p, g = PARAM, GRAD


def sgd(*, momentum: bool = False, nesterov: bool = False, maximize: bool = False) -> Spec:
    """SGD. With momentum, torch creates the buffer on the first step as the (decayed) gradient
    itself, skipping dampening; that is ``first_updates`` (used while ``momentum_buffer`` is
    absent from the state). ``momentum=False`` is torch's momentum == 0: no buffer at all."""
    if nesterov and not momentum:
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")
    eta, wd = lr(1e-3), weight_decay()
    hypers = [eta, wd]
    preamble = gradient(maximize=maximize, decay=wd)
    if not momentum:
        name = "SGD" + suffix(maximize=maximize)
        return Spec(name, tuple(hypers), (), (*preamble, (p, p - eta.symbol * g)))
    mu = momentum_hyper()
    tau = hyperparameter("dampening", 0.0, sympy.S.Reals, latex="tau")
    hypers += [mu, tau]
    buf = StateVar("momentum_buffer", sympy.Symbol("b", real=True), None)
    b = buf.symbol
    direction = g + mu.symbol * b if nesterov else b
    apply = (p, p - eta.symbol * direction)
    return Spec(
        "SGD" + suffix(momentum=True, nesterov=nesterov, maximize=maximize),
        tuple(hypers),
        (buf,),
        (*preamble, (b, mu.symbol * b + (1 - tau.symbol) * g), apply),
        first_updates=(*preamble, (b, g), apply),
        notes="first step: momentum_buffer ← g (no dampening), as torch does",
    )

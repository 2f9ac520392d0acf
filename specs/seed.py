"""The seed blog post's optimizers as named variants (dialects), plus look-ahead Nesterov.

Each variant carries the post's own defaults and, in ``notes``, how it differs from torch. State
keys reuse torch's names for the analogous buffers so one harness can drive both.
"""

from __future__ import annotations

import sympy

from .building_blocks import alpha, betas, eps, lr, momentum_hyper, state, step_counter
from .core import GRAD, PARAM, STEP, Spec

p, g, t = PARAM, GRAD, STEP


def gd() -> Spec:
    eta = lr(0.01)
    return Spec(
        "seed:GD",
        (eta,),
        (),
        ((p, p - eta.symbol * g),),
        notes="torch SGD without momentum/weight decay; default lr 0.01 (torch 1e-3)",
    )


def momentum_gd(*, nesterov: bool = False) -> Spec:
    eta, mu = lr(0.01), momentum_hyper(0.9)
    v = state("momentum_buffer", "v")
    direction = g + mu.symbol * v.symbol if nesterov else v.symbol
    return Spec(
        "seed:Nesterov" if nesterov else "seed:Momentum",
        (eta, mu),
        (v,),
        ((v.symbol, mu.symbol * v.symbol + g), (p, p - eta.symbol * direction)),
        notes=(
            "torch SGD(momentum, dampening=0"
            + (", nesterov=True" if nesterov else "")
            + ") without weight decay; v starts at 0, so step 1 gives v = g exactly like torch's"
            " lazily created buffer; defaults lr 0.01, momentum 0.9 (torch 1e-3, 0)"
        ),
    )


def nesterov_lookahead() -> Spec:
    """Nesterov as defined (Sutskever et al. 2013, in gradient units): the gradient is taken at
    the look-ahead point x − η·μ·v. ``grad`` must be supplied at ``grad_at``."""
    eta, mu = lr(0.01), momentum_hyper(0.9)
    v = state("momentum_buffer", "v")
    return Spec(
        "nesterov:lookahead",
        (eta, mu),
        (v,),
        ((v.symbol, mu.symbol * v.symbol + g), (p, p - eta.symbol * v.symbol)),
        grad_at=p - eta.symbol * mu.symbol * v.symbol,
        notes=(
            "the definition the seed starts from; its iterate x is not torch's param"
            " (torch's param is the look-ahead point x − η·μ·v, see proofs)"
        ),
    )


def _root(accumulator, epsilon, *, eps_inside: bool) -> sympy.Expr:
    """The post's code listings put eps under the sqrt; its formulas (and torch) add it after."""
    if eps_inside:
        return sympy.sqrt(accumulator + epsilon)
    return sympy.sqrt(accumulator) + epsilon


def adagrad(*, eps_inside: bool) -> Spec:
    eta, epsilon = lr(0.01), eps(1e-8)
    h = state("sum", "h")
    denominator = _root(h.symbol, epsilon.symbol, eps_inside=eps_inside)
    where = (
        "full code listing: eps inside the sqrt"
        if eps_inside
        else "text (and the §4 snippet): eps outside the sqrt"
    )
    return Spec(
        f"seed:AdaGrad({'code' if eps_inside else 'text'})",
        (eta, epsilon),
        (h,),
        ((h.symbol, h.symbol + g**2), (p, p - eta.symbol * g / denominator)),
        notes=(
            f"{where}; torch adds eps outside; no lr_decay/weight decay/initial accumulator; "
            "eps 1e-8 (torch 1e-10); no step counter"
        ),
    )


def rmsprop(*, eps_inside: bool = True) -> Spec:
    eta, a, epsilon = lr(0.01), alpha(0.9), eps(1e-8)
    h = state("square_avg", "h")
    denominator = _root(h.symbol, epsilon.symbol, eps_inside=eps_inside)
    return Spec(
        "seed:RMSProp" if eps_inside else "seed:RMSProp(text)",
        (eta, a, epsilon),
        (h,),
        (
            (h.symbol, a.symbol * h.symbol + (1 - a.symbol) * g**2),
            (p, p - eta.symbol * g / denominator),
        ),
        notes=(
            ("code: eps inside the sqrt" if eps_inside else "text: eps outside the sqrt, as torch")
            + "; alpha 0.9 (torch 0.99); no centered/momentum/weight decay; no step counter"
        ),
    )


def adam() -> Spec:
    eta, epsilon = lr(0.01), eps(1e-8)
    beta1, beta2 = betas()
    b1, b2 = beta1.symbol, beta2.symbol
    m, v = state("exp_avg", "v"), state("exp_avg_sq", "h")
    m_hat = m.symbol / (1 - b1**t)
    v_hat = v.symbol / (1 - b2**t)
    return Spec(
        "seed:Adam",
        (eta, beta1, beta2, epsilon),
        (step_counter(), m, v),
        (
            (t, t + 1),
            (m.symbol, b1 * m.symbol + (1 - b1) * g),
            (v.symbol, b2 * v.symbol + (1 - b2) * g**2),
            (p, p - eta.symbol * m_hat / (sympy.sqrt(v_hat) + epsilon.symbol)),
        ),
        notes=(
            "same math as torch Adam (bias correction uses t after the increment); lr 0.01"
            " (torch 1e-3); no weight decay/amsgrad; computes v̂, ĥ explicitly (other rounding)"
        ),
    )


VARIANTS: dict[str, Spec] = {
    spec.name: spec
    for spec in (
        gd(),
        momentum_gd(),
        momentum_gd(nesterov=True),
        adagrad(eps_inside=False),
        adagrad(eps_inside=True),
        rmsprop(eps_inside=True),
        rmsprop(eps_inside=False),
        adam(),
        nesterov_lookahead(),
    )
}

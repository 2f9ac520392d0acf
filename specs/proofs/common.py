"""What the proofs share: the result a proof returns, and one step of a spec on symbolic values.

The proofs iterate the specs' own equations symbolically (``symbolic_step``), so they are about
the rules the oracles evaluate, not about copies of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import sympy

from ..core import Spec

Env = dict[sympy.Symbol, sympy.Expr]


@dataclass(frozen=True)
class ProofResult:
    name: str
    statement: str
    residual: sympy.Expr  # a Matrix when several quantities must vanish
    proved: bool
    derived: Mapping[str, sympy.Expr] = field(default_factory=dict)  # e.g. a derived rescaling


def is_zero(residual) -> bool:
    """Whether a residual (an expression, or a matrix of them) is zero: the proof holds."""
    if isinstance(residual, sympy.MatrixBase):
        return all(entry == 0 for entry in residual)
    return residual == 0


def symbolic_step(
    spec: Spec, env: Env, gradient: Callable[[sympy.Expr], sympy.Expr], hyper: Env, first=False
) -> Env:
    """One step of ``spec`` on symbolic values; the gradient is taken at ``spec.grad_at``.

    Gradient arguments are expanded so that equal points give syntactically equal calls of an
    undefined gradient function (``expand`` is an identity, so nothing is assumed).
    """
    env = {**env, **hyper}
    point = sympy.expand(spec.grad_at.xreplace(env))
    env[spec.grad] = gradient(point)
    rules = spec.first_updates if first else spec.updates
    for target, expr in rules:
        env[target] = expr.xreplace(env)
    return env


def symbols_of(spec: Spec, *names: str) -> list[sympy.Symbol]:
    """The symbols of ``spec``'s hyperparameters and state variables named ``names``."""
    by_name = {h.name: h.symbol for h in spec.hypers} | {v.name: v.symbol for v in spec.state}
    return [by_name[name] for name in names]

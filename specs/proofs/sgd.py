"""Proofs about SGD (``specs.sgd``): torch's Nesterov form is look-ahead Nesterov while the
learning rate is constant, and not under a schedule; closed forms of GD and heavy ball on a
quadratic.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy

from ..core import Spec
from ..seed import nesterov_lookahead
from ..sgd import sgd
from .common import Env, ProofResult, is_zero, symbolic_step, symbols_of


def nesterov_rewrite(steps: int = 3) -> ProofResult:
    """torch's Nesterov (gradient at x', direction g + μ·v) is look-ahead Nesterov, x' = x − η·μ·v.

    Checked for an arbitrary gradient function, constant η, from a fresh state (torch's first step
    sets the buffer to g) and from an arbitrary started buffer v0.
    """
    G = sympy.Function("G")
    torch_spec, lookahead = sgd(momentum=True, nesterov=True), nesterov_lookahead()
    eta, mu, tau, wd = symbols_of(torch_spec, "lr", "momentum", "dampening", "weight_decay")
    (v,) = symbols_of(lookahead, "momentum_buffer")
    (b,) = symbols_of(torch_spec, "momentum_buffer")
    lookahead_hyper = dict(zip(symbols_of(lookahead, "lr", "momentum"), (eta, mu), strict=True))
    torch_hyper = {tau: sympy.S.Zero, wd: sympy.S.Zero}
    x0, v0 = sympy.symbols("x0 v0", real=True)
    p = torch_spec.param
    residuals = []
    for start in (sympy.S.Zero, v0):
        x_env: Env = {p: x0, v: start}
        y_env: Env = {p: x0 - eta * mu * start, b: start}
        for k in range(steps):
            x_env = symbolic_step(lookahead, x_env, G, lookahead_hyper)
            fresh = k == 0 and start == 0
            y_env = symbolic_step(torch_spec, y_env, G, torch_hyper, first=fresh)
            residuals += [y_env[p] - (x_env[p] - eta * mu * x_env[v]), y_env[b] - x_env[v]]
    residual = sympy.ImmutableMatrix([sympy.simplify(r) for r in residuals])
    return ProofResult(
        "nesterov_rewrite",
        f"torch SGD(nesterov) iterate = x − η·μ·v of look-ahead Nesterov, {steps} steps, any G",
        residual,
        is_zero(residual),
    )


def nesterov_lr_schedule(steps: int = 3) -> ProofResult:
    """With a learning rate that changes between steps, torch's Nesterov is no longer Nesterov.

    Reference: Sutskever et al. (2013), d ← μ·d − η_k·∇f(θ + μ·d), θ ← θ + d, whose velocity is
    in parameter units. torch's buffer b is in gradient units (d = −η·b), and torch's param is the
    look-ahead point θ + μ·d. The identity holds only while η is constant: after a change
    η_old → η_new the carried momentum is η_new·μ·b instead of η_old·μ·b, and the iterates part
    by −μ²·(η_new − η_old)·G(x0) after the first changed step (residual below).

    Solving for a rescaling c of the buffer before the changed step gives c = η_old/η_new, and with
    that rescaling at every change the identity holds again, for any schedule.

    For users of LR schedulers with ``nesterov=True`` (and plain momentum alike): torch does not
    rescale ``momentum_buffer``, so each LR change scales the remembered momentum by
    η_new/η_old at once (a decaying schedule also damps the momentum, a warm-up amplifies it).
    Usually harmless, but to follow Sutskever's schedule exactly, multiply every
    ``state["momentum_buffer"]`` by η_old/η_new whenever the scheduler changes the LR.
    """
    G = sympy.Function("G")
    torch_spec = sgd(momentum=True, nesterov=True)
    eta, mu, tau, wd = symbols_of(torch_spec, "lr", "momentum", "dampening", "weight_decay")
    (b,) = symbols_of(torch_spec, "momentum_buffer")
    p = torch_spec.param
    x0, c = sympy.symbols("x0 c", real=True)
    etas = sympy.symbols(f"eta0:{steps}", positive=True)

    def sutskever(theta, d, rate):
        d = mu * d - rate * G(sympy.expand(theta + mu * d))
        return theta + d, d

    def gap(rescale: Callable[[int], sympy.Expr], count: int) -> sympy.Expr:
        theta, d = x0, sympy.S.Zero
        env: Env = {p: x0}
        for k in range(count):
            if k:
                env[b] = rescale(k) * env[b]
            hyper = {eta: etas[k], tau: sympy.S.Zero, wd: sympy.S.Zero}
            env = symbolic_step(torch_spec, env, G, hyper, first=k == 0)
            theta, d = sutskever(theta, d, etas[k])
        # torch's param is the look-ahead point θ + μ·d
        return sympy.simplify(env[p] - (theta + mu * d))

    two_step_gap = gap(lambda k: c, 2)
    (rescale,) = sympy.solve(two_step_gap, c)
    unrescaled = sympy.factor(two_step_gap.subs(c, 1))
    residual = gap(lambda k: etas[k - 1] / etas[k], steps)
    restored = residual == 0 and sympy.simplify(rescale - etas[0] / etas[1]) == 0
    return ProofResult(
        "nesterov_lr_schedule",
        f"η changing each step: torch ≠ Sutskever (gap {unrescaled}); "
        f"rescaling b ← ({rescale})·b at each change restores it over {steps} steps",
        residual,
        restored and unrescaled != 0,
        {"unrescaled_residual": unrescaled, "buffer_rescale": rescale},
    )


def _iterate_on_quadratic(spec: Spec, hyper: Env, a: sympy.Symbol, x0, steps: int) -> list:
    env: Env = {spec.param: x0}
    trajectory = [x0]
    for k in range(steps):
        lazy = spec.first_updates is not None and k == 0
        env = symbolic_step(spec, env, lambda x: a * x, hyper, first=lazy)
        trajectory.append(env[spec.param])
    return trajectory


def quadratic_closed_forms(steps: int = 6) -> ProofResult:
    """On f = ½·a·x², GD and heavy-ball momentum (with dampening) have closed forms (rsolve).

    GD: x_{k+1} = (1 − η·a)·x_k. Heavy ball: eliminating the buffer (η·b_k = x_{k−1} − x_k)
    gives x_{k+2} = (1 + μ − η·(1−τ)·a)·x_{k+1} − μ·x_k with x_1 = (1 − η·a)·x_0, because
    torch's first step takes b = g undamped. Both closed forms equal the spec iterated.
    """
    a, x0 = sympy.symbols("a x0", real=True)
    k = sympy.Symbol("k", integer=True, nonnegative=True)
    x = sympy.Function("x")
    residuals = []

    plain = sgd()
    eta, wd = symbols_of(plain, "lr", "weight_decay")
    gd_closed = sympy.rsolve(x(k + 1) - (1 - eta * a) * x(k), x(k), {x(0): x0})
    gd_iterates = _iterate_on_quadratic(plain, {wd: 0}, a, x0, steps)
    residuals += [sympy.expand(gd_closed.subs(k, n) - xn) for n, xn in enumerate(gd_iterates)]

    heavy = sgd(momentum=True)
    eta, mu, tau, wd = symbols_of(heavy, "lr", "momentum", "dampening", "weight_decay")
    recurrence = x(k + 2) - (1 + mu - eta * (1 - tau) * a) * x(k + 1) + mu * x(k)
    hb_closed = sympy.rsolve(recurrence, x(k), {x(0): x0, x(1): (1 - eta * a) * x0})
    hb_iterates = _iterate_on_quadratic(heavy, {wd: 0}, a, x0, steps)
    residuals += [
        sympy.simplify(sympy.expand(hb_closed.subs(k, n)) - sympy.expand(xn))
        for n, xn in enumerate(hb_iterates)
    ]
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "quadratic_closed_forms",
        f"f = a·x²/2: GD x_k = {gd_closed}; heavy-ball rsolve closed form = spec, k ≤ {steps}",
        residual,
        is_zero(residual),
        {"gd": gd_closed, "heavy_ball": hb_closed},
    )

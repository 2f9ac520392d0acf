"""Symbolic proofs about the specs. Each returns the simplified residual; zero means proved.

The proofs iterate the specs' own equations symbolically (``symbolic_step``), so they are about
the rules the oracles evaluate, not about copies of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import sympy

from .algorithms import adam, adamax, asgd, nadam, radam_rho, rmsprop, sgd
from .core import Spec
from .seed import nesterov_lookahead

Env = dict[sympy.Symbol, sympy.Expr]


@dataclass(frozen=True)
class ProofResult:
    name: str
    statement: str
    residual: sympy.Expr  # a Matrix when several quantities must vanish
    proved: bool
    derived: Mapping[str, sympy.Expr] = field(default_factory=dict)  # e.g. a derived rescaling


def _is_zero(residual) -> bool:
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


def _symbols(spec: Spec, *names: str) -> list[sympy.Symbol]:
    by_name = {h.name: h.symbol for h in spec.hypers} | {v.name: v.symbol for v in spec.state}
    return [by_name[name] for name in names]


def nesterov_rewrite(steps: int = 3) -> ProofResult:
    """torch's Nesterov (gradient at x', direction g + μ·v) is look-ahead Nesterov, x' = x − η·μ·v.

    Checked for an arbitrary gradient function, constant η, from a fresh state (torch's first step
    sets the buffer to g) and from an arbitrary started buffer v0.
    """
    G = sympy.Function("G")
    torch_spec, lookahead = sgd(momentum=True, nesterov=True), nesterov_lookahead()
    eta, mu, tau, wd = _symbols(torch_spec, "lr", "momentum", "dampening", "weight_decay")
    (v,) = _symbols(lookahead, "momentum_buffer")
    (b,) = _symbols(torch_spec, "momentum_buffer")
    lookahead_hyper = dict(zip(_symbols(lookahead, "lr", "momentum"), (eta, mu), strict=True))
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
        _is_zero(residual),
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
    eta, mu, tau, wd = _symbols(torch_spec, "lr", "momentum", "dampening", "weight_decay")
    (b,) = _symbols(torch_spec, "momentum_buffer")
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


def adam_implementable_form() -> ProofResult:
    """torch's Adam step, lr/(1−β1^t)·m/(√v/√(1−β2^t) + eps), equals the spec's m̂/(√v̂ + eps).

    For 0 ≤ β < 1 and t ≥ 1, 1 − β^t lies in (0, 1], so it is replaced by a positive symbol;
    v ≥ 0 always (a sum of squares). Checked with and without amsgrad (max taken first).
    """
    residuals = []
    for spec in (adam(), adam(amsgrad=True)):
        eta, beta1, beta2, epsilon = _symbols(spec, "lr", "beta1", "beta2", "eps")
        second = spec.state[-1].symbol  # exp_avg_sq, or max_exp_avg_sq with amsgrad
        (m,) = _symbols(spec, "exp_avg")
        t = spec.state[0].symbol
        c1, c2, v = sympy.symbols("c1 c2 v", positive=True)
        textbook = spec.updates[-1][1]
        implementable = spec.param - (eta / (1 - beta1**t)) * m / (
            sympy.sqrt(second) / sympy.sqrt(1 - beta2**t) + epsilon
        )
        positive = {beta1**t: 1 - c1, beta2**t: 1 - c2}
        difference = (textbook - implementable).subs(positive).xreplace({second: v})
        residuals.append(sympy.simplify(difference))
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "adam_implementable_form",
        "Adam: lr/(1−β1^t)·m/(√v/√(1−β2^t) + eps) = lr·m̂/(√v̂ + eps) (plain and amsgrad)",
        residual,
        _is_zero(residual),
    )


def ema_lerp_form() -> ProofResult:
    """The lerp form torch uses, m + (1−β)(g − m), is the textbook EMA β·m + (1−β)·g."""
    residuals = []
    for spec, hyper_name, state_name in (
        (adam(), "beta1", "exp_avg"),
        (rmsprop(centered=True), "alpha", "grad_avg"),
    ):
        (beta,) = _symbols(spec, hyper_name)
        (m,) = _symbols(spec, state_name)
        rule = dict(spec.updates)[m]
        residuals.append(sympy.simplify(rule - (beta * m + (1 - beta) * spec.grad)))
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "ema_lerp_form",
        "lerp EMA (Adam exp_avg, RMSprop grad_avg) = β·m + (1−β)·g",
        residual,
        _is_zero(residual),
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
    eta, wd = _symbols(plain, "lr", "weight_decay")
    gd_closed = sympy.rsolve(x(k + 1) - (1 - eta * a) * x(k), x(k), {x(0): x0})
    gd_iterates = _iterate_on_quadratic(plain, {wd: 0}, a, x0, steps)
    residuals += [sympy.expand(gd_closed.subs(k, n) - xn) for n, xn in enumerate(gd_iterates)]

    heavy = sgd(momentum=True)
    eta, mu, tau, wd = _symbols(heavy, "lr", "momentum", "dampening", "weight_decay")
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
        _is_zero(residual),
        {"gd": gd_closed, "heavy_ball": hb_closed},
    )


def _generic_branch(expr: sympy.Expr) -> sympy.Expr:
    """The ``True`` branch of a Piecewise that SymPy splits off for a boundary value outside the
    domain (β = 1 in a geometric sum over 0 ≤ β < 1)."""
    if isinstance(expr, sympy.Piecewise):
        return expr.args[-1][0]
    return expr


def radam_rho_closed_form(betas=(0.9, 0.99, 0.999, 0.9999)) -> ProofResult:
    """RAdam's ρ_t = ρ_∞ − 2tβ^t/(1 − β^t) is the length f of the simple moving average whose
    centre of mass equals that of the bias-corrected EMA of g² (Liu et al. 2019, eq. 4):

    the EMA weights (1 − β)β^(t−i)/(1 − β^t), i = 1..t, have centre of mass c; an SMA of the
    last f values has t − (f − 1)/2; so f = 2(t − c) + 1, and f − ρ_t simplifies to 0 for
    0 ≤ β < 1. Derived beside it: the first step where torch rectifies (ρ_t > 5) for common β2,
    and the paper's threshold (ρ_t > 4); ρ_∞ ≤ 5 (β2 ≤ 2/3) never rectifies.
    """
    beta = sympy.Symbol("beta2", positive=True)
    t, i = sympy.symbols("t i", integer=True, positive=True)
    centre = sympy.summation((1 - beta) * beta ** (t - i) * i, (i, 1, t)) / (1 - beta**t)
    rho_inf, rho_t = radam_rho(beta, t)
    residual = _generic_branch(sympy.simplify(sympy.piecewise_fold(2 * (t - centre) + 1 - rho_t)))

    def first_step(b, threshold):
        b = sympy.nsimplify(b)
        for n in range(1, 10_000):
            if rho_t.subs({beta: b, t: n}) > threshold:
                return n
        return None

    derived = {
        f"first rectified step, beta2={b} (torch: rho_t > 5; paper: > 4)": sympy.Tuple(
            first_step(b, 5), first_step(b, 4)
        )
        for b in betas
    }
    derived["never rectified iff beta2 <="] = sympy.solve(sympy.Eq(rho_inf, 5), beta)[0]
    return ProofResult(
        "radam_rho_closed_form",
        "RAdam: ρ_t = ρ_∞ − 2tβ2^t/(1 − β2^t) = 2(t − centre of mass of the EMA) + 1",
        residual,
        residual == 0,
        derived,
    )


def nadam_mu_product(steps: int = 6) -> ProofResult:
    """NAdam's ``mu_product`` state, updated as Π ← Π·μ_t from Π = 1, is the running product
    μ_1⋯μ_t of the momentum schedule (the exact rule: torch rounds Π into float32 each step,
    which the oracle takes as stored). The rule is iterated as the spec writes it, with the
    step counter's own rule."""
    spec = nadam().exact()
    (product,) = _symbols(spec, "mu_product")
    t = spec.state[0].symbol
    beta1, psi = _symbols(spec, "beta1", "momentum_decay")
    rules = dict(spec.updates)
    k = sympy.Symbol("k", integer=True, positive=True)
    mu_k = beta1 * (1 - sympy.Rational(1, 2) * sympy.Rational(24, 25) ** (k * psi))
    value, count, residuals = sympy.S.One, sympy.S.Zero, []
    for n in range(1, steps + 1):
        count = rules[t].xreplace({t: count})
        value = rules[product].xreplace({product: value, t: count})
        residuals.append(sympy.simplify(value - sympy.product(mu_k, (k, 1, n))))
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "nadam_mu_product",
        f"NAdam: mu_product after t steps = μ_1⋯μ_t, μ_k = β1(1 − ½·0.96^(kψ)), t ≤ {steps}",
        residual,
        _is_zero(residual),
    )


def adamax_eps_placement() -> ProofResult:
    """torch's Adamax, u ← max(β2·u, |g| + ε), divides by u; Kingma & Ba's u ← max(β2·u, |g|)
    with ε added outside divides by u + ε. Not the same rule:

    - step 1 from u = 0: both denominators are |g| + ε (residual 0);
    - step 2 with β2·|g1| > |g2|: torch's is β2(|g1| + ε), the paper's β2|g1| + ε, apart by
      (1 − β2)·ε (derived, nonzero).

    By induction (U torch's state, V the paper's): V + β2^k·ε ≤ U ≤ V + ε, k the steps since
    |g| + ε last won the max; so the denominators differ by at most ε, a relative difference
    of the step below ε/(V + ε). With torch's default ε = 1e-8 that is invisible unless the
    gradients themselves are ~1e-8.
    """
    spec = adamax()
    (u,) = _symbols(spec, "exp_inf")
    (beta2,) = _symbols(spec, "beta2")
    epsilon, g1 = sympy.symbols("epsilon g1", positive=True)  # eps > 0; a gradient |g1| > 0

    def torch_u(previous, g):
        return sympy.Max(beta2 * previous, g + epsilon)

    def paper_u(previous, g):
        return sympy.Max(beta2 * previous, g)

    rule = dict(spec.updates)[u].xreplace({_symbols(spec, "eps")[0]: epsilon})
    same_rule = sympy.simplify(rule.xreplace({spec.grad: g1, u: 0}) - torch_u(0, g1))
    first = sympy.simplify(torch_u(0, g1) - (paper_u(0, g1) + epsilon))
    # step 2 with beta2*|g1| > |g2| + eps: the remembered norm wins the max on both sides
    second = sympy.factor(beta2 * torch_u(0, g1) - (beta2 * paper_u(0, g1) + epsilon))
    residual = sympy.ImmutableMatrix([same_rule, first])
    return ProofResult(
        "adamax_eps_placement",
        "Adamax: torch's max(β2·u, |g| + ε) = the paper's max(β2·u, |g|) + ε at step 1 only; "
        f"at step 2 they part by {second}",
        residual,
        _is_zero(residual) and second != 0,
        {"step-2 gap (torch - paper)": second},
    )


def asgd_averaging(steps: int = 6) -> ProofResult:
    """ASGD's ``ax`` is the plain average of the iterates, from the (t0 + 2)-th on.

    torch sets μ at the *end* of a step, μ ← 1/max(1, t − t0), and the next step uses it:
    ax ← ax + μ(p − ax). So the step that first averages is t0 + 3, and after T ≥ t0 + 2 steps
    ax = (p_{t0+2} + ⋯ + p_T)/(T − t0 − 1): Polyak–Juditsky averaging, started one iterate
    later than "from t0 + 1" (the first averaged iterate is the one after μ first drops below
    1). Checked for arbitrary iterates p_1..p_T and t0 = 0, 1, 2.
    """
    spec = asgd()
    (mu,) = _symbols(spec, "mu")
    (ax,) = _symbols(spec, "ax")
    (t0,) = _symbols(spec, "t0")
    t = spec.state[0].symbol
    rules = dict(spec.updates)
    iterates = sympy.symbols(f"p1:{steps + 1}", real=True)
    residuals = []
    for start in (0, 1, 2):
        a, m = sympy.S.Zero, sympy.S.One
        for n, p_n in enumerate(iterates, start=1):
            a = rules[ax].xreplace({ax: a, mu: m, spec.param: p_n})
            m = rules[mu].xreplace({t: n, t0: start})
            if n >= start + 2:
                average = sum(iterates[start + 1 : n]) / (n - start - 1)
                residuals.append(sympy.simplify(a - average))
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "asgd_averaging",
        f"ASGD: ax after T steps = mean(p_(t0+2), …, p_T), T ≤ {steps}, t0 ∈ {{0, 1, 2}}",
        residual,
        _is_zero(residual),
    )


ALL_PROOFS: list[Callable[[], ProofResult]] = [
    nesterov_rewrite,
    nesterov_lr_schedule,
    adam_implementable_form,
    ema_lerp_form,
    quadratic_closed_forms,
    radam_rho_closed_form,
    nadam_mu_product,
    adamax_eps_placement,
    asgd_averaging,
]

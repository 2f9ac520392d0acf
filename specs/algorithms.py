"""torch.optim's update rules (torch 2.13, ``_single_tensor_*`` semantics) as SymPy specs.

Structural flags (momentum on/off, nesterov, amsgrad, centered, maximize) pick the equations;
numeric hyperparameters stay symbols. Textbook forms are kept where torch computes an
algebraically equal rearrangement; ``specs.proofs`` proves the rearrangements equal.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import sympy

from .core import (
    GRAD,
    NONNEGATIVE,
    PARAM,
    STEP,
    UNIT_INTERVAL,
    Hyper,
    Spec,
    StateVar,
    Update,
)

p, g, t = PARAM, GRAD, STEP


def _hyper(name: str, default: float, domain: sympy.Set = NONNEGATIVE, latex: str | None = None):
    return Hyper(name, sympy.Symbol(latex or name, real=True), domain, default)


def lr(default: float) -> Hyper:
    return _hyper("lr", default, latex="eta")


def momentum_hyper(default: float = 0.0) -> Hyper:
    return _hyper("momentum", default, latex="mu")


def weight_decay(default: float = 0.0) -> Hyper:
    return _hyper("weight_decay", default, latex="lambda")


def eps(default: float) -> Hyper:
    return _hyper("eps", default, latex="epsilon")


def alpha(default: float) -> Hyper:
    return _hyper("alpha", default)


def betas(beta1: float = 0.9, beta2: float = 0.999) -> tuple[Hyper, Hyper]:
    return (
        _hyper("beta1", beta1, UNIT_INTERVAL, latex="beta1"),
        _hyper("beta2", beta2, UNIT_INTERVAL, latex="beta2"),
    )


def state(name: str, latex: str, initial=sympy.S.Zero) -> StateVar:
    return StateVar(name, sympy.Symbol(latex, real=True), initial)


def step_counter() -> StateVar:
    return StateVar("step", t, sympy.S.Zero, scalar=True)


def _suffix(**flags: bool) -> str:
    on = [name for name, value in flags.items() if value]
    return f"[{','.join(on)}]" if on else ""


def gradient(*, maximize: bool, decay: Hyper | None = None) -> tuple:
    """torch's shared preamble: negate for maximize, then L2 decay folded into the gradient."""
    rules = [(g, -g)] if maximize else []
    if decay is not None:
        rules.append((g, g + decay.symbol * p))
    return tuple(rules)


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
        name = "SGD" + _suffix(maximize=maximize)
        return Spec(name, tuple(hypers), (), (*preamble, (p, p - eta.symbol * g)))
    mu = momentum_hyper()
    tau = _hyper("dampening", 0.0, sympy.S.Reals, latex="tau")
    hypers += [mu, tau]
    buf = StateVar("momentum_buffer", sympy.Symbol("b", real=True), None)
    b = buf.symbol
    direction = g + mu.symbol * b if nesterov else b
    apply = (p, p - eta.symbol * direction)
    return Spec(
        "SGD" + _suffix(momentum=True, nesterov=nesterov, maximize=maximize),
        tuple(hypers),
        (buf,),
        (*preamble, (b, mu.symbol * b + (1 - tau.symbol) * g), apply),
        first_updates=(*preamble, (b, g), apply),
        notes="first step: momentum_buffer ← g (no dampening), as torch does",
    )


def adagrad(*, maximize: bool = False) -> Spec:
    eta, wd = lr(1e-2), weight_decay()
    decay = _hyper("lr_decay", 0.0)
    init = _hyper("initial_accumulator_value", 0.0, latex="s0")
    epsilon = eps(1e-10)
    sq = state("sum", "s", initial=init.symbol)
    s = sq.symbol
    clr = eta.symbol / (1 + (t - 1) * decay.symbol)
    return Spec(
        "Adagrad" + _suffix(maximize=maximize),
        (eta, decay, wd, init, epsilon),
        (step_counter(), sq),
        (
            (t, t + 1),
            *gradient(maximize=maximize, decay=wd),
            (s, s + g**2),
            (p, p - clr * g / (sympy.sqrt(s) + epsilon.symbol)),
        ),
    )


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
        "RMSprop" + _suffix(centered=centered, momentum=momentum, maximize=maximize),
        tuple(hypers),
        tuple(states),
        tuple(rules),
    )


def _adam(name: str, *, decoupled: bool, amsgrad: bool, maximize: bool) -> Spec:
    eta, epsilon = lr(1e-3), eps(1e-8)
    beta1, beta2 = betas()
    wd = weight_decay(1e-2 if decoupled else 0.0)
    m, v = state("exp_avg", "m"), state("exp_avg_sq", "v")
    states = [step_counter(), m, v]
    rules = [(t, t + 1), *gradient(maximize=maximize, decay=None if decoupled else wd)]
    if decoupled:
        rules.append((p, p * (1 - eta.symbol * wd.symbol)))
    b1, b2 = beta1.symbol, beta2.symbol
    rules.append((m.symbol, m.symbol + (1 - b1) * (g - m.symbol)))
    rules.append((v.symbol, b2 * v.symbol + (1 - b2) * g**2))
    second = v.symbol
    if amsgrad:
        vmax = state("max_exp_avg_sq", "vmax")
        states.append(vmax)
        rules.append((vmax.symbol, sympy.Max(vmax.symbol, v.symbol)))
        second = vmax.symbol
    # textbook form; torch's rearrangement is proved equal in specs.proofs
    m_hat = m.symbol / (1 - b1**t)
    v_hat = second / (1 - b2**t)
    rules.append((p, p - eta.symbol * m_hat / (sympy.sqrt(v_hat) + epsilon.symbol)))
    return Spec(
        name + _suffix(amsgrad=amsgrad, maximize=maximize),
        (eta, beta1, beta2, epsilon, wd),
        tuple(states),
        tuple(rules),
    )


def adam(*, amsgrad: bool = False, maximize: bool = False) -> Spec:
    return _adam("Adam", decoupled=False, amsgrad=amsgrad, maximize=maximize)


def adamw(*, amsgrad: bool = False, maximize: bool = False) -> Spec:
    return _adam("AdamW", decoupled=True, amsgrad=amsgrad, maximize=maximize)


def _decoupled_or_l2(*, maximize: bool, decoupled: bool, eta: Hyper, wd: Hyper) -> tuple:
    """NAdam/RAdam: ``p ← p(1 − ηλ)`` (decoupled) or the L2 term folded into the gradient."""
    if decoupled:
        return (*gradient(maximize=maximize), (p, p * (1 - eta.symbol * wd.symbol)))
    return gradient(maximize=maximize, decay=wd)


def _ema(m: sympy.Symbol, beta: sympy.Symbol, value: sympy.Expr) -> Update:
    return (m, m + (1 - beta) * (value - m))


def adamax(*, maximize: bool = False) -> Spec:
    """Adamax as torch computes it: eps *inside* the infinity norm, ``u ← max(β2·u, |g| + eps)``
    (Kingma & Ba's u_t = max(β2·u, |g|) has no eps; ``proofs.adamax_eps_placement`` measures
    the difference)."""
    eta, epsilon, wd = lr(2e-3), eps(1e-8), weight_decay()
    beta1, beta2 = betas()
    m, u = state("exp_avg", "m"), state("exp_inf", "u")
    b1, b2 = beta1.symbol, beta2.symbol
    return Spec(
        "Adamax" + _suffix(maximize=maximize),
        (eta, beta1, beta2, epsilon, wd),
        (step_counter(), m, u),
        (
            (t, t + 1),
            *gradient(maximize=maximize, decay=wd),
            _ema(m.symbol, b1, g),
            (u.symbol, sympy.Max(b2 * u.symbol, sympy.Abs(g) + epsilon.symbol)),
            (p, p - eta.symbol / (1 - b1**t) * m.symbol / u.symbol),
        ),
    )


def _momentum_schedule(beta1: sympy.Expr, psi: sympy.Expr, step: sympy.Expr) -> sympy.Expr:
    """NAdam's μ_t = β1·(1 − ½·0.96^(t·ψ)) (Dozat 2016, with torch's ψ = momentum_decay)."""
    return beta1 * (1 - sympy.Rational(1, 2) * sympy.Rational(24, 25) ** (step * psi))


def scalar_state_product(stored, factor: float) -> float:
    """``state *= factor`` on a 0-d state in torch's scalar dtype (float32; float64 under a
    float64 default dtype): the double factor cast into it, the product rounded into it."""
    import torch

    real = np.float64 if torch.get_default_dtype() == torch.float64 else np.float32
    return float(real(float(np.asarray(stored))) * real(factor))


def _float32_product(param, grad, state, hyper, dtype) -> dict:
    """torch's ``mu_product *= mu``; the update then reads it back as a double."""
    t = float(state.get("step", 0.0)) + 1
    mu = hyper.get("beta1", 0.9) * (1.0 - 0.5 * 0.96 ** (t * hyper.get("momentum_decay", 4e-3)))
    return {MU_PRODUCT_ROUNDED: scalar_state_product(state.get("mu_product", 1.0), mu)}


MU_PRODUCT_ROUNDED = sympy.Symbol("Pi_t", positive=True)


def nadam(*, decoupled: bool = False, maximize: bool = False) -> Spec:
    """NAdam (Dozat 2016) as torch computes it: the momentum schedule μ_t, the running product
    Π_t = μ_1⋯μ_t kept in a float32 state (rounded every step: the oracle takes Π_t as torch
    stores it), the Nesterov-style mix of g and m, and ``sqrt(v/(1 − β2^t)) + eps``."""
    eta, epsilon, wd = lr(2e-3), eps(1e-8), weight_decay()
    beta1, beta2 = betas()
    psi = _hyper("momentum_decay", 4e-3, latex="psi")
    product = StateVar("mu_product", sympy.Symbol("Pi", positive=True), sympy.S.One, True, True)
    m, v = state("exp_avg", "m"), state("exp_avg_sq", "v")
    b1, b2 = beta1.symbol, beta2.symbol
    mu_t = _momentum_schedule(b1, psi.symbol, t)
    mu_next = _momentum_schedule(b1, psi.symbol, t + 1)
    pi_t = MU_PRODUCT_ROUNDED
    stored = product.symbol  # after its rule: Π_t as stored (decided), or exact (``exact()``)
    denominator = sympy.sqrt(v.symbol / (1 - b2**t)) + epsilon.symbol
    return Spec(
        "NAdam" + _suffix(decoupled_weight_decay=decoupled, maximize=maximize),
        (eta, beta1, beta2, epsilon, wd, psi),
        (step_counter(), product, m, v),
        (
            (t, t + 1),
            *_decoupled_or_l2(maximize=maximize, decoupled=decoupled, eta=eta, wd=wd),
            (product.symbol, pi_t),
            _ema(m.symbol, b1, g),
            (v.symbol, b2 * v.symbol + (1 - b2) * g**2),
            (
                p,
                p
                - eta.symbol * (1 - mu_t) / (1 - stored) * g / denominator
                - eta.symbol * mu_next / (1 - stored * mu_next) * m.symbol / denominator,
            ),
        ),
        decided={pi_t: product.symbol * mu_t},
        decide=_float32_product,
        notes="Π_t is torch's float32 mu_product (rounded every step), read back as a double",
    )


RECTIFY = sympy.Symbol("r", real=True)


def radam_rho(beta2: sympy.Expr, step: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """(ρ_∞, ρ_t): the length of the simple moving average that approximates the EMA of g²
    (Liu et al. 2019; ``proofs.radam_rho_closed_form`` derives it)."""
    rho_inf = 2 / (1 - beta2) - 1
    return rho_inf, rho_inf - 2 * step * beta2**step / (1 - beta2**step)


def radam_rectification(rho_inf: sympy.Expr, rho: sympy.Expr) -> sympy.Expr:
    """Liu et al.'s variance rectification r_t for an SMA length ``rho`` (ρ_t)."""
    return sympy.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))


def _radam_rectifies(param, grad, state, hyper, dtype) -> dict:
    """torch decides ``rho_t > 5`` in Python doubles, op for op as below."""
    step = float(state.get("step", 0.0)) + 1
    beta2 = hyper.get("beta2", 0.999)
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * (beta2**step) / (1 - beta2**step)
    return {RECTIFY: 1.0 if rho_t > 5.0 else 0.0}


def radam(*, decoupled: bool = False, maximize: bool = False) -> Spec:
    """RAdam as torch computes it: unrectified (momentum SGD with bias correction) until
    ρ_t > 5 — decided in double, as torch does (Liu et al. use ρ_t > 4) — then
    ``m̂·r_t·sqrt(1 − β2^t)/(sqrt(v) + eps)``: eps is added to sqrt(v), not to sqrt(v̂)."""
    eta, epsilon, wd = lr(1e-3), eps(1e-8), weight_decay()
    beta1, beta2 = betas()
    m, v = state("exp_avg", "m"), state("exp_avg_sq", "v")
    b1, b2 = beta1.symbol, beta2.symbol
    rho_inf, rho_t = radam_rho(b2, t)
    rectification = radam_rectification(rho_inf, rho_t)
    m_hat = m.symbol / (1 - b1**t)
    adaptive = sympy.sqrt(1 - b2**t) / (sympy.sqrt(v.symbol) + epsilon.symbol)
    return Spec(
        "RAdam" + _suffix(decoupled_weight_decay=decoupled, maximize=maximize),
        (eta, beta1, beta2, epsilon, wd),
        (step_counter(), m, v),
        (
            (t, t + 1),
            *_decoupled_or_l2(maximize=maximize, decoupled=decoupled, eta=eta, wd=wd),
            _ema(m.symbol, b1, g),
            (v.symbol, b2 * v.symbol + (1 - b2) * g**2),
            (
                p,
                sympy.Piecewise(
                    (p - eta.symbol * m_hat * rectification * adaptive, RECTIFY > 0),
                    (p - eta.symbol * m_hat, True),
                ),
            ),
        ),
        decided={RECTIFY: sympy.Piecewise((1, rho_t > 5), (0, True))},
        decide=_radam_rectifies,
        notes="the branch is torch's double-precision rho_t > 5",
    )


def adadelta(*, maximize: bool = False) -> Spec:
    """Adadelta (Zeiler 2012) with torch's lr (the paper's is 1) and eps inside both roots."""
    eta, epsilon, wd = lr(1.0), eps(1e-6), weight_decay()
    rho = _hyper("rho", 0.9, sympy.Interval(0, 1))
    v, u = state("square_avg", "v"), state("acc_delta", "u")
    delta = sympy.Symbol("Delta", real=True)
    r = rho.symbol
    return Spec(
        "Adadelta" + _suffix(maximize=maximize),
        (eta, rho, epsilon, wd),
        (step_counter(), v, u),
        (
            (t, t + 1),
            *gradient(maximize=maximize, decay=wd),
            (v.symbol, r * v.symbol + (1 - r) * g**2),
            (
                delta,
                sympy.sqrt(u.symbol + epsilon.symbol) / sympy.sqrt(v.symbol + epsilon.symbol) * g,
            ),
            (u.symbol, r * u.symbol + (1 - r) * delta**2),
            (p, p - eta.symbol * delta),
        ),
    )


def asgd(*, maximize: bool = False) -> Spec:
    """ASGD as torch computes it: ``p ← p(1 − λ·η_t) − η_t·g`` with the η_t and μ_t the
    *previous* step stored (float32 0-d states), then Polyak–Juditsky averaging
    ``ax ← ax + μ_t(p − ax)`` (μ_t = 1 copies p), then η_{t+1} = lr/(1 + λ·lr·t)^α and
    μ_{t+1} = 1/max(1, t − t0)."""
    eta = lr(1e-2)
    lambd, power = _hyper("lambd", 1e-4), _hyper("alpha", 0.75)
    t0, wd = _hyper("t0", 1e6), weight_decay()
    # torch's fresh eta is lr stored in its scalar dtype (float32): decided, exactly lr
    rate = StateVar("eta", sympy.Symbol("eta_t", positive=True), FIRST_ETA, True, True)
    mu = StateVar("mu", sympy.Symbol("mu_t", positive=True), sympy.S.One, True, True)
    ax = state("ax", "a")
    return Spec(
        "ASGD" + _suffix(maximize=maximize),
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


FIRST_ETA = sympy.Symbol("eta_0", positive=True)


def _first_eta(param, grad, state, hyper, dtype) -> dict:
    """A fresh ASGD state holds ``torch.as_tensor(lr)``: lr rounded into the scalar dtype."""
    return {FIRST_ETA: scalar_state_product(hyper.get("lr", 1e-2), 1.0)}


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
    minus, plus = _hyper("etaminus", 0.5), _hyper("etaplus", 1.2)
    low, high = _hyper("step_size_min", 1e-6), _hyper("step_size_max", 50.0)
    prev = state("prev", "q")
    size = StateVar("step_size", sympy.Symbol("s", positive=True), eta.symbol)
    factor = sympy.Piecewise((plus.symbol, SIGN > 0), (minus.symbol, SIGN < 0), (1, True))
    kept = sympy.Symbol("g_kept", real=True)
    return Spec(
        "Rprop" + _suffix(maximize=maximize),
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
            _ema(m.symbol, b1, g),
            _ema(v.symbol, b2, g**2),
            (p, p - step_size * m.symbol / (sympy.sqrt(v.symbol) + epsilon.symbol)),
        ),
        notes="touched rows only; eps is not bias-corrected",
    )


def for_group(optimizer_name: str, group: Mapping) -> tuple[Spec, dict[str, float]]:
    """The spec and float hyperparameters for one torch param_group of ``optimizer_name``."""
    spec = _spec(optimizer_name, _structure(optimizer_name, group))
    values = dict(group)
    for pair, names in _PAIRS.items():
        if pair in values:
            values[names[0]], values[names[1]] = values[pair]
    hyper = {h.name: float(values.get(h.name, h.default)) for h in spec.hypers}
    return spec, hyper


def _structure(optimizer_name: str, group: Mapping) -> tuple:
    """The flags that choose a spec's equations (not its hyperparameter values)."""
    flags = {"maximize": bool(group.get("maximize", False))}
    if optimizer_name == "SGD":
        flags.update(
            momentum=group.get("momentum", 0) != 0, nesterov=bool(group.get("nesterov", False))
        )
    elif optimizer_name in ("Adam", "AdamW"):
        flags.update(
            decoupled=optimizer_name == "AdamW" or bool(group.get("decoupled_weight_decay", False)),
            amsgrad=bool(group.get("amsgrad", False)),
        )
    elif optimizer_name == "RMSprop":
        flags.update(
            centered=bool(group.get("centered", False)), momentum=group.get("momentum", 0) > 0
        )
    elif optimizer_name in _BY_FLAGS:
        flags.update({f: bool(group.get(f, False)) for f in _BY_FLAGS[optimizer_name][1]})
    elif optimizer_name != "Adagrad":
        raise KeyError(f"no spec for optimizer {optimizer_name!r}")
    return tuple(sorted(flags.items()))


@functools.cache
def _spec(optimizer_name: str, structure: tuple) -> Spec:
    """One Spec per structure, so that its oracles are compiled once (``lambdify`` on every
    param group of every step was most of the spec checks' run time)."""
    flags = dict(structure)
    if optimizer_name == "SGD":
        return sgd(**flags)
    if optimizer_name in ("Adam", "AdamW"):
        factory = adamw if flags.pop("decoupled") else adam
        return factory(**flags)
    if optimizer_name == "Adagrad":
        return adagrad(**flags)
    if optimizer_name == "RMSprop":
        return rmsprop(**flags)
    return _BY_FLAGS[optimizer_name][0](**flags)


# The structural flags of the newer classes map one to one onto their factories' keywords.
_BY_FLAGS = {
    "Adamax": (adamax, ()),
    "NAdam": (
        lambda maximize, decoupled_weight_decay: nadam(
            decoupled=decoupled_weight_decay, maximize=maximize
        ),
        ("decoupled_weight_decay",),
    ),
    "RAdam": (
        lambda maximize, decoupled_weight_decay: radam(
            decoupled=decoupled_weight_decay, maximize=maximize
        ),
        ("decoupled_weight_decay",),
    ),
    "Adadelta": (adadelta, ()),
    "ASGD": (asgd, ()),
    "Rprop": (rprop, ()),
    "SparseAdam": (lambda maximize: sparse_adam(), ()),
}
# torch's tuple hyperparameters, split into the specs' scalar names.
_PAIRS = {
    "betas": ("beta1", "beta2"),
    "etas": ("etaminus", "etaplus"),
    "step_sizes": ("step_size_min", "step_size_max"),
}


def all_torch_specs() -> list[Spec]:
    """Every structural combination (maximize shown once per optimizer, on the plain form)."""
    specs = [
        sgd(),
        sgd(momentum=True),
        sgd(momentum=True, nesterov=True),
        sgd(maximize=True),
        adagrad(),
        adagrad(maximize=True),
    ]
    specs += [rmsprop(centered=c, momentum=m) for c in (False, True) for m in (False, True)]
    specs.append(rmsprop(maximize=True))
    for factory in (adam, adamw):
        specs += [factory(), factory(amsgrad=True), factory(maximize=True)]
    specs += [adamax(), adadelta(), asgd(), rprop(), sparse_adam()]
    specs += [factory(decoupled=d) for factory in (nadam, radam) for d in (False, True)]
    return specs

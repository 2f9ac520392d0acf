"""torch.optim's update rules (torch 2.13, ``_single_tensor_*`` semantics) as SymPy specs.

Structural flags (momentum on/off, nesterov, amsgrad, centered, maximize) pick the equations;
numeric hyperparameters stay symbols. Textbook forms are kept where torch computes an
algebraically equal rearrangement; ``specs.proofs`` proves the rearrangements equal.
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy

from .core import GRAD, NONNEGATIVE, PARAM, STEP, UNIT_INTERVAL, Hyper, Spec, StateVar

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


def for_group(optimizer_name: str, group: Mapping) -> tuple[Spec, dict[str, float]]:
    """The spec and float hyperparameters for one torch param_group of ``optimizer_name``."""
    maximize = bool(group.get("maximize", False))
    if optimizer_name == "SGD":
        spec = sgd(
            momentum=group.get("momentum", 0) != 0,
            nesterov=bool(group.get("nesterov", False)),
            maximize=maximize,
        )
    elif optimizer_name in ("Adam", "AdamW"):
        decoupled = optimizer_name == "AdamW" or bool(group.get("decoupled_weight_decay", False))
        factory = adamw if decoupled else adam
        spec = factory(amsgrad=bool(group.get("amsgrad", False)), maximize=maximize)
    elif optimizer_name == "Adagrad":
        spec = adagrad(maximize=maximize)
    elif optimizer_name == "RMSprop":
        spec = rmsprop(
            centered=bool(group.get("centered", False)),
            momentum=group.get("momentum", 0) > 0,
            maximize=maximize,
        )
    else:
        raise KeyError(f"no spec for optimizer {optimizer_name!r}")
    values = dict(group)
    if "betas" in values:
        values["beta1"], values["beta2"] = values["betas"]
    hyper = {h.name: float(values.get(h.name, h.default)) for h in spec.hypers}
    return spec, hyper


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
    return specs

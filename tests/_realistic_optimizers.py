"""Optimizers written as a user or another library writes them (tests/test_realistic_bugs.py).

The correct ones follow the textbook statements, not torch's op sequence: Adam as
``m_hat = m/(1-b1^t)``, ``v_hat = v/(1-b2^t)``, ``p -= lr*m_hat/(sqrt(v_hat)+eps)``; AdamW as in
Loshchilov & Hutter, ``p -= lr*(m_hat/(sqrt(v_hat)+eps) + wd*p)``; SGD's momentum as
``buf = mu*buf + (1-damp)*g``; Adagrad and RMSprop as in their papers. Scalars (bias corrections,
the decayed lr) are Python floats; tensors round in the param's dtype. They keep torch.optim's
hyperparameter names and state keys (a user's library does, to load torch checkpoints), and
nothing else of torch's: their own validation messages, no sparse gradients for
``DenseAdagrad``, no ``foreach`` argument for ``TextbookAdamW`` and ``TextbookSGD``.

Each buggy one is a correct one with one method overridden: the bug is the only difference, and
each is a bug users of optimizer libraries have reported.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(ok: bool, what: str, value) -> None:
    if not ok:
        raise ValueError(f"{what} is out of range: {value!r}")


def _validate(lr=0.0, eps=0.0, weight_decay=0.0, betas=(), rates=()) -> None:
    """The textbook domain: lr, eps, weight decay and ``rates`` >= 0, every beta in [0, 1)."""
    _check(0.0 <= lr, "lr", lr)
    _check(0.0 <= eps, "eps", eps)
    _check(0.0 <= weight_decay, "weight_decay", weight_decay)
    for i, beta in enumerate(betas):
        _check(0.0 <= beta < 1.0, f"betas[{i}]", beta)
    for name, rate in rates:
        _check(0.0 <= rate, name, rate)


class _Textbook(torch.optim.Optimizer):
    """One loop for every subject here: each param with a gradient goes to ``update``."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self.update_group(group, [p for p in group["params"] if p.grad is not None])
        return loss

    def update_group(self, group: dict, params: list[Tensor]) -> None:
        for p in params:
            self.update(p, self.gradient(p, group), self.state[p], group)

    def gradient(self, p: Tensor, group: dict) -> Tensor:
        """The gradient to descend: -grad when maximizing (a new tensor: p.grad stays as given)."""
        return -p.grad if group["maximize"] else p.grad

    def count_step(self, state: dict) -> float:
        """t after this step; ``step`` is a float32 0-d tensor, as torch's checkpoints hold it."""
        if "step" not in state:
            state["step"] = torch.tensor(0.0)
        state["step"] += 1
        return float(state["step"])


# -- Adam ------------------------------------------------------------------------------------------
class TextbookAdam(_Textbook):
    """Kingma & Ba, Algorithm 1, with both moments bias-corrected as tensors; ``foreach=True``
    runs the same statements on lists of tensors."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        *,
        maximize=False,
        foreach=None,
    ):
        _validate(lr=lr, eps=eps, weight_decay=weight_decay, betas=betas)
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
        )
        super().__init__(params, defaults)

    def moments(self, state: dict, p: Tensor, group: dict) -> tuple[Tensor, ...]:
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state["exp_avg"], state["exp_avg_sq"]

    def coupled_decay(self, g: Tensor, p: Tensor, group: dict) -> Tensor:
        """Adam's weight decay is L2: the gradient of wd/2 * |p|^2 joins g."""
        wd = group["weight_decay"]
        return g + wd * p if wd != 0 else g

    def bias_corrections(self, t: float, group: dict, p: Tensor) -> tuple[float, float]:
        beta1, beta2 = group["betas"]
        return 1 - beta1**t, 1 - beta2**t

    def second_moment_update(self, v: Tensor, g: Tensor, beta2: float) -> None:
        v.mul_(beta2).add_((1 - beta2) * g * g)

    def v_for_step(self, state: dict, v: Tensor, bc2, group: dict) -> Tensor:
        """v_hat; with amsgrad, the running maximum of v (kept in state), bias-corrected."""
        if group["amsgrad"]:
            torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        return v / bc2

    def denominator(self, v_hat: Tensor, eps: float) -> Tensor:
        return v_hat.sqrt() + eps

    def apply(self, p: Tensor, direction: Tensor, group: dict) -> None:
        """p -= lr * direction (direction = m_hat / (sqrt(v_hat) + eps))."""
        p.sub_(float(group["lr"]) * direction)

    def update(self, p: Tensor, g: Tensor, state: dict, group: dict) -> None:
        beta1, beta2 = group["betas"]
        t = self.count_step(state)
        m, v = self.moments(state, p, group)
        g = self.coupled_decay(g, p, group)
        m.mul_(beta1).add_((1 - beta1) * g)
        self.second_moment_update(v, g, beta2)
        bc1, bc2 = self.bias_corrections(t, group, p)
        m_hat = m / bc1
        v_hat = self.v_for_step(state, v, bc2, group)
        self.apply(p, m_hat / self.denominator(v_hat, group["eps"]), group)

    def update_group(self, group: dict, params: list[Tensor]) -> None:
        if not group["foreach"] or type(self).update is not TextbookAdam.update:
            return super().update_group(group, params)  # a planted bug lives in the for-loop
        self._foreach_update(group, params)

    def _foreach_update(self, group: dict, params: list[Tensor]) -> None:
        """The same statements, one torch._foreach_* call per statement over the group."""
        if not params:
            return
        beta1, beta2 = group["betas"]
        states = [self.state[p] for p in params]
        ts = [self.count_step(s) for s in states]
        ms, vs = zip(*(self.moments(s, p, group) for s, p in zip(states, params)), strict=True)
        gs = [self.coupled_decay(self.gradient(p, group), p, group) for p in params]
        torch._foreach_mul_(ms, beta1)
        torch._foreach_add_(ms, torch._foreach_mul(gs, 1 - beta1))
        torch._foreach_mul_(vs, beta2)
        torch._foreach_add_(vs, torch._foreach_mul(torch._foreach_mul(gs, gs), 1 - beta2))
        if group["amsgrad"]:
            maxes = [s["max_exp_avg_sq"] for s in states]
            torch._foreach_maximum_(maxes, vs)
            vs = maxes
        m_hats = torch._foreach_div(ms, [1 - beta1**t for t in ts])
        v_hats = torch._foreach_div(vs, [1 - beta2**t for t in ts])
        denoms = torch._foreach_add(torch._foreach_sqrt(v_hats), group["eps"])
        steps = torch._foreach_mul(torch._foreach_div(m_hats, denoms), float(group["lr"]))
        torch._foreach_sub_(params, steps)


class TextbookAdamW(TextbookAdam):
    """Loshchilov & Hutter, Algorithm 2: p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p), the
    decay decoupled from the moments. For-loop only: no ``foreach`` argument."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        *,
        maximize=False,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)

    def coupled_decay(self, g, p, group):
        return g

    def apply(self, p, direction, group):
        wd = group["weight_decay"]
        p.sub_(float(group["lr"]) * (direction + wd * p if wd != 0 else direction))


# -- SGD ---------------------------------------------------------------------------------------
class TextbookSGD(_Textbook):
    """Heavy ball with dampening, buf = mu*buf + (1-damp)*g (the first step's buf = g), and
    Nesterov's look-ahead g + mu*buf. A sparse gradient is used as its dense form. For-loop only."""

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0.0,
        dampening=0.0,
        weight_decay=0.0,
        nesterov=False,
        *,
        maximize=False,
    ):
        _validate(lr=lr, weight_decay=weight_decay, rates=[("momentum", momentum)])
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and no dampening")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def gradient(self, p, group):
        g = super().gradient(p, group)
        g = g.to_dense() if g.is_sparse else g
        wd = group["weight_decay"]
        return g + wd * p if wd != 0 else g

    def first_buffer(self, g: Tensor, group: dict) -> Tensor:
        return g.clone()

    def look_ahead(self, g: Tensor, buf: Tensor, mu: float) -> Tensor:
        return g + mu * buf

    def update(self, p, g, state, group):
        mu = group["momentum"]
        if mu != 0:
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = self.first_buffer(g, group)
            else:
                state["momentum_buffer"].mul_(mu).add_((1 - group["dampening"]) * g)
            buf = state["momentum_buffer"]
            g = self.look_ahead(g, buf, mu) if group["nesterov"] else buf
        p.sub_(float(group["lr"]) * g)


# -- Adagrad -----------------------------------------------------------------------------------
class DenseAdagrad(_Textbook):
    """Duchi et al.'s diagonal AdaGrad with torch's lr decay, lr_t = lr / (1 + (t-1)*lr_decay):
    p -= lr_t * g / (sqrt(G) + eps). Dense gradients only (it raises on sparse ones: audited with
    ``without=["sparse"]``); accepts ``foreach`` and runs the for-loop either way."""

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
        foreach=None,
        *,
        maximize=False,
    ):
        _validate(lr=lr, eps=eps, weight_decay=weight_decay)
        _check(0.0 <= lr_decay, "lr_decay", lr_decay)
        init = initial_accumulator_value
        _check(0.0 <= init, "initial_accumulator_value", init)
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            foreach=foreach,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def gradient(self, p, group):
        if p.grad.is_sparse:
            raise RuntimeError("DenseAdagrad takes dense gradients only")
        return super().gradient(p, group)

    def decay(self, g: Tensor, p: Tensor, group: dict) -> Tensor:
        wd = group["weight_decay"]
        return g + wd * p if wd != 0 else g

    def decayed_lr(self, t: float, group: dict) -> float:
        return float(group["lr"]) / (1 + (t - 1) * group["lr_decay"])

    def update(self, p, g, state, group):
        t = self.count_step(state)
        if "sum" not in state:
            state["sum"] = torch.full_like(p, group["initial_accumulator_value"])
        g = self.decay(g, p, group)
        state["sum"].add_(g * g)
        p.sub_(self.decayed_lr(t, group) * g / (state["sum"].sqrt() + group["eps"]))


# -- RMSprop -----------------------------------------------------------------------------------
class TextbookRMSprop(_Textbook):
    """Hinton's RMSprop, v = alpha*v + (1-alpha)*g^2; centered (Graves 2013) divides by
    sqrt(v - E[g]^2); momentum accumulates g / denom. Accepts ``foreach`` and runs the for-loop
    either way."""

    def __init__(
        self,
        params,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0.0,
        momentum=0.0,
        centered=False,
        foreach=None,
        maximize=False,
    ):
        _validate(lr=lr, eps=eps, weight_decay=weight_decay)
        _check(0.0 <= alpha, "alpha", alpha)
        _check(0.0 <= momentum, "momentum", momentum)
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            foreach=foreach,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def squared(self, g: Tensor) -> Tensor:
        return g * g

    def variance(self, state: dict, v: Tensor, g: Tensor, group: dict) -> Tensor:
        if not group["centered"]:
            return v
        alpha, mean = group["alpha"], state["grad_avg"]
        mean.mul_(alpha).add_((1 - alpha) * g)
        return v - mean * mean

    def update(self, p, g, state, group):
        self.count_step(state)
        alpha, wd, mu = group["alpha"], group["weight_decay"], group["momentum"]
        needed = {"square_avg": True, "grad_avg": group["centered"], "momentum_buffer": mu > 0}
        for key in (k for k, used in needed.items() if used and k not in state):
            state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
        g = g + wd * p if wd != 0 else g
        v = state["square_avg"]
        v.mul_(alpha).add_((1 - alpha) * self.squared(g))
        direction = g / (self.variance(state, v, g, group).sqrt() + group["eps"])
        if mu > 0:
            direction = state["momentum_buffer"].mul_(mu).add_(direction)
        p.sub_(float(group["lr"]) * direction)


# -- the bugs ----------------------------------------------------------------------------------
class DecayAfterStepAdamW(TextbookAdamW):
    """Weight decay applied after the Adam step, p = (p - lr*u) * (1 - lr*wd), instead of to the
    param the step started from (the order fairseq and early Keras ports got wrong)."""

    def apply(self, p, direction, group):
        p.sub_(float(group["lr"]) * direction).mul_(1 - float(group["lr"]) * group["weight_decay"])


class HalfBiasCorrectionAdam(TextbookAdam):
    """The bias corrections 1 - beta^t computed as tensors in the param's dtype: in bfloat16
    0.999 rounds to 1.0, so 1 - beta2^t is 0 (mixed-precision ports that build every scalar
    with ``torch.tensor(x, dtype=p.dtype)``)."""

    def bias_corrections(self, t, group, p):
        beta1, beta2 = (torch.tensor(b, dtype=p.dtype) for b in group["betas"])
        return 1 - beta1**t, 1 - beta2**t


class OffByOneScheduleAdam(TextbookAdam):
    """The bias corrections use t + 1: the step counter is incremented after the update while
    the corrections read it as if incremented before (an lr schedule one step ahead)."""

    def bias_corrections(self, t, group, p):
        return super().bias_corrections(t + 1, group, p)


class EpsInsideSqrtAdam(TextbookAdam):
    """sqrt(v_hat + eps) where Adam has sqrt(v_hat) + eps (RMSprop's TF dialect carried into
    Adam)."""

    def denominator(self, v_hat, eps):
        return (v_hat + eps).sqrt()


class CoupledDecayAdamW(TextbookAdamW):
    """AdamW that adds wd*p to the gradient (L2, Adam's coupled decay) instead of decaying the
    param: the bug the AdamW paper is about, and still what many 'AdamW' flags do."""

    def coupled_decay(self, g, p, group):
        return TextbookAdam.coupled_decay(self, g, p, group)

    def apply(self, p, direction, group):
        TextbookAdam.apply(self, p, direction, group)


class MaxOfVHatAdam(TextbookAdam):
    """amsgrad keeping the running maximum of the bias-corrected v_hat (stored in
    ``max_exp_avg_sq``) instead of v (Reddi et al.'s v_hat is the uncorrected maximum)."""

    def v_for_step(self, state, v, bc2, group):
        if not group["amsgrad"]:
            return v / bc2
        torch.maximum(state["max_exp_avg_sq"], v / bc2, out=state["max_exp_avg_sq"])
        return state["max_exp_avg_sq"]


class NegatedUpdateMaximizeAdam(TextbookAdam):
    """maximize implemented by stepping up along the minimizing update (p += lr*u) instead of
    negating the gradient: the moments then follow +g, and the L2 term's sign is wrong."""

    def gradient(self, p, group):
        return p.grad

    def apply(self, p, direction, group):
        sign = -1.0 if group["maximize"] else 1.0
        p.sub_(sign * float(group["lr"]) * direction)


class StepNotSavedAdam(TextbookAdam):
    """``state_dict()`` drops ``step`` (a checkpoint format written for the moments only); a
    loaded state then restarts its bias corrections at t = 1."""

    def state_dict(self):
        sd = super().state_dict()
        kept = {i: {k: v for k, v in s.items() if k != "step"} for i, s in sd["state"].items()}
        sd["state"] = kept
        return sd


class NesterovSignSGD(TextbookSGD):
    """Nesterov's look-ahead with the momentum term subtracted, g - mu*buf."""

    def look_ahead(self, g, buf, mu):
        return g - mu * buf


class DampenedFirstStepSGD(TextbookSGD):
    """Dampening applied on the first step too, buf = (1 - damp)*g, where the buffer starts as g."""

    def first_buffer(self, g, group):
        return (1 - group["dampening"]) * g


class GradWritingSGD(TextbookSGD):
    """Weight decay added into p.grad in place (``grad.add_(p, alpha=wd)``): the caller's
    gradient changes, and gradient accumulation across steps compounds the decay."""

    def gradient(self, p, group):
        if group["weight_decay"] != 0:
            p.grad.add_(p, alpha=group["weight_decay"])
        g = -p.grad if group["maximize"] else p.grad
        return g.to_dense() if g.is_sparse else g


class UncenteredRMSprop(TextbookRMSprop):
    """centered=True that keeps grad_avg but divides by sqrt(v), never subtracting grad_avg^2."""

    def variance(self, state, v, g, group):
        super().variance(state, v, g, group)
        return v


class AbsSecondMomentRMSprop(TextbookRMSprop):
    """The second moment's EMA fed with |g| instead of g^2 (an 'RMS' that is a mean absolute
    value)."""

    def squared(self, g):
        return g.abs()


class LrDecayOffByOneAdagrad(DenseAdagrad):
    """lr_t = lr / (1 + t*lr_decay): the decay counted from the first step instead of after it."""

    def decayed_lr(self, t, group):
        return super().decayed_lr(t + 1, group)

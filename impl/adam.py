"""Adam and AdamW (amsgrad, L2 or decoupled weight decay, maximize): drop-ins for
``torch.optim.Adam`` and ``torch.optim.AdamW``."""

from __future__ import annotations

import torch
from torch import Tensor

from impl import _fused
from impl._base import (
    VerifiedOptimizer,
    check_adam_family,
    check_fused_combinations,
    new_step,
    to_scalar,
)
from impl._ops import Ops, decay_weights, step_counts

__all__ = ["Adam", "AdamW", "adam_update"]


def _per_param(beta, params: list[Tensor]):
    """A tensor beta is cast to each param's device and dtype before use, as torch does."""
    if isinstance(beta, Tensor):
        return [beta.to(device=p.device, dtype=p.dtype) for p in params]
    return beta


def adam_update(
    ops: Ops,
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    *,
    lr,
    beta1,
    beta2,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> None:
    if maximize:
        grads = ops.neg(grads)
    ops.increment_(steps)
    grads = decay_weights(ops, params, grads, lr, weight_decay, decoupled_weight_decay)
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs = ops.as_real(
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs
    )

    beta1_here = _per_param(beta1, params)
    weight = [1 - b for b in beta1_here] if isinstance(beta1_here, list) else 1 - beta1_here
    ops.lerp_(exp_avgs, grads, weight)
    ops.mul_(exp_avg_sqs, beta2)
    ops.addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)

    # Bias corrections in Python doubles; sqrt(1 - beta2^t) leaves the sqrt so that eps is
    # added to sqrt(v)/sqrt(1 - beta2^t), i.e. after the correction (specs proves the rewrite).
    t = step_counts(steps)
    neg_step_size = [-(lr / (1 - beta1**s)) for s in t]
    bias_correction2_sqrt = [(1 - beta2**s) ** 0.5 for s in t]
    if amsgrad:
        ops.maximum_(max_exp_avg_sqs, exp_avg_sqs)
        second_moments = max_exp_avg_sqs
    else:
        second_moments = exp_avg_sqs
    denom = ops.sqrt(second_moments)
    if isinstance(beta2, Tensor):
        # torch divides out of place: a 0-d param's quotient by the 0-d tensor sqrt(1 - beta2^t)
        # promotes to beta2's dtype (in place, it would round into the param's)
        denom = ops.div(denom, bias_correction2_sqrt)
    else:
        ops.div_(denom, bias_correction2_sqrt)
    ops.add_scalar_(denom, eps)
    ops.addcdiv_(params, exp_avgs, denom, value=neg_step_size)


class Adam(VerifiedOptimizer):
    r"""Adam; drop-in for ``torch.optim.Adam`` (``decoupled_weight_decay=True`` is AdamW).

    .. math::
       \begin{aligned}
            &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2 \text{ (betas)},
                \theta_0, f(\theta), \lambda \text{ (weight decay)}, \epsilon,
                \textit{amsgrad}, \textit{maximize} \\
            &\textbf{initialize}: m_0 \leftarrow 0,\ v_0 \leftarrow 0,\ v_0^{max} \leftarrow 0 \\
            &\textbf{for}\ t = 1, 2, \ldots\ \textbf{do} \\
            &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1})
                \quad (\text{negated if } \textit{maximize}) \\
            &\quad \textbf{if}\ \lambda \ne 0:\ \theta_{t-1} \leftarrow
                \theta_{t-1}(1 - \gamma\lambda) \ \text{(decoupled)}
                \ \textbf{else}\ g_t \leftarrow g_t + \lambda\theta_{t-1} \\
            &\quad m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
            &\quad v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
            &\quad \textbf{if}\ \textit{amsgrad}:\ v_t^{max} \leftarrow \max(v_{t-1}^{max}, v_t),
                \ \hat v_t \leftarrow v_t^{max} / (1 - \beta_2^t)
                \ \textbf{else}\ \hat v_t \leftarrow v_t / (1 - \beta_2^t) \\
            &\quad \theta_t \leftarrow \theta_{t-1} - \gamma\, \frac{m_t / (1 - \beta_1^t)}
                {\sqrt{\hat v_t} + \epsilon} \\
       \end{aligned}

    Computed, as in torch, in the implementable form
    :math:`\theta_t = \theta_{t-1} - \frac{\gamma}{1-\beta_1^t} \cdot
    \frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}` (equal to the box: ``specs`` proves it),
    with :math:`m_t` updated as ``lerp(m, g, 1 - beta1)``.

    Against the seed post: the same rule (it bias-corrects with the incremented ``t`` and adds
    eps outside the square root), but its default is ``lr=0.01`` where torch's is ``lr=1e-3``,
    and its ``beta1*v + (1-beta1)*g`` rounds differently from ``lerp``.

    ``fused=True`` (CPU, the ``fast`` extra) runs impl's own single-pass kernel
    (``impl._kernels.adam``): the same operations with a correctly rounded square root, the half
    types computed in float32 and rounded once, any layout, and ``GradScaler``'s
    ``grad_scale``/``found_inf``. It is verified within the spec's ULP bound, not bitwise
    against the for-loop path (neither is torch's fused step).

    Complex parameters are updated through ``view_as_real``. ``capturable`` and
    ``differentiable`` raise ``NotImplementedError``. Sparse gradients raise as in torch.
    """

    sparse_error = "Adam does not support sparse gradients, please consider SparseAdam instead"
    has_fused_kernels = True
    group_fill_ins = {
        "amsgrad": False,
        "maximize": False,
        "foreach": None,
        "capturable": False,
        "differentiable": False,
        "decoupled_weight_decay": False,
        "fused": None,
    }

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        if isinstance(lr, Tensor):
            if foreach and not capturable:
                raise ValueError(
                    "lr as a Tensor is not supported for capturable=False and foreach=True"
                )
            if lr.numel() != 1:
                raise ValueError("Tensor lr must be 1-element")
        check_adam_family(lr, eps, betas, weight_decay)
        if not (
            (isinstance(betas[0], float) and isinstance(betas[1], float))
            or (isinstance(betas[0], Tensor) and isinstance(betas[1], Tensor))
        ):
            raise ValueError("betas must be either both floats or both Tensors")
        for index, beta in enumerate(betas):
            if isinstance(beta, Tensor):
                if not capturable and foreach:
                    raise ValueError(
                        f"betas[{index}] as a Tensor is not supported for capturable=False "
                        "and foreach=True"
                    )
                if beta.numel() != 1:
                    raise ValueError(f"Tensor betas[{index}] must be 1-element")
        check_fused_combinations(
            type(self).__name__, fused=fused, foreach=foreach, differentiable=differentiable
        )
        defaults = {
            "lr": lr,
            "betas": tuple(map(to_scalar, betas)),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)
        self._enable_fused(fused)

    def _check_grads(self, group, grads):
        super()._check_grads(group, grads)
        # The constructor refuses this pair, but a param group can still bring it in.
        if grads and group["foreach"] and torch.is_tensor(group["lr"]) and not group["capturable"]:
            raise RuntimeError(
                "lr as a Tensor is not supported for capturable=False and foreach=True"
            )

    def _state_keys(self, group):
        keys = ("step", "exp_avg", "exp_avg_sq")
        return (*keys, "max_exp_avg_sq") if group["amsgrad"] else keys

    def _init_state(self, group, p, state):
        # ``step`` lives on the CPU whatever the param's device (torch: cheap .item()), except
        # on the fused path (float32, on the param's device).
        state["step"] = new_step(group, p)
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, ops, group, params, grads, state):
        beta1, beta2 = group["betas"]
        adam_update(
            ops,
            params,
            grads,
            state["exp_avg"],
            state["exp_avg_sq"],
            state.get("max_exp_avg_sq", []),
            state["step"],
            lr=to_scalar(group["lr"]),
            beta1=to_scalar(beta1),
            beta2=to_scalar(beta2),
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            amsgrad=group["amsgrad"],
            maximize=group["maximize"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
        )

    def _fused_update(self, group, params, grads, state):
        beta1, beta2 = group["betas"]
        amsgrad = group["amsgrad"]
        scalars = {
            "amsgrad": amsgrad,
            "lr": _fused._scalar(group["lr"]),
            "beta1": beta1,
            "beta2": beta2,
            "weight_decay": group["weight_decay"],
            "eps": group["eps"],
            "maximize": group["maximize"],
        }
        decoupled = group["decoupled_weight_decay"]
        _fused.check_arguments("_fused_adamw_" if decoupled else "_fused_adam_", 6, **scalars)
        vmax = state["max_exp_avg_sq"] if amsgrad else [None] * len(params)
        _fused.run(
            "adam",
            params,
            list(zip(params, grads, state["exp_avg"], state["exp_avg_sq"], vmax)),
            (True, False, True, True, amsgrad),
            float(scalars["lr"]),
            float(beta1),
            float(beta2),
            float(group["eps"]),
            float(group["weight_decay"]),
            decoupled,
            amsgrad,
            group["maximize"],
            steps=state["step"],
            **self._amp_tensors(),
        )


class AdamW(Adam):
    r"""AdamW: Adam with decoupled weight decay; drop-in for ``torch.optim.AdamW``.

    .. math::
       \begin{aligned}
            &\textbf{for}\ t = 1, 2, \ldots\ \textbf{do} \\
            &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1})
                \quad (\text{negated if } \textit{maximize}) \\
            &\quad \theta_{t-1} \leftarrow \theta_{t-1} - \gamma\lambda\theta_{t-1} \\
            &\quad m_t, v_t, \hat v_t \ \text{as in Adam, with no } \lambda \text{ in } g_t \\
            &\quad \theta_t \leftarrow \theta_{t-1} - \gamma\, \frac{m_t / (1 - \beta_1^t)}
                {\sqrt{\hat v_t} + \epsilon} \\
       \end{aligned}

    The decay multiplies the parameter by :math:`1 - \gamma\lambda` (one rounding) before the Adam
    step; the default ``weight_decay`` is ``1e-2``. The seed post has no AdamW.
    """

    group_fill_ins = {**Adam.group_fill_ins, "decoupled_weight_decay": True}

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
        )

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True

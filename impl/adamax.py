"""Adamax (Adam with the infinity norm; weight decay, maximize): drop-in for
``torch.optim.Adamax``."""

from __future__ import annotations

import torch
from torch import Tensor

from impl._base import VerifiedOptimizer, check_adam_family, check_tensor_lr, new_step, to_scalar
from impl._ops import Ops, step_counts

__all__ = ["Adamax", "adamax_update"]


def adamax_update(
    ops: Ops,
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_infs: list[Tensor],
    steps: list[Tensor],
    *,
    lr,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    if maximize:
        grads = ops.neg(grads)
    ops.increment_(steps)  # first, as torch: a weight decay that overflows raises after it
    if weight_decay != 0:
        grads = ops.add(grads, params, alpha=weight_decay)
    params, grads, exp_avgs, exp_infs = ops.as_real(params, grads, exp_avgs, exp_infs)
    # |g| + eps before the moments move: an eps the foreach op refuses (a 1-element tensor)
    # raises with the count taken back, where torch's foreach path keeps its half step
    norms = ops.abs(grads)
    try:
        ops.add_scalar_(norms, eps)  # eps inside the max: u never drops below eps
    except RuntimeError:
        for step in steps:
            step -= 1
        raise

    ops.lerp_(exp_avgs, grads, 1 - beta1)
    ops.mul_(exp_infs, beta2)
    ops.maximum_(exp_infs, norms)

    lr = ops.lr_for_step_sizes(lr)
    step_sizes = [-(lr / (1 - beta1**t)) for t in step_counts(steps)]
    ops.addcdiv_(params, exp_avgs, exp_infs, value=step_sizes)


class Adamax(VerifiedOptimizer):
    r"""Adamax; drop-in for ``torch.optim.Adamax``.

    .. math::
       \begin{aligned}
            &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2 \text{ (betas)},
                \theta_0, f(\theta), \lambda \text{ (weight decay)}, \epsilon,
                \textit{maximize} \\
            &\textbf{initialize}: m_0 \leftarrow 0,\ u_0 \leftarrow 0 \\
            &\textbf{for}\ t = 1, 2, \ldots\ \textbf{do} \\
            &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1})
                \quad (\text{negated if } \textit{maximize}) \\
            &\quad \textbf{if}\ \lambda \ne 0:\ g_t \leftarrow g_t + \lambda\theta_{t-1} \\
            &\quad m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
            &\quad u_t \leftarrow \max(\beta_2 u_{t-1}, |g_t| + \epsilon) \\
            &\quad \theta_t \leftarrow \theta_{t-1} - \frac{\gamma\, m_t}{(1 - \beta_1^t)\, u_t} \\
       \end{aligned}

    As torch computes it: :math:`m_t` as ``lerp(m, g, 1 - beta1)``, :math:`\beta_2 u` rounded
    before the max, and one ``addcdiv`` with the step size :math:`-\gamma/(1-\beta_1^t)` in a
    Python double. Both of torch's paths run these same kernels; the one difference is a tensor
    ``lr``: the for-loop divides the 0-d tensor (a float32 rounding), the foreach path divides
    ``lr.item()`` (``ops.lr_for_step_sizes``). The for-loop also applies weight decay to a
    complex gradient in complex arithmetic, the foreach path in its ``view_as_real`` pair.

    The seed post has no Adamax. Complex parameters are updated through ``view_as_real``.
    ``capturable`` and ``differentiable`` raise ``NotImplementedError``.
    """

    sparse_error = "Adamax does not support sparse gradients"
    group_fill_ins = {
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "capturable": False,
    }

    def __init__(
        self,
        params,
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        check_tensor_lr(lr)
        check_adam_family(lr, eps, betas, weight_decay)
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    def _state_keys(self, group):
        return ("step", "exp_avg", "exp_inf")

    def _init_state(self, group, p, state):
        state["step"] = new_step()
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_inf"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, ops, group, params, grads, state):
        beta1, beta2 = group["betas"]
        adamax_update(
            ops,
            params,
            grads,
            state["exp_avg"],
            state["exp_inf"],
            state["step"],
            lr=to_scalar(group["lr"]),
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )

"""Adadelta (weight decay, maximize): drop-in for ``torch.optim.Adadelta``."""

from __future__ import annotations

import torch
from torch import Tensor

from impl._base import VerifiedOptimizer, check_tensor_lr, new_step, to_scalar
from impl._ops import Ops

__all__ = ["Adadelta", "adadelta_update"]


def adadelta_update(
    ops: Ops,
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    acc_deltas: list[Tensor],
    steps: list[Tensor],
    *,
    lr,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    ops.increment_(steps)  # counted, but the update does not depend on it
    if maximize:
        grads = ops.neg(grads)
    if weight_decay != 0:
        grads = ops.add(grads, params, alpha=weight_decay)
    # The param itself stays complex on torch's for-loop path: see as_complex_like below.
    grads, square_avgs, acc_deltas = ops.as_real(grads, square_avgs, acc_deltas)

    ops.mul_(square_avgs, rho)
    ops.addcmul_(square_avgs, grads, grads, value=1 - rho)
    # eps inside both square roots: the first delta is sqrt(eps) / sqrt(v + eps) * g, not 0
    stds = ops.add_scalar(square_avgs, eps)
    ops.sqrt_(stds)
    deltas = ops.add_scalar(acc_deltas, eps)
    ops.sqrt_(deltas)
    ops.div_tensors_(deltas, stds)
    ops.mul_tensors_(deltas, grads)
    ops.mul_(acc_deltas, rho)
    ops.addcmul_(acc_deltas, deltas, deltas, value=1 - rho)
    ops.add_(params, ops.as_complex_like(deltas, params), alpha=-lr)


class Adadelta(VerifiedOptimizer):
    r"""Adadelta; drop-in for ``torch.optim.Adadelta``.

    .. math::
       \begin{aligned}
            &\textbf{input}: \gamma \text{ (lr)}, \rho \text{ (decay)}, \theta_0, f(\theta),
                \lambda \text{ (weight decay)}, \epsilon, \textit{maximize} \\
            &\textbf{initialize}: v_0 \leftarrow 0 \text{ (square avg)},\
                u_0 \leftarrow 0 \text{ (accumulate variables)} \\
            &\textbf{for}\ t = 1, 2, \ldots\ \textbf{do} \\
            &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1})
                \quad (\text{negated if } \textit{maximize}) \\
            &\quad \textbf{if}\ \lambda \ne 0:\ g_t \leftarrow g_t + \lambda\theta_{t-1} \\
            &\quad v_t \leftarrow \rho v_{t-1} + (1 - \rho) g_t^2 \\
            &\quad \Delta x_t \leftarrow \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}
                \, g_t \\
            &\quad u_t \leftarrow \rho u_{t-1} + (1 - \rho) \Delta x_t^2 \\
            &\quad \theta_t \leftarrow \theta_{t-1} - \gamma \Delta x_t \\
       \end{aligned}

    As torch computes it: :math:`\Delta x_t` as ``sqrt(u + eps) / sqrt(v + eps) * g`` (divide,
    then multiply), and one fused ``add_(alpha=-lr)``. Both of torch's paths run these kernels
    on real numbers; with a complex parameter, the for-loop path adds :math:`\Delta x_t` (and
    applies weight decay) in complex arithmetic, two roundings where the foreach path's real
    view fuses one (``ops.as_complex_like``).

    The seed post has no Adadelta. ``step`` is kept in the state although no formula reads it.
    Complex parameters are updated through ``view_as_real``. ``capturable`` and
    ``differentiable`` raise ``NotImplementedError``.
    """

    sparse_error = "Adadelta does not support sparse gradients"
    group_fill_ins = {
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "capturable": False,
    }

    def __init__(
        self,
        params,
        lr: float | Tensor = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_tensor_lr(lr)
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = {
            "lr": lr,
            "rho": rho,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "capturable": capturable,
            "foreach": foreach,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def _state_keys(self, group):
        return ("step", "square_avg", "acc_delta")

    def _init_state(self, group, p, state):
        state["step"] = new_step()
        state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["acc_delta"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, ops, group, params, grads, state):
        adadelta_update(
            ops,
            params,
            grads,
            state["square_avg"],
            state["acc_delta"],
            state["step"],
            lr=to_scalar(group["lr"]),
            rho=group["rho"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )

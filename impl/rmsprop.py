"""RMSprop (centered, momentum, weight decay, maximize): drop-in for ``torch.optim.RMSprop``."""

from __future__ import annotations

import torch
from torch import Tensor

from impl._base import VerifiedOptimizer, check_tensor_lr, new_step, to_scalar
from impl._ops import Ops

__all__ = ["RMSprop", "rmsprop_update"]


def rmsprop_update(
    ops: Ops,
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor],
    momentum_buffers: list[Tensor],
    steps: list[Tensor],
    *,
    lr,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> None:
    if maximize:
        grads = ops.neg(grads)
    ops.increment_(steps)
    if weight_decay != 0:
        grads = ops.add(grads, params, alpha=weight_decay)
    params, grads, square_avgs, grad_avgs, momentum_buffers = ops.as_real(
        params, grads, square_avgs, grad_avgs, momentum_buffers
    )
    ops.mul_(square_avgs, alpha)
    ops.addcmul_(square_avgs, grads, grads, value=1 - alpha)
    if centered:
        ops.lerp_(grad_avgs, grads, 1 - alpha)
        avg = ops.addcmul(square_avgs, grad_avgs, grad_avgs, value=-1)
        ops.sqrt_(avg)
    else:
        avg = ops.sqrt(square_avgs)
    ops.add_scalar_(avg, eps)  # eps outside the square root, unlike the seed post
    if momentum > 0:
        ops.mul_(momentum_buffers, momentum)
        ops.addcdiv_(momentum_buffers, grads, avg)
        ops.add_(params, momentum_buffers, alpha=-lr)
    else:
        ops.addcdiv_(params, grads, avg, value=-lr)


class RMSprop(VerifiedOptimizer):
    r"""RMSprop; drop-in for ``torch.optim.RMSprop``.

    .. math::
       \begin{aligned}
            &\textbf{input}: \gamma \text{ (lr)}, \alpha \text{ (smoothing)}, \theta_0, f(\theta),
                \lambda \text{ (weight decay)}, \mu \text{ (momentum)}, \epsilon,
                \textit{centered}, \textit{maximize} \\
            &\textbf{initialize}: v_0 \leftarrow 0,\ b_0 \leftarrow 0,\ g^{ave}_0 \leftarrow 0 \\
            &\textbf{for}\ t = 1, 2, \ldots\ \textbf{do} \\
            &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1})
                \quad (\text{negated if } \textit{maximize}) \\
            &\quad \textbf{if}\ \lambda \ne 0:\ g_t \leftarrow g_t + \lambda\theta_{t-1} \\
            &\quad v_t \leftarrow \alpha v_{t-1} + (1 - \alpha) g_t^2 \\
            &\quad \tilde v_t \leftarrow v_t \\
            &\quad \textbf{if}\ \textit{centered}:\ g^{ave}_t \leftarrow \alpha g^{ave}_{t-1}
                + (1 - \alpha) g_t,\ \tilde v_t \leftarrow v_t - (g^{ave}_t)^2 \\
            &\quad \textbf{if}\ \mu > 0:\ b_t \leftarrow \mu b_{t-1}
                + g_t / (\sqrt{\tilde v_t} + \epsilon),
                \ \theta_t \leftarrow \theta_{t-1} - \gamma b_t \\
            &\quad \textbf{else}:\ \theta_t \leftarrow \theta_{t-1}
                - \gamma\, g_t / (\sqrt{\tilde v_t} + \epsilon) \\
       \end{aligned}

    Against the seed post: it divides by :math:`\sqrt{h + \epsilon}` (eps inside the root) and uses
    ``alpha=0.9``; torch divides by :math:`\sqrt{v} + \epsilon` and defaults to ``alpha=0.99``.
    ``specs`` keeps the seed's form as a named variant and the figures show the difference.

    ``alpha`` is validated as :math:`\alpha \ge 0` only, as in torch (``alpha > 1`` is accepted).
    Complex parameters are updated through ``view_as_real``. ``capturable`` and
    ``differentiable`` raise ``NotImplementedError``.
    """

    sparse_error = "RMSprop does not support sparse gradients"
    group_fill_ins = {
        "momentum": 0,
        "centered": False,
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "capturable": False,
    }

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_tensor_lr(lr)
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "capturable": capturable,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def _state_keys(self, group):
        keys = ("step", "square_avg")
        if group["momentum"] > 0:
            keys += ("momentum_buffer",)
        if group["centered"]:
            keys += ("grad_avg",)
        return keys

    def _init_state(self, group, p, state):
        state["step"] = new_step()
        state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["momentum"] > 0:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["centered"]:
            state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, ops, group, params, grads, state):
        rmsprop_update(
            ops,
            params,
            grads,
            state["square_avg"],
            state.get("grad_avg", []),
            state.get("momentum_buffer", []),
            state["step"],
            lr=to_scalar(group["lr"]),
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            centered=group["centered"],
            maximize=group["maximize"],
        )

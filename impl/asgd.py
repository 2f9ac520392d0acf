"""ASGD, averaged stochastic gradient descent (weight decay, maximize): drop-in for
``torch.optim.ASGD``."""

from __future__ import annotations

import torch
from torch import Tensor

from impl._base import VerifiedOptimizer, check_tensor_lr, scalar_dtype, to_scalar
from impl._ops import Ops, step_counts

__all__ = ["ASGD", "asgd_update"]


def asgd_update(
    ops: Ops,
    params: list[Tensor],
    grads: list[Tensor],
    axs: list[Tensor],
    mus: list[Tensor],
    etas: list[Tensor],
    steps: list[Tensor],
    *,
    lr,
    lambd: float,
    alpha: float,
    t0: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    if maximize:
        grads = ops.neg(grads)
    params, grads, axs = ops.as_real(params, grads, axs)
    ops.increment_(steps)
    if weight_decay != 0:
        grads = ops.add(grads, params, alpha=weight_decay)
    ops.decay_and_descend_(params, grads, etas, lambd)
    ops.average_(axs, params, mus)

    # eta and mu for the next step, so a scheduler's new lr reaches the params one step late.
    new_etas = [lr / ((1 + lambd * lr * t) ** alpha) for t in ops.step_scalars(steps)]
    new_mus = [1 / max(1, t - t0) for t in step_counts(steps)]
    ops.copy_(etas, [torch.as_tensor(eta, device=p.device) for eta, p in zip(new_etas, params)])
    ops.copy_(mus, [torch.as_tensor(mu, device=p.device) for mu, p in zip(new_mus, params)])


class ASGD(VerifiedOptimizer):
    r"""Averaged stochastic gradient descent; drop-in for ``torch.optim.ASGD``.

    .. math::
       \begin{aligned}
            &\textbf{input}: \gamma \text{ (lr)}, \lambda \text{ (lambd)},
                \alpha \text{ (power)}, t_0 \text{ (averaging start)}, \theta_0, f(\theta),
                \omega \text{ (weight decay)}, \textit{maximize} \\
            &\textbf{initialize}: \eta_0 \leftarrow \gamma,\ \mu_0 \leftarrow 1,
                \ \bar\theta_0 \leftarrow 0 \\
            &\textbf{for}\ t = 1, 2, \ldots\ \textbf{do} \\
            &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1})
                \quad (\text{negated if } \textit{maximize}) \\
            &\quad \textbf{if}\ \omega \ne 0:\ g_t \leftarrow g_t + \omega\theta_{t-1} \\
            &\quad \theta_t \leftarrow \theta_{t-1}(1 - \lambda\eta_{t-1}) - \eta_{t-1} g_t \\
            &\quad \bar\theta_t \leftarrow \bar\theta_{t-1} + \mu_{t-1}(\theta_t - \bar\theta_{t-1})
                \quad (\bar\theta_t = \theta_t \text{ while } \mu_{t-1} = 1) \\
            &\quad \eta_t \leftarrow \gamma / (1 + \lambda\gamma t)^\alpha \\
            &\quad \mu_t \leftarrow 1 / \max(1, t - t_0) \\
       \end{aligned}

    :math:`\bar\theta` is the state's ``ax``, never read back by the update; :math:`\eta` and
    :math:`\mu` are 0-d tensors of ``step``'s dtype (float32 unless the default dtype is
    float64), each parameter with its own step count.

    torch's two paths compute this differently, and impl follows each (the ``ops`` differ):

    * for-loop: :math:`\theta (1 - \lambda\eta)` with ``eta.item()`` then one fused
      ``add_(g, alpha=-eta)``; ``ax`` is copied from :math:`\theta` while :math:`\mu = 1`, else
      ``ax += round((theta - ax) * mu)``; the next :math:`\eta` in Python doubles, rounded once
      into the float32 tensor.
    * foreach: :math:`\theta - (g + \lambda\theta)\,\eta` (an ``addcmul`` with the 0-d tensor);
      ``ax = fma(theta - ax, mu, ax)`` always, even at :math:`\mu = 1`; the next :math:`\eta`
      evaluated in float32 tensor ops of ``step`` (``lr / x`` being ``reciprocal(x) * lr``).

    The seed post has no ASGD. Complex parameters are updated through ``view_as_real``.
    ``capturable`` and ``differentiable`` raise ``NotImplementedError``; sparse gradients raise
    as in torch.
    """

    sparse_error = "ASGD does not support sparse gradients"
    group_fill_ins = {
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "capturable": False,
    }

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        check_tensor_lr(lr)
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = {
            "lr": lr,
            "lambd": lambd,
            "alpha": alpha,
            "t0": t0,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state: dict) -> None:
        # Old checkpoints hold numbers; torch makes tensors of them on the param's device.
        for p, p_state in state.get("state", {}).items():
            for key in ("step", "eta", "mu"):
                if key in p_state and not torch.is_tensor(p_state[key]):
                    value = float(p_state[key]) if key == "step" else p_state[key]
                    p_state[key] = torch.tensor(value, dtype=scalar_dtype(), device=p.device)
        super().__setstate__(state)

    def _state_keys(self, group):
        return ("step", "eta", "mu", "ax")

    def _init_state(self, group, p, state):
        state["step"] = torch.zeros((), device=p.device, dtype=scalar_dtype())
        lr = to_scalar(group["lr"])
        state["eta"] = torch.as_tensor(lr, device=p.device, dtype=scalar_dtype()).clone().detach()
        state["mu"] = torch.ones((), device=p.device, dtype=scalar_dtype())
        state["ax"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, ops, group, params, grads, state):
        asgd_update(
            ops,
            params,
            grads,
            state["ax"],
            state["mu"],
            state["eta"],
            state["step"],
            lr=to_scalar(group["lr"]),
            lambd=group["lambd"],
            alpha=group["alpha"],
            t0=group["t0"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )

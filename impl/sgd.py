"""SGD with momentum, dampening, Nesterov, weight decay and maximize: the seed's GD,
MomentumGD and NesterovGD as one drop-in for ``torch.optim.SGD``."""

from __future__ import annotations

import torch
from torch import Tensor

from impl import _fused
from impl._base import VerifiedOptimizer, check_fused_combinations, check_tensor_lr, to_scalar
from impl._ops import FOR_LOOP, Ops

__all__ = ["SGD", "sgd_update"]


def sgd_update(
    ops: Ops,
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr,
    momentum: float,
    dampening: float,
    weight_decay,
    nesterov: bool,
    maximize: bool,
) -> None:
    """One SGD step; a ``None`` entry of ``momentum_buffers`` is filled with a new buffer."""
    # torch's foreach path runs its foreach kernels on sparse gradients too, all but the last
    # add into the params, which it takes per tensor
    param_ops = FOR_LOOP if any(g.is_sparse for g in grads) else ops
    if maximize:
        grads = ops.neg(grads)
    if weight_decay != 0:
        grads = ops.add(grads, params, alpha=weight_decay)
    if momentum != 0:
        fresh = [i for i, buf in enumerate(momentum_buffers) if buf is None]
        carried = [i for i, buf in enumerate(momentum_buffers) if buf is not None]
        # The first buffer is the gradient itself: dampening does not apply on step 1.
        for i, buf in zip(fresh, ops.clone([grads[i] for i in fresh])):
            momentum_buffers[i] = buf
        if carried:
            # torch's foreach path updates buffers per tensor while any is new; the foreach
            # kernels round scalars differently in float16/bfloat16, so mirror that choice.
            carried_ops = FOR_LOOP if fresh else ops
            bufs = [momentum_buffers[i] for i in carried]
            carried_ops.mul_(bufs, momentum)
            carried_ops.add_(bufs, [grads[i] for i in carried], alpha=1 - dampening)
        if nesterov:
            # Out of place: torch's foreach path writes g + mu*b into p.grad; we never touch it.
            grads = ops.add(grads, momentum_buffers, alpha=momentum)
        else:
            grads = momentum_buffers
    param_ops.add_(params, grads, alpha=-lr)


class SGD(VerifiedOptimizer):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum; drop-in for
    ``torch.optim.SGD``.

    .. math::
       \begin{aligned}
            &\textbf{input}: \gamma \text{ (lr)}, \theta_0 \text{ (params)}, f(\theta),
                \lambda \text{ (weight decay)}, \mu \text{ (momentum)}, \tau \text{ (dampening)},
                \textit{nesterov}, \textit{maximize} \\
            &\textbf{for}\ t = 1, 2, \ldots\ \textbf{do} \\
            &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1})
                \quad (\text{negated if } \textit{maximize}) \\
            &\quad \textbf{if}\ \lambda \ne 0:\ g_t \leftarrow g_t + \lambda \theta_{t-1} \\
            &\quad \textbf{if}\ \mu \ne 0: \\
            &\qquad b_t \leftarrow g_t \ \textbf{if}\ t = 1 \ \textbf{else}\
                \mu b_{t-1} + (1 - \tau) g_t \\
            &\qquad g_t \leftarrow g_t + \mu b_t \ \textbf{if}\ \textit{nesterov}\
                \textbf{else}\ b_t \\
            &\quad \theta_t \leftarrow \theta_{t-1} - \gamma g_t \\
       \end{aligned}

    Against the seed post: its ``GD`` is ``SGD(lr)``; ``MomentumGD``
    (:math:`v \leftarrow \mu v + g`) is ``SGD(lr, momentum=mu)``, equal because dampening defaults
    to 0 and the seed's zero-initialised buffer gives :math:`v_1 = g_1` too; ``NesterovGD`` is
    ``SGD(lr, momentum=mu, nesterov=True)``, whose iterate is the look-ahead point
    :math:`\theta' = \theta - \gamma\mu v` of the Sutskever form (proved in ``specs``). The seed
    writes :math:`x - lr \cdot g` with two roundings; here, as in torch, :math:`\theta - \gamma g`
    is one fused multiply-add.

    Complex parameters use complex arithmetic (no ``view_as_real``), as in torch. Sparse gradients
    are supported; on the foreach path they go through the foreach kernels, as in torch, all but
    the final per-tensor add into the params. ``fused=True`` (CPU, the ``fast`` extra) runs
    impl's own single-pass kernel (``impl._kernels.sgd``; see ``Adam``). ``differentiable=True``
    raises ``NotImplementedError``.
    """

    complex_as_real = False
    foreach_takes_sparse = True
    has_fused_kernels = True
    group_fill_ins = {
        "nesterov": False,
        "maximize": False,
        "foreach": None,
        "differentiable": False,
        "fused": False,
    }

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        check_tensor_lr(lr)
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        check_fused_combinations("SGD", fused=fused, foreach=foreach, differentiable=differentiable)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults)
        self._enable_fused(fused)

    def _check_grads(self, group, grads):
        if group["fused"] and any(g.is_sparse for g in grads):
            raise RuntimeError("`_fused_sgd` does not support sparse gradients")

    def _state_keys(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def _update(self, ops, group, params, grads, state):
        sgd_update(
            ops,
            params,
            grads,
            state.get("momentum_buffer", [None] * len(params)),
            lr=to_scalar(group["lr"]),
            momentum=group["momentum"],
            dampening=group["dampening"],
            weight_decay=group["weight_decay"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
        )

    def _fused_update(self, group, params, grads, state):
        momentum = group["momentum"]
        scalars = {
            "weight_decay": group["weight_decay"],
            "momentum": momentum,
            "lr": _fused._scalar(group["lr"]),
            "dampening": group["dampening"],
            "nesterov": group["nesterov"],
            "maximize": group["maximize"],
        }
        _fused.check_arguments("_fused_sgd_", 3, **scalars, is_first_step=False)
        amp = self._amp_tensors()
        if amp["found_inf"] is not None and amp["found_inf"].item() == 1.0:
            return  # a skipped step creates no momentum buffer either
        buffers = state.get("momentum_buffer", [None] * len(params))
        first_step = [buf is None for buf in buffers]
        if momentum != 0:
            for i, new in enumerate(first_step):
                if new:  # filled by the kernel: the first buffer is the gradient itself
                    buffers[i] = torch.empty_like(grads[i])
        _fused.run(
            "sgd",
            params,
            list(zip(params, grads, buffers)),
            (True, False, True),
            *(float(scalars[k]) for k in ("lr", "momentum", "dampening", "weight_decay")),
            group["nesterov"],
            group["maximize"],
            per_tensor=first_step,
            **amp,
        )

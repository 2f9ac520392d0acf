"""Rprop, resilient backpropagation (maximize): drop-in for ``torch.optim.Rprop``."""

from __future__ import annotations

import torch
from torch import Tensor

from impl._base import VerifiedOptimizer, check_tensor_lr, new_step, to_scalar
from impl._ops import Ops

__all__ = ["Rprop", "rprop_update"]


def rprop_update(
    ops: Ops,
    params: list[Tensor],
    grads: list[Tensor],
    prevs: list[Tensor],
    step_sizes: list[Tensor],
    steps: list[Tensor],
    *,
    etaminus: float,
    etaplus: float,
    step_size_min: float,
    step_size_max: float,
    maximize: bool,
) -> None:
    if maximize:
        grads = ops.neg(grads)
    ops.increment_(steps)
    params, grads, prevs, step_sizes = ops.as_real(params, grads, prevs, step_sizes)

    # The sign of the rounded product: one that underflows to 0 keeps the step size (factor 1).
    factors = ops.mul(grads, prevs)
    ops.sign_(factors)
    # One replacement after the other, as torch: an etaminus that rounds to 0 in float16 or
    # bfloat16 is then caught by the last one and becomes 1.
    ops.masked_fill_(factors, [f.gt(0) for f in factors], etaplus)
    ops.masked_fill_(factors, [f.lt(0) for f in factors], etaminus)
    ops.masked_fill_(factors, [f.eq(0) for f in factors], 1)
    ops.mul_tensors_(step_sizes, factors)
    ops.clamp_(step_sizes, step_size_min, step_size_max)

    # The gradient, zeroed where its sign flipped, is the next step's ``prev``: build it there.
    ops.copy_(prevs, grads)
    ops.masked_fill_(prevs, [f.eq(etaminus) for f in factors], 0)
    ops.addcmul_(params, ops.sign(prevs), step_sizes, value=-1)


class Rprop(VerifiedOptimizer):
    r"""Resilient backpropagation; drop-in for ``torch.optim.Rprop``.

    .. math::
       \begin{aligned}
            &\textbf{input}: \theta_0, f(\theta), \gamma \text{ (lr)},
                \eta_{-}, \eta_{+} \text{ (etas)},
                \Gamma_{min}, \Gamma_{max} \text{ (step sizes)}, \textit{maximize} \\
            &\textbf{initialize}: g_{prev} \leftarrow 0,\ \Delta_0 \leftarrow \gamma \\
            &\textbf{for}\ t = 1, 2, \ldots\ \textbf{do} \\
            &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1})
                \quad (\text{negated if } \textit{maximize}) \\
            &\quad s \leftarrow \mathrm{sign}(\mathrm{fl}(g_t\, g_{prev})) \\
            &\quad \Delta_t \leftarrow \mathrm{clamp}(\Delta_{t-1} \cdot
                \{\eta_{+} \text{ if } s > 0;\ \eta_{-} \text{ if } s < 0;\ 1 \text{ else}\},
                \ \Gamma_{min}, \Gamma_{max}) \\
            &\quad \textbf{if}\ s < 0:\ g_t \leftarrow 0 \\
            &\quad \theta_t \leftarrow \theta_{t-1} - \Delta_t\, \mathrm{sign}(g_t) \\
            &\quad g_{prev} \leftarrow g_t \\
       \end{aligned}

    Elementwise. As torch computes it: the sign is of the *rounded* product (one that underflows
    to 0 counts as no sign change); every step size is clamped on every step, also where the
    factor is 1 (torch's own box clamps only the changed ones); the state starts at an unclamped
    :math:`\gamma`, and the first factor is 1 (:math:`g_{prev} = 0`); a zeroed :math:`g_t` is
    found again as "factor equals :math:`\eta_{-}`" in the parameter's dtype.
    On CPU ``sign(NaN)`` is 0, so a NaN gradient keeps the step size and moves nothing.

    torch's for-loop and foreach paths do the same operations in the same order (the foreach one
    builds :math:`g_t` in ``prev``'s memory; impl does that on both), so they are bitwise equal.

    The seed post has no Rprop. Complex parameters are updated through ``view_as_real``, their
    real and imaginary parts with step sizes of their own. ``capturable`` and ``differentiable``
    raise ``NotImplementedError``; sparse gradients raise as in torch.
    """

    sparse_error = "Rprop does not support sparse gradients"
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
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_tensor_lr(lr)
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        defaults = {
            "lr": lr,
            "etas": etas,
            "step_sizes": step_sizes,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    def _check_grads(self, group, grads):
        super()._check_grads(group, grads)
        # torch unpacks both pairs before it creates any state: a bad one refuses the step
        # with nothing changed (TypeError: cannot unpack non-iterable float object)
        _etaminus, _etaplus = group["etas"]
        _step_size_min, _step_size_max = group["step_sizes"]

    def _state_keys(self, group):
        return ("step", "prev", "step_size")

    def _init_state(self, group, p, state):
        state["step"] = new_step()
        state["prev"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        # Shaped like the gradient, as torch; complex: both parts start at lr.
        lr = group["lr"]
        fill = complex(lr, lr) if p.dtype.is_complex else to_scalar(lr)
        state["step_size"] = torch.full_like(p.grad, fill)

    def _update(self, ops, group, params, grads, state):
        etaminus, etaplus = group["etas"]
        step_size_min, step_size_max = group["step_sizes"]
        rprop_update(
            ops,
            params,
            grads,
            state["prev"],
            state["step_size"],
            state["step"],
            etaminus=etaminus,
            etaplus=etaplus,
            step_size_min=step_size_min,
            step_size_max=step_size_max,
            maximize=group["maximize"],
        )

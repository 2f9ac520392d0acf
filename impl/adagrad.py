"""Adagrad (lr_decay, initial accumulator, weight decay, maximize, sparse gradients): drop-in for
``torch.optim.Adagrad``."""

from __future__ import annotations

import torch
from torch import Tensor

from impl import _fused
from impl._base import (
    VerifiedOptimizer,
    check_fused_combinations,
    check_tensor_lr,
    new_step,
    to_scalar,
)
from impl._ops import FOR_LOOP, Ops, add_sparse_, step_counts

__all__ = ["Adagrad", "adagrad_update"]


def adagrad_update(
    ops: Ops,
    params: list[Tensor],
    grads: list[Tensor],
    state_sums: list[Tensor],
    steps: list[Tensor],
    *,
    lr,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> None:
    ops.increment_(steps)
    if maximize:
        grads = ops.neg(grads)
    if weight_decay != 0:
        grads = ops.add(grads, params, alpha=weight_decay)
    minus_clr = [-lr / (1 + (t - 1) * lr_decay) for t in step_counts(steps)]

    sparse = [i for i, g in enumerate(grads) if g.is_sparse]
    for i in sparse:
        _sparse_adagrad(params[i], grads[i], state_sums[i], minus_clr[i], eps)
    if sparse:  # only the for-loop path sees sparse gradients (see VerifiedOptimizer)
        assert ops is FOR_LOOP
        dense = [i for i in range(len(params)) if i not in sparse]
        params, grads, state_sums, minus_clr = (
            [xs[i] for i in dense] for xs in (params, grads, state_sums, minus_clr)
        )

    params, grads, state_sums = ops.as_real(params, grads, state_sums)
    ops.addcmul_(state_sums, grads, grads, value=1)
    std = ops.sqrt(state_sums)
    ops.add_scalar_(std, eps)
    ops.addcdiv_scaled_(params, grads, std, minus_clr, ys_are_scratch=maximize or weight_decay != 0)


def _sparse_adagrad(param: Tensor, grad: Tensor, state_sum: Tensor, minus_clr, eps: float):
    """The same rule on the gradient's nonzero pattern only; coalesced since it is non-linear."""
    grad = grad.coalesce()
    indices, values = grad._indices(), grad._values()

    def like_grad(new_values):  # indices of a coalesced tensor: valid by construction
        return torch.sparse_coo_tensor(indices, new_values, grad.size(), check_invariants=False)

    add_sparse_(state_sum, like_grad(values.pow(2)))
    std_values = state_sum.sparse_mask(grad)._values().sqrt_().add_(eps)
    add_sparse_(param, like_grad(values / std_values), alpha=minus_clr)


class Adagrad(VerifiedOptimizer):
    r"""Adagrad; drop-in for ``torch.optim.Adagrad``.

    .. math::
       \begin{aligned}
            &\textbf{input}: \gamma \text{ (lr)}, \theta_0, f(\theta),
                \lambda \text{ (weight decay)}, \tau \text{ (initial accumulator value)},
                \eta \text{ (lr decay)}, \epsilon,
                \textit{maximize} \\
            &\textbf{initialize}: \textit{sum}_0 \leftarrow \tau \\
            &\textbf{for}\ t = 1, 2, \ldots\ \textbf{do} \\
            &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1})
                \quad (\text{negated if } \textit{maximize}) \\
            &\quad \tilde\gamma \leftarrow \gamma / (1 + (t - 1)\eta) \\
            &\quad \textbf{if}\ \lambda \ne 0:\ g_t \leftarrow g_t + \lambda\theta_{t-1} \\
            &\quad \textit{sum}_t \leftarrow \textit{sum}_{t-1} + g_t^2 \\
            &\quad \theta_t \leftarrow \theta_{t-1} - \tilde\gamma\,
                \frac{g_t}{\sqrt{\textit{sum}_t} + \epsilon} \\
       \end{aligned}

    Against the seed post: its text puts eps outside the square root, as here, but its code
    listing computes ``g / (h + eps) ** 0.5`` (eps inside); its eps is ``1e-8`` (torch: ``1e-10``)
    and it has no lr decay, weight decay or initial accumulator. ``specs`` keeps both seed
    dialects as named variants.

    State is created eagerly in ``__init__`` (unlike every other torch optimizer). Complex
    parameters are updated through ``view_as_real``. Sparse gradients are supported, but not
    together with weight decay. ``fused=True`` (CPU, the ``fast`` extra) runs impl's own
    single-pass kernel (``impl._kernels.adagrad``; see ``Adam``). ``differentiable`` raises
    ``NotImplementedError``.
    """

    group_fill_ins = {"foreach": None, "maximize": False, "differentiable": False, "fused": None}
    has_fused_kernels = True

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        check_tensor_lr(lr)
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(
                f"Invalid initial_accumulator_value value: {initial_accumulator_value}"
            )
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        check_fused_combinations(
            "Adagrad", fused=fused, foreach=foreach, differentiable=differentiable
        )
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults)
        self._enable_fused(fused)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(group, p, self.state[p])

    def share_memory(self) -> None:
        """Calls ``tensor.share_memory_()`` on the state sum tensors."""
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["sum"].share_memory_()

    def _check_grads(self, group, grads):
        if group["fused"] and any(g.is_sparse for g in grads):
            raise RuntimeError("`fused` does not support sparse grad or complex param")
        if group["weight_decay"] != 0 and any(g.is_sparse for g in grads):
            raise RuntimeError("weight_decay option is not compatible with sparse gradients")

    def _state_keys(self, group):
        return ("step", "sum")

    def _init_state(self, group, p, state):
        # torch reads the constructor's value, never a param group's override.
        initial = self.defaults["initial_accumulator_value"]
        state["step"] = new_step(group, p)
        state["sum"] = torch.full_like(
            p,
            complex(initial, initial) if torch.is_complex(p) else initial,
            memory_format=torch.preserve_format,
        )

    def _update(self, ops, group, params, grads, state):
        adagrad_update(
            ops,
            params,
            grads,
            state["sum"],
            state["step"],
            lr=to_scalar(group["lr"]),
            lr_decay=group["lr_decay"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
        )

    def _fused_update(self, group, params, grads, state):
        scalars = {
            "lr": _fused._scalar(group["lr"]),
            "lr_decay": group["lr_decay"],
            "weight_decay": group["weight_decay"],
            "eps": group["eps"],
            "maximize": group["maximize"],
        }
        _fused.check_arguments("_fused_adagrad_", 4, **scalars)
        _fused.run(
            "adagrad",
            params,
            list(zip(params, grads, state["sum"])),
            (True, False, True),
            *(float(scalars[k]) for k in ("lr", "lr_decay", "eps", "weight_decay")),
            group["maximize"],
            steps=state["step"],
            **self._amp_tensors(),
        )

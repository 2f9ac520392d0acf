"""Adafactor (factored second moment, relative step size, update clipping, decoupled weight
decay, maximize): drop-in for ``torch.optim.Adafactor``.

torch's two paths round differently and pick ``eps1`` differently, so each is written here as
torch writes it (``_for_loop_adafactor``, ``_foreach_adafactor``) over shared scalar helpers,
rather than once through ``impl._ops``: the update is not elementwise (row and column norms,
a matmul, per-tensor RMS values read back as Python doubles).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim import Optimizer

from impl._base import VerifiedOptimizer, check_tensor_lr, new_step, to_scalar
from impl._dtensor import full, keep_own_shard, laid_out_as
from impl._ops import is_dtensor

__all__ = ["Adafactor", "adafactor_update"]


# -- scalars, in Python doubles (or a 0-d tensor where a tensor lr reaches them), as torch ----
def _schedule(step: float, lr, beta2_decay: float):
    """``(1 - beta2_t, rho_t)`` for this param's step: ``t**beta2_decay`` is the weight the
    new squared gradient gets; ``rho_t = min(lr, 1/sqrt(t))`` is ``lr`` itself (a tensor lr
    stays a tensor) unless ``1/sqrt(t)`` is strictly smaller, by Python's ``min``."""
    return step**beta2_decay, min(lr, 1 / (step**0.5))


def _relative_step_size(param: Tensor, eps2: float, rho):
    """``alpha_t = max(eps2, RMS(param)) * rho_t``, taken before weight decay. An empty param
    divides 0.0 by 0.0 in Python and raises ``ZeroDivisionError``, as torch does."""
    return max(eps2, param.norm(2).item() / (param.numel() ** 0.5)) * rho


def _clipping_denominator(update: Tensor, d: float) -> float:
    """``max(1, RMS(U_t) / d)``: the update is scaled down only when its RMS exceeds ``d``."""
    return max(1.0, update.norm(2).item() / ((update.numel() ** 0.5) * d))


def _mean_square(grad: Tensor, dim: int) -> Tensor:
    """``(g * g).mean(dim)`` as torch computes it, without a param-sized temporary: the norm
    along ``dim``, squared, divided by the length (other roundings than ``(g*g).mean``)."""
    return torch.norm(grad, dim=dim, keepdim=True).square_().div_(grad.size(dim))


# -- the two paths ----------------------------------------------------------------------------
def _for_loop_adafactor(
    params: list[Tensor],
    grads: list[Tensor],
    row_vars: list,
    col_vars: list,
    variances: list,
    steps: list[Tensor],
    *,
    lr,
    beta2_decay: float,
    weight_decay: float,
    eps1: float | None,
    eps2: float,
    d: float,
    maximize: bool,
) -> None:
    for param, grad, row_var, col_var, variance, step in zip(
        params, grads, row_vars, col_vars, variances, steps
    ):
        if maximize:
            grad = -grad
        # torch's quirk, kept: the first param's dtype fixes eps1 for the rest of the group
        # (a float64 param after a float32 one is clamped at float32's eps).
        if eps1 is None:
            eps1 = torch.finfo(param.dtype).eps
        step += 1
        one_minus_beta2, rho = _schedule(step.item(), lr, beta2_decay)
        alpha = _relative_step_size(param, eps2, rho)
        if weight_decay != 0:
            param.mul_(1 - lr * weight_decay)

        if grad.dim() > 1:
            row_var.lerp_(_mean_square(grad, -1), one_minus_beta2)
            col_var.lerp_(_mean_square(grad, -2), one_minus_beta2)
            # V = R C / mean(R): the rank-1 estimate, over the last two dims of each batch
            var_estimate = row_var @ col_var
            var_estimate.div_(row_var.mean(dim=-2, keepdim=True).clamp_(min=eps1))
        else:
            variance.lerp_(grad * grad, one_minus_beta2)
            var_estimate = variance.clone()  # the update below must not write into the state

        # clamp at eps1**2 before the rsqrt: max(sqrt(V), eps1) in one pass
        update = var_estimate.clamp_(min=eps1 * eps1).rsqrt_()
        update.mul_(grad)
        # one add_ with alpha, not a rounded scaled update (the foreach path rounds it)
        param.add_(update, alpha=-alpha / _clipping_denominator(update, d))


def _group_by_device_dtype_and_is_multidim(tensorlists: list[list]) -> dict:
    """torch's buckets, in torch's order: the (device, dtype) buckets come from torch's own
    grouping (a C++ hash map, not first-appearance order: for float32 then float64 params the
    float64 bucket comes first), which decides the eps1 of the whole group; each bucket is
    split into factored (grad.dim() > 1) and vector params, in order of first appearance."""
    buckets: dict = {}
    grouped = Optimizer._group_tensors_by_device_and_dtype(tensorlists)
    for (device, dtype), (lists, _) in grouped.items():
        for j, grad in enumerate(lists[1]):
            key = (device, dtype, grad.dim() > 1)
            bucket = buckets.setdefault(key, [[] for _ in lists])
            for i, tensors in enumerate(lists):
                bucket[i].append(tensors[j])
    return buckets


def _foreach_adafactor(
    params: list[Tensor],
    grads: list[Tensor],
    row_vars: list,
    col_vars: list,
    variances: list,
    steps: list[Tensor],
    *,
    lr,
    beta2_decay: float,
    weight_decay: float,
    eps1: float | None,
    eps2: float,
    d: float,
    maximize: bool,
) -> None:
    buckets = _group_by_device_dtype_and_is_multidim(
        [params, grads, row_vars, col_vars, variances, steps]
    )
    for (_, dtype, is_multidim), lists in buckets.items():
        params_, grads_, row_vars_, col_vars_, variances_, steps_ = lists
        # torch's quirk, kept: the first bucket's dtype fixes eps1 for the rest of the group
        if eps1 is None:
            eps1 = torch.finfo(dtype).eps
        if maximize:
            grads_ = torch._foreach_neg(grads_)
        # torch adds a CPU tensor 1.0 (alpha=1.0) to CPU steps: one wrapped scalar, not many
        if steps_[0].is_cpu:
            torch._foreach_add_(steps_, torch.tensor(1.0, device="cpu"), alpha=1.0)
        else:
            torch._foreach_add_(steps_, 1.0)
        schedules = [_schedule(s.item(), lr, beta2_decay) for s in steps_]
        weights = [one_minus_beta2 for one_minus_beta2, _ in schedules]
        alphas = [_relative_step_size(p, eps2, rho) for p, (_, rho) in zip(params_, schedules)]
        if weight_decay != 0:
            torch._foreach_mul_(params_, 1 - lr * weight_decay)

        if is_multidim:
            for factors, dim in ((row_vars_, -1), (col_vars_, -2)):
                # torch squares with a multiply here (square_ in its for-loop: the same bits)
                means = [torch.norm(g, dim=dim, keepdim=True) for g in grads_]
                torch._foreach_mul_(means, means)
                torch._foreach_div_(means, [g.size(dim) for g in grads_])
                torch._foreach_lerp_(factors, means, weights)
            var_estimates = [r @ c for r, c in zip(row_vars_, col_vars_)]
            row_var_means = [r.mean(dim=-2, keepdim=True) for r in row_vars_]
            torch._foreach_clamp_min_(row_var_means, eps1)
            torch._foreach_div_(var_estimates, row_var_means)
        else:
            torch._foreach_lerp_(variances_, torch._foreach_mul(grads_, grads_), weights)
            var_estimates = [v.clone() for v in variances_]

        torch._foreach_clamp_min_(var_estimates, eps1 * eps1)
        torch._foreach_rsqrt_(var_estimates)
        torch._foreach_mul_(var_estimates, grads_)
        updates = var_estimates
        # The scaled update is rounded before it is added (the for-loop fuses it into add_).
        # With a tensor lr the scales are 0-d tensors where rho_t is lr and floats elsewhere;
        # a bucket that mixes both raises torch's TypeError here, after the state has moved.
        scales = [-a / _clipping_denominator(u, d) for a, u in zip(alphas, updates)]
        torch._foreach_mul_(updates, scales)
        torch._foreach_add_(params_, updates)


def adafactor_update(
    params: list[Tensor],
    grads: list[Tensor],
    row_vars: list[Tensor | None],
    col_vars: list[Tensor | None],
    variances: list[Tensor | None],
    steps: list[Tensor],
    *,
    foreach: bool,
    lr,
    beta2_decay: float,
    weight_decay: float,
    eps1: float | None,
    eps2: float,
    d: float,
    maximize: bool,
) -> None:
    """One Adafactor step of one param group (the params with a gradient, in group order)."""
    if not params:
        return
    update = _foreach_adafactor if foreach else _for_loop_adafactor
    update(
        params,
        grads,
        row_vars,
        col_vars,
        variances,
        steps,
        lr=to_scalar(lr),
        beta2_decay=beta2_decay,
        weight_decay=weight_decay,
        eps1=eps1,
        eps2=eps2,
        d=d,
        maximize=maximize,
    )


class Adafactor(VerifiedOptimizer):
    r"""Adafactor; drop-in for ``torch.optim.Adafactor``.

    .. math::
       \begin{aligned}
            &\textbf{input}: \gamma \text{ (lr)}, \tau \text{ (beta2\_decay)}, \theta_0,
                f(\theta), \epsilon_1, \epsilon_2 \text{ (eps)}, d \text{ (clipping threshold)},
                \lambda \text{ (weight decay)}, \textit{maximize} \\
            &\textbf{initialize}: R_0 \leftarrow 0 \text{ (row factor)},\
                C_0 \leftarrow 0 \text{ (column factor)},\
                \widehat V_0 \leftarrow 0 \text{ (second moment of vectors)} \\
            &\textbf{for}\ t = 1, 2, \ldots\ \textbf{do} \\
            &\quad G_t \leftarrow \nabla_\theta f_t(\theta_{t-1})
                \quad (\text{negated if } \textit{maximize}) \\
            &\quad \widehat\beta_{2,t} \leftarrow 1 - t^{\tau},\quad
                \rho_t \leftarrow \min(\gamma, 1/\sqrt t),\quad
                \alpha_t \leftarrow \max(\epsilon_2, \mathrm{RMS}(\theta_{t-1}))\,\rho_t \\
            &\quad \theta_{t-1} \leftarrow \theta_{t-1}(1 - \gamma\lambda) \\
            &\quad \textbf{if}\ \dim G_t > 1: \\
            &\qquad R_t \leftarrow \widehat\beta_{2,t} R_{t-1}
                + (1 - \widehat\beta_{2,t})\,\mathrm{mean}_{\text{last dim}}(G_t \odot G_t) \\
            &\qquad C_t \leftarrow \widehat\beta_{2,t} C_{t-1}
                + (1 - \widehat\beta_{2,t})\,\mathrm{mean}_{\text{2nd-last dim}}(G_t \odot G_t) \\
            &\qquad \widehat V_t \leftarrow R_t C_t / \max(\mathrm{mean}(R_t), \epsilon_1) \\
            &\quad \textbf{else}:\ \widehat V_t \leftarrow \widehat\beta_{2,t} \widehat V_{t-1}
                + (1 - \widehat\beta_{2,t})\, G_t \odot G_t \\
            &\quad U_t \leftarrow G_t / \max(\sqrt{\widehat V_t}, \epsilon_1) \\
            &\quad \theta_t \leftarrow \theta_{t-1}
                - \frac{\alpha_t}{\max(1, \mathrm{RMS}(U_t)/d)}\, U_t \\
       \end{aligned}

    As torch computes it: leading dims of a param with more than two are batch dims (one
    factorisation per matrix); the means of :math:`G^2` are squared norms divided by the
    length; the moments update with ``lerp`` at weight :math:`t^\tau`; the denominator is
    ``rsqrt(max(V, eps1**2))``; RMS values and :math:`\alpha_t` are Python doubles read back
    with ``.item()`` (a 0-d tensor where a tensor ``lr`` is :math:`\rho_t`). ``eps1=None``
    means ``finfo(dtype).eps`` of the *first* param of the group with a gradient (for-loop) or
    of the first of torch's (device, dtype) buckets (foreach), for every param of the group:
    a float64 param in a group with float32 ones may get float32's eps. ``foreach=None`` runs
    the for-loop path, as in torch (Adafactor defaults to the leaner path on every device).

    The seed post has no Adafactor. Complex params and sparse gradients raise torch's
    ``RuntimeError``, before any param or state is touched (torch has by then stepped the
    earlier groups). An empty param raises ``ZeroDivisionError`` mid-step (0.0 / 0.0 in its
    RMS) and leaves the state exactly as torch leaves it.
    """

    group_fill_ins = {"foreach": None}

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-2,
        beta2_decay: float = -0.8,
        eps: tuple[float | None, float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
    ) -> None:
        check_tensor_lr(lr)
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 >= beta2_decay:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        if eps[0] is not None and not 0.0 <= eps[0]:
            raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
        if not 0.0 <= eps[1]:
            raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
        if not 1.0 <= d:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")
        defaults = {
            "lr": lr,
            "beta2_decay": beta2_decay,
            "eps": eps,
            "d": d,
            "weight_decay": weight_decay,
            "foreach": foreach,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def _check_grads(self, group, grads):
        # torch's order: per param with a gradient, the complex check before the sparse one
        for p in group["params"]:
            if p.grad is None:
                continue
            if torch.is_complex(p):
                raise RuntimeError("Adafactor does not support complex parameters")
            if p.grad.is_sparse:
                raise RuntimeError("Adafactor does not support sparse gradients")

    def _step_group(self, group, params):
        if any(is_dtensor(p) for p in params):
            return self._step_gathered(group, params)
        # Every param's state exists before any is updated, as in torch: an empty param
        # raising mid-step leaves the later params initialised but not stepped.
        for p in params:
            if len(self.state[p]) == 0:
                _init_state(p.grad, self.state[p])
        states = [self.state[p] for p in params]
        self._update_group(group, params, [p.grad for p in params], states)

    def _step_gathered(self, group, params):
        """DTensor params (FSDP2): the factors are means over whole rows and columns and the
        step size reads the param's RMS, so each rank gathers the full param, gradient and
        state, runs the unsharded update (bit for bit what one process computes), and keeps its
        own shard. The full-size second moment is laid out as its param, the factors are
        replicated. torch 2.13's Adafactor cannot step DTensors at all
        (docs/torch-findings.md#finding-28)."""
        full_params = [full(p) for p in params]
        full_grads = [full(p.grad) for p in params]
        for p, grad in zip(params, full_grads):
            if len(self.state[p]) == 0:
                _init_state(grad, self.state[p])
                if is_dtensor(p):
                    for key, value in self.state[p].items():
                        if key != "step":  # factors replicated, a full-size moment as its param
                            replicated = key != "variance"
                            self.state[p][key] = laid_out_as(value, p, replicated=replicated)
        full_states = [{k: full(v) for k, v in self.state[p].items()} for p in params]
        self._update_group(group, full_params, full_grads, full_states)
        for p, whole, full_state in zip(params, full_params, full_states):
            keep_own_shard(p, whole)
            for key, value in self.state[p].items():
                keep_own_shard(value, full_state[key])

    def _update_group(self, group, params, grads, states):
        eps1, eps2 = group["eps"]
        adafactor_update(
            params,
            grads,
            [s.get("row_var") for s in states],
            [s.get("col_var") for s in states],
            [s.get("variance") for s in states],
            [s["step"] for s in states],
            foreach=bool(group["foreach"]),  # None: the for-loop path on every device
            lr=group["lr"],
            beta2_decay=group["beta2_decay"],
            weight_decay=group["weight_decay"],
            eps1=eps1,
            eps2=eps2,
            d=group["d"],
            maximize=group["maximize"],
        )


def _init_state(grad: Tensor, state: dict) -> None:
    """Shaped, typed and laid out after the *gradient*, as torch does: a param with more than
    one dim keeps a row factor (last dim reduced to 1) and a column factor (second-last dim
    reduced to 1), any other param a full-size second moment with the gradient's strides."""
    state["step"] = new_step()  # on the CPU, float32 (float64 under that default dtype)
    if grad.dim() > 1:
        row_shape = list(grad.shape)
        row_shape[-1] = 1
        state["row_var"] = grad.new_zeros(row_shape)
        col_shape = list(grad.shape)
        col_shape[-2] = 1
        state["col_var"] = grad.new_zeros(col_shape)
    else:
        state["variance"] = torch.zeros_like(grad, memory_format=torch.preserve_format)

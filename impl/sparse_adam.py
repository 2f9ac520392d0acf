"""SparseAdam, Adam on the rows a sparse gradient names (maximize): drop-in for
``torch.optim.SparseAdam``."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.optim import Optimizer

from impl._base import VerifiedOptimizer, check_tensor_lr, to_scalar
from impl._ops import add_sparse_

__all__ = ["SparseAdam", "sparse_adam_update"]


def sparse_adam_update(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: int,
    *,
    lr,
    beta1: float,
    beta2: float,
    eps: float,
    maximize: bool,
) -> None:
    """One step on the entries ``grad`` names; ``step`` is already incremented."""
    if maximize:
        grad = -grad
    grad = grad.coalesce()  # the update is non-linear: repeated indices must be summed first
    indices, values = grad._indices(), grad._values()
    if values.numel() == 0:
        return

    def like_grad(new_values: Tensor) -> Tensor:  # indices of a coalesced tensor: valid as is
        return torch.sparse_coo_tensor(indices, new_values, grad.size(), check_invariants=False)

    # m += (1 - beta1) * (g - m) and v += (1 - beta2) * (g^2 - v) on the named entries only;
    # the new values are rebuilt as old + update, the same additions the sparse add_ makes.
    old_exp_avg = exp_avg.sparse_mask(grad)._values()
    exp_avg_update = values.sub(old_exp_avg).mul_(1 - beta1)
    add_sparse_(exp_avg, like_grad(exp_avg_update))
    old_exp_avg_sq = exp_avg_sq.sparse_mask(grad)._values()
    exp_avg_sq_update = values.pow(2).sub_(old_exp_avg_sq).mul_(1 - beta2)
    add_sparse_(exp_avg_sq, like_grad(exp_avg_sq_update))

    numer = exp_avg_update.add_(old_exp_avg)
    denom = exp_avg_sq_update.add_(old_exp_avg_sq).sqrt_().add_(eps)
    # Bias corrections in Python doubles; a tensor lr makes step_size a tensor, as in torch.
    step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
    add_sparse_(param, like_grad(-step_size * numer.div_(denom)))


class SparseAdam(VerifiedOptimizer):
    r"""Adam for sparse gradients, masked to the entries they name; drop-in for
    ``torch.optim.SparseAdam``.

    .. math::
       \begin{aligned}
            &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2 \text{ (betas)},
                \theta_0, f(\theta), \epsilon, \textit{maximize} \\
            &\textbf{initialize}: m_0 \leftarrow 0,\ v_0 \leftarrow 0 \\
            &\textbf{for}\ t = 1, 2, \ldots\ \textbf{do} \\
            &\quad g_t \leftarrow \mathrm{coalesce}(\nabla_\theta f_t(\theta_{t-1}))
                \quad (\text{negated if } \textit{maximize}) \\
            &\quad \textbf{for each entry}\ i\ \textbf{named by}\ g_t\ \textbf{do} \\
            &\qquad m_{t,i} \leftarrow m_{t-1,i} + (1 - \beta_1)(g_{t,i} - m_{t-1,i}) \\
            &\qquad v_{t,i} \leftarrow v_{t-1,i} + (1 - \beta_2)(g_{t,i}^2 - v_{t-1,i}) \\
            &\qquad \theta_{t,i} \leftarrow \theta_{t-1,i} -
                \frac{\gamma \sqrt{1 - \beta_2^t}}{1 - \beta_1^t} \cdot
                \frac{m_{t,i}}{\sqrt{v_{t,i}} + \epsilon} \\
            &\quad \text{entries } g_t \text{ does not name keep } \theta, m, v \\
       \end{aligned}

    As torch computes it: an entry is "named" if the coalesced gradient stores it, whatever its
    value (a stored 0 still decays :math:`m` and :math:`v` and moves :math:`\theta`); repeated
    indices are summed first. :math:`t` counts this parameter's steps with a gradient, as a
    Python ``int``, and an empty gradient advances it without an update. The step size is one
    Python-double scalar; :math:`\epsilon` is added after the square root but before the bias
    correction (Adam adds it after); :math:`m / (\sqrt v + \epsilon)` is rounded, then its
    product with the negated step size, then the sum with :math:`\theta`. :math:`m` and
    :math:`v` update in place, as one addition of the rounded update each. There is one path
    (no foreach).

    The seed post has no SparseAdam. Dense gradients raise torch's ``RuntimeError``, and impl
    raises it before touching any parameter or state (torch has by then counted a step for the
    earlier parameters of that group and updated the earlier groups). Sparse or complex
    parameters are refused at construction, as in torch.
    """

    sparse_error = None
    dense_error = "SparseAdam does not support dense gradients, please consider Adam instead"

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        maximize: bool = False,
    ) -> None:
        check_tensor_lr(lr)
        if not 0.0 < lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 < eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "maximize": maximize}
        super().__init__(params, defaults)
        _refuse_sparse_or_complex_params(self.param_groups)

    def __setstate__(self, state: dict) -> None:
        # torch's SparseAdam keeps ``step`` a Python int and has no group fill-ins to apply.
        Optimizer.__setstate__(self, state)

    def _check_grads(self, group, grads):
        if any(not g.is_sparse for g in grads):
            raise RuntimeError(self.dense_error)

    def _step_group(self, group, params):
        beta1, beta2 = group["betas"]
        for p in params:
            state = self.state[p]
            if len(state) == 0:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            sparse_adam_update(
                p,
                p.grad,
                state["exp_avg"],
                state["exp_avg_sq"],
                state["step"],
                lr=to_scalar(group["lr"]),
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                maximize=group.get("maximize", False),  # absent from old checkpoints
            )


def _refuse_sparse_or_complex_params(param_groups: list[dict]) -> None:
    """torch's checks, after the generic ones of ``Optimizer.__init__``; all indices listed."""
    sparse, complex_ = [], []
    for index, group in enumerate(param_groups):
        for d_index, p in enumerate(group["params"]):
            if p.is_sparse:
                sparse.append([index, d_index])
            if p.is_complex():
                complex_.append([index, d_index])
    if sparse:
        raise ValueError(
            f"Sparse params at indices {sparse}: SparseAdam requires dense parameter tensors"
        )
    if complex_:
        raise ValueError(
            f"Complex params at indices {complex_}: SparseAdam does not support complex parameters"
        )

"""RAdam (rectified Adam; L2 or decoupled weight decay, maximize): drop-in for
``torch.optim.RAdam``."""

from __future__ import annotations

import torch
from torch import Tensor

from impl._base import VerifiedOptimizer, check_adam_family, check_tensor_lr, new_step, to_scalar
from impl._ops import Ops, decay_weights, step_counts

__all__ = ["RAdam", "radam_update"]


def rectification(beta2: float, t: float) -> float:
    """The variance rectification r_t, or 0 while the approximated SMA length rho_t is at most 5
    (the adaptive step is then skipped). Python doubles, as on both of torch's paths."""
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * t * (beta2**t) / (1 - beta2**t)
    if not rho_t > 5:  # torch's threshold (the paper's is 4); a NaN rho_t is not rectified
        return 0
    return ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5


def radam_update(
    ops: Ops,
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[Tensor],
    *,
    lr,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
) -> None:
    if maximize:
        grads = ops.neg(grads)
    # Unlike Adam, torch's for-loop RAdam views complex tensors as real before the weight decay.
    params, grads, exp_avgs, exp_avg_sqs = ops.as_real(params, grads, exp_avgs, exp_avg_sqs)
    ops.increment_(steps)
    t = step_counts(steps)
    # torch's foreach path forms rho_t before the weight decay and the moments, its for-loop path
    # after them: where 1 - beta2**t is 0 (a bad beta2 put into a group) the ZeroDivisionError
    # leaves the state as far as each path got
    rects = [rectification(beta2, s) for s in t] if ops.name == "foreach" else None
    grads = decay_weights(ops, params, grads, lr, weight_decay, decoupled_weight_decay)

    ops.lerp_(exp_avgs, grads, 1 - beta1)
    ops.mul_(exp_avg_sqs, beta2)
    ops.addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2, positional=True)

    denoms = ops.sqrt(exp_avg_sqs)
    ops.add_scalar_(denoms, eps)  # eps outside the square root, before the bias correction
    ops.add_rectified_step_(
        params,
        exp_avgs,
        denoms,
        lr=lr,
        bias_corrections1=[1 - beta1**s for s in t],
        bias_corrections2=[1 - beta2**s for s in t],
        rects=rects if rects is not None else [rectification(beta2, s) for s in t],
    )


class RAdam(VerifiedOptimizer):
    r"""RAdam; drop-in for ``torch.optim.RAdam`` (``decoupled_weight_decay=True`` is RAdamW).

    .. math::
       \begin{aligned}
            &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2 \text{ (betas)},
                \theta_0, f(\theta), \lambda \text{ (weight decay)}, \epsilon,
                \textit{decoupled\_weight\_decay}, \textit{maximize} \\
            &\textbf{initialize}: m_0 \leftarrow 0,\ v_0 \leftarrow 0,\
                \rho_\infty \leftarrow 2/(1 - \beta_2) - 1 \\
            &\textbf{for}\ t = 1, 2, \ldots\ \textbf{do} \\
            &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1})
                \quad (\text{negated if } \textit{maximize}) \\
            &\quad \textbf{if}\ \lambda \ne 0:\ \theta_{t-1} \leftarrow
                \theta_{t-1}(1 - \gamma\lambda) \ \text{(decoupled)}
                \ \textbf{else}\ g_t \leftarrow g_t + \lambda\theta_{t-1} \\
            &\quad m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
            &\quad v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
            &\quad \widehat{m_t} \leftarrow m_t / (1 - \beta_1^t) \\
            &\quad \rho_t \leftarrow \rho_\infty - 2t\beta_2^t / (1 - \beta_2^t) \\
            &\quad \textbf{if}\ \rho_t > 5: \\
            &\qquad l_t \leftarrow \sqrt{1 - \beta_2^t} / (\sqrt{v_t} + \epsilon) \\
            &\qquad r_t \leftarrow \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}
                {(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}} \\
            &\qquad \theta_t \leftarrow \theta_{t-1} - \gamma\, \widehat{m_t}\, r_t\, l_t \\
            &\quad \textbf{else}:\ \theta_t \leftarrow \theta_{t-1} - \gamma\, \widehat{m_t} \\
       \end{aligned}

    :math:`\rho_t` exceeds 5 from step 6 on whatever :math:`\beta_2` (and never if
    :math:`\rho_\infty \le 5`, i.e. :math:`\beta_2 \le 2/3`): the first five steps are plain
    bias-corrected momentum SGD.

    Where torch's paths differ: everything after the moment updates
    (``ops.add_rectified_step_``). The for-loop path builds
    :math:`((\widehat{m_t}\gamma)(\sqrt{1-\beta_2^t}/d))\,r_t` with tensor ops and subtracts it;
    the foreach path builds a per-element multiplier
    :math:`1/(d / s_t) + u_t` with scalars :math:`s_t = -\gamma r_t\sqrt{1-\beta_2^t}/(1-\beta_1^t)`
    and :math:`u_t = -\gamma/(1-\beta_1^t)` (zero when rectified, :math:`s_t` zero when not) and
    adds :math:`m_t` times it with one ``addcmul``. Some 100 ULP apart in float32.

    The seed post has no RAdam. Complex parameters are updated through ``view_as_real`` (on
    both paths before the weight decay). ``capturable`` and ``differentiable`` raise
    ``NotImplementedError``.
    """

    sparse_error = "RAdam does not support sparse gradients"
    group_fill_ins = {
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "decoupled_weight_decay": False,
        "capturable": False,
    }

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_tensor_lr(lr)
        check_adam_family(lr, eps, betas, weight_decay)
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "decoupled_weight_decay": decoupled_weight_decay,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def _state_keys(self, group):
        return ("step", "exp_avg", "exp_avg_sq")

    def _init_state(self, group, p, state):
        state["step"] = new_step()
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, ops, group, params, grads, state):
        beta1, beta2 = group["betas"]
        radam_update(
            ops,
            params,
            grads,
            state["exp_avg"],
            state["exp_avg_sq"],
            state["step"],
            lr=to_scalar(group["lr"]),
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
            maximize=group["maximize"],
        )

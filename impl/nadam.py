"""NAdam (Nesterov-accelerated Adam; momentum decay, L2 or decoupled weight decay, maximize):
drop-in for ``torch.optim.NAdam``."""

from __future__ import annotations

import torch
from torch import Tensor

from impl._base import (
    VerifiedOptimizer,
    check_adam_family,
    check_tensor_lr,
    new_step,
    scalar_dtype,
    to_scalar,
)
from impl._ops import Ops, decay_weights, step_counts

__all__ = ["NAdam", "nadam_update"]


def _momentum(beta1: float, momentum_decay: float, t: float) -> float:
    """The momentum schedule mu_t, in Python doubles on both of torch's paths."""
    return beta1 * (1.0 - 0.5 * (0.96 ** (t * momentum_decay)))


def nadam_update(
    ops: Ops,
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    mu_products: list[Tensor],
    steps: list[Tensor],
    *,
    lr,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    momentum_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
) -> None:
    if maximize:
        grads = ops.neg(grads)
    # Unlike Adam, torch's for-loop NAdam views complex tensors as real before the weight decay.
    params, grads, exp_avgs, exp_avg_sqs = ops.as_real(params, grads, exp_avgs, exp_avg_sqs)
    ops.increment_(steps)
    grads = decay_weights(ops, params, grads, lr, weight_decay, decoupled_weight_decay)

    t = step_counts(steps)
    mus = [_momentum(beta1, momentum_decay, s) for s in t]
    mu_nexts = [_momentum(beta1, momentum_decay, s + 1) for s in t]
    if not ops.running_product_last:
        ops.mul_(mu_products, mus)  # a 0-d tensor: the running product rounds every step

    ops.lerp_(exp_avgs, grads, 1 - beta1)
    ops.mul_(exp_avg_sqs, beta2)
    ops.addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2, positional=True)
    if ops.running_product_last:
        ops.mul_(mu_products, mus)
    denoms = ops.sqrt_of_ratio(exp_avg_sqs, [1 - beta2**s for s in t])
    ops.add_scalar_(denoms, eps)

    # Nesterov: the gradient weighted by this step's momentum, the average by the next one's.
    lr = ops.lr_for_step_sizes(lr)
    products = [mu_product.item() for mu_product in mu_products]
    grad_sizes = [-lr * (1.0 - mu) / (1.0 - product) for mu, product in zip(mus, products)]
    avg_sizes = [
        (-lr * mu_next) / (1.0 - product * mu_next) for mu_next, product in zip(mu_nexts, products)
    ]
    ops.addcdiv_(params, grads, denoms, value=grad_sizes)
    ops.addcdiv_(params, exp_avgs, denoms, value=avg_sizes)


class NAdam(VerifiedOptimizer):
    r"""NAdam; drop-in for ``torch.optim.NAdam`` (``decoupled_weight_decay=True`` is NAdamW).

    .. math::
       \begin{aligned}
            &\textbf{input}: \gamma \text{ (lr)}, \beta_1, \beta_2 \text{ (betas)},
                \theta_0, f(\theta), \lambda \text{ (weight decay)},
                \psi \text{ (momentum decay)}, \epsilon,
                \textit{decoupled\_weight\_decay}, \textit{maximize} \\
            &\textbf{initialize}: m_0 \leftarrow 0,\ v_0 \leftarrow 0 \\
            &\textbf{for}\ t = 1, 2, \ldots\ \textbf{do} \\
            &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1})
                \quad (\text{negated if } \textit{maximize}) \\
            &\quad \textbf{if}\ \lambda \ne 0:\ \theta_{t-1} \leftarrow
                \theta_{t-1}(1 - \gamma\lambda) \ \text{(decoupled)}
                \ \textbf{else}\ g_t \leftarrow g_t + \lambda\theta_{t-1} \\
            &\quad \mu_t \leftarrow \beta_1 \big(1 - \tfrac{1}{2}\, 0.96^{t\psi}\big),\quad
                \mu_{t+1} \leftarrow \beta_1 \big(1 - \tfrac{1}{2}\, 0.96^{(t+1)\psi}\big) \\
            &\quad m_t \leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
            &\quad v_t \leftarrow \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
            &\quad \widehat{m_t} \leftarrow \frac{\mu_{t+1} m_t}{1 - \prod_{i=1}^{t+1}\mu_i}
                + \frac{(1 - \mu_t) g_t}{1 - \prod_{i=1}^{t}\mu_i} \\
            &\quad \widehat{v_t} \leftarrow v_t / (1 - \beta_2^t) \\
            &\quad \theta_t \leftarrow \theta_{t-1} - \gamma\,
                \frac{\widehat{m_t}}{\sqrt{\widehat{v_t}} + \epsilon} \\
       \end{aligned}

    As torch computes it: :math:`\prod \mu_i` is the state ``mu_product``, a 0-d float32
    tensor (float64 under a float64 default dtype) multiplied by :math:`\mu_t` in place, so
    it rounds every step; the two step sizes are Python doubles from its ``.item()``; the
    parameter moves by two ``addcdiv`` calls, the gradient's first.

    Where torch's paths differ: the denominator is :math:`\sqrt{v_t / (1-\beta_2^t)}` on the
    for-loop path but :math:`\sqrt{v_t} / \sqrt{1-\beta_2^t}` on the foreach path
    (``ops.sqrt_of_ratio``), some 100 ULP apart in float32; and a tensor ``lr`` enters the step
    sizes as a 0-d tensor on the for-loop path, as ``lr.item()`` on the foreach path
    (``ops.lr_for_step_sizes``).

    The seed post has no NAdam. Complex parameters are updated through ``view_as_real`` (on
    both paths before the weight decay). ``capturable`` and ``differentiable`` raise
    ``NotImplementedError``.
    """

    sparse_error = "NAdam does not support sparse gradients"
    group_fill_ins = {
        "maximize": False,
        "foreach": None,
        "capturable": False,
        "differentiable": False,
        "decoupled_weight_decay": False,
    }

    def __init__(
        self,
        params,
        lr: float | Tensor = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        check_tensor_lr(lr)
        check_adam_family(lr, eps, betas, weight_decay)
        if not 0.0 <= momentum_decay:
            raise ValueError(f"Invalid momentum_decay value: {momentum_decay}")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum_decay": momentum_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        # Checkpoints from older torch versions store mu_product as a number, too.
        for group in self.param_groups:
            for p in group["params"]:
                p_state = self.state.get(p, {})
                if "mu_product" in p_state and not torch.is_tensor(p_state["mu_product"]):
                    p_state["mu_product"] = torch.tensor(
                        p_state["mu_product"], dtype=scalar_dtype()
                    )

    def _state_keys(self, group):
        return ("step", "mu_product", "exp_avg", "exp_avg_sq")

    def _init_state(self, group, p, state):
        state["step"] = new_step()
        state["mu_product"] = torch.tensor(1.0, dtype=scalar_dtype())
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, ops, group, params, grads, state):
        beta1, beta2 = group["betas"]
        nadam_update(
            ops,
            params,
            grads,
            state["exp_avg"],
            state["exp_avg_sq"],
            state["mu_product"],
            state["step"],
            lr=to_scalar(group["lr"]),
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum_decay=group["momentum_decay"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
            maximize=group["maximize"],
        )

"""Muon (momentum, Newton–Schulz orthogonalisation, shape-adjusted lr): drop-in for
``torch.optim.Muon``.

The orthogonalisation is ``newton_schulz`` below, written out op for op as torch 2.13 writes it
(bfloat16 throughout, the same matmuls in the same layouts), so the bits agree.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.optim import Optimizer

from impl._base import check_tensor_lr, to_scalar
from impl._dtensor import full, keep_own_shard
from impl._ops import is_dtensor

__all__ = ["Muon", "muon_update", "newton_schulz"]

# torch's defaults (Keller Jordan's constants), restated so that nothing private is imported.
EPS = 1e-7
DEFAULT_A = 3.4445
DEFAULT_B = -4.7750
DEFAULT_C = 2.0315
DEFAULT_NS_STEPS = 5
ADJUST_LR_FNS = ("original", "match_rms_adamw")


def check_newton_schulz_args(coefficients, steps, ndim: int) -> None:
    """torch's checks, in torch's order. They run at step time (torch has none in the
    constructor), and only for a group with at least one gradient."""
    if steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if ndim != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")


def newton_schulz(matrix: Tensor, coefficients, steps: int, eps: float) -> Tensor:
    r"""Approximately orthogonalise ``matrix``: :math:`G = USV^T \mapsto U\,p^{(k)}(S)\,V^T`.

    The matrix is cast to bfloat16 and divided by its Frobenius norm (clamped below at ``eps``),
    so that all singular values lie in :math:`[0, 1]`. Then the odd quintic
    :math:`p(x) = a x + b x^3 + c x^5` (``coefficients = (a, b, c)``) is applied to the singular
    values ``steps`` times, as :math:`X \leftarrow aX + (bA + cA^2)X` with :math:`A = XX^T`. With
    torch's default coefficients the singular values end near 1 (roughly in [0.65, 1.2]), not at
    1: ``UV^T`` only approximately.

    The iteration runs in bfloat16 exactly as torch does, even for float32/float64 params, and
    the result is bfloat16. A tall matrix (rows > cols) is transposed first so that the Gram
    matrix :math:`XX^T` is the small one, and transposed back at the end. Each operation is
    torch's, on the same layouts, so the result is bitwise torch's ``_zeropower_via_newtonschulz``.

    A bfloat16 ``matrix`` is not copied by the cast and is divided in place by its norm, as in
    torch (for Muon without Nesterov that normalises the momentum buffer itself).
    """
    check_newton_schulz_args(coefficients, steps, matrix.ndim)
    a, b, c = coefficients
    x = matrix.bfloat16()
    tall = matrix.size(0) > matrix.size(1)
    if tall:
        x = x.T  # a view: the matmuls below see torch's strides, hence torch's BLAS calls
    # A clamp, not an added eps: a gradient with norm >= eps is normalised exactly.
    x.div_(x.norm().clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.T
        polynomial = torch.addmm(gram, gram, gram, beta=b, alpha=c)  # b*A + c*A@A
        x = torch.addmm(x, polynomial, x, beta=a)  # a*X + (b*A + c*A@A) @ X
    if tall:
        x = x.T
    return x


def lr_ratio(adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """The factor on lr that evens out the update's RMS across shapes; torch's arithmetic, so
    an ``N x 0`` (or ``0 x 0``) param raises ``ZeroDivisionError`` under "original" as there.
    An unknown name (possible through ``add_param_group``) gives 1, as in torch."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / cols))  # Keller Jordan's
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))  # Moonshot's
    return 1.0


def check_step_inputs(group: dict, params: list[Tensor]) -> None:
    """Every error torch's step can raise for this group from its inputs alone, in torch's order:
    complex params and sparse gradients for the whole group first (its ``_init_group``), then
    per param the gradient's shape, the Newton–Schulz arguments and the lr adjustment."""
    for p in params:
        if torch.is_complex(p):
            raise RuntimeError("Muon does not support complex parameters")
        if p.grad.is_sparse:
            raise RuntimeError("Muon does not support sparse gradients")
    for p in params:
        if p.grad.ndim != 2:  # only a param added later through add_param_group gets here
            raise ValueError("Param gradient must be a 2D matrix")
        check_newton_schulz_args(group["ns_coefficients"], group["ns_steps"], p.grad.ndim)
        lr_ratio(group["adjust_lr_fn"], p.shape)


def muon_update(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor],
    *,
    lr,
    weight_decay: float,
    momentum: float,
    nesterov: bool,
    ns_coefficients,
    ns_steps: int,
    eps: float,
    adjust_lr_fn: str | None,
    foreach: bool | None = None,
) -> None:
    """One Muon step for a group (torch's functional ``muon``, which has no foreach path)."""
    if foreach:
        raise RuntimeError("Foreach is not supported for Muon yet")
    lr = to_scalar(lr)
    for param, grad, buf in zip(params, grads, momentum_buffers):
        # B <- mu*B + (1-mu)*g as a lerp: torch's EMA form, not the box's mu*B + g
        buf.lerp_(grad, 1 - momentum)
        update = grad.lerp(buf, momentum) if nesterov else buf
        update = newton_schulz(update, ns_coefficients, ns_steps, eps)
        # Python doubles for a float lr; a tensor lr stays a tensor here, rounded where torch's is
        adjusted_lr = lr * lr_ratio(adjust_lr_fn, param.shape)
        param.mul_(1 - lr * weight_decay)  # decoupled decay with the unadjusted lr
        param.add_(update, alpha=-adjusted_lr)  # bfloat16 update into the param's dtype


class Muon(Optimizer):
    r"""Muon: momentum, then Newton–Schulz orthogonalisation of each 2-d update; drop-in for
    ``torch.optim.Muon``.

    .. math::
       \begin{aligned}
            &\textbf{input}: \gamma \text{ (lr)}, \lambda \text{ (weight decay)},
                \mu \text{ (momentum)}, \textit{nesterov}, (a, b, c) \text{ (NS coefficients)},
                \varepsilon, k \text{ (NS steps)}, \theta_0 \in \mathbb{R}^{A \times B},
                f(\theta) \\
            &\textbf{initialize}: B_0 \leftarrow 0 \\
            &\textbf{for}\ t = 1, 2, \ldots\ \textbf{do} \\
            &\quad g_t \leftarrow \nabla_\theta f_t(\theta_{t-1}) \\
            &\quad B_t \leftarrow \mu B_{t-1} + (1 - \mu) g_t \\
            &\quad \widetilde B_t \leftarrow (1 - \mu) g_t + \mu B_t \ \textbf{if}\
                \textit{nesterov}\ \textbf{else}\ B_t \\
            &\quad X \leftarrow \mathrm{bf16}(\widetilde B_t) / \max(\lVert \widetilde B_t
                \rVert_F, \varepsilon) \quad (\text{transposed while } A > B) \\
            &\quad \textbf{repeat}\ k\ \textbf{times}:\ X \leftarrow aX + (bXX^T + c(XX^T)^2)X
                \\
            &\quad \theta_t \leftarrow \theta_{t-1}(1 - \gamma\lambda) - \gamma\rho\, O_t,
                \quad O_t = X,\ \rho = \sqrt{\max(1, A/B)}\ \text{(original)}
                \ \textbf{or}\ 0.2\sqrt{\max(A, B)}\ \text{(match\_rms\_adamw)} \\
       \end{aligned}

    The momentum lines are torch's code, which its docstring box writes as
    :math:`B_t = \mu B_{t-1} + g_t`, :math:`\widetilde B_t = g_t + \mu B_t`: the same directions
    scaled by :math:`1-\mu`, which the normalisation removes. The decay uses the unadjusted
    :math:`\gamma`. See ``newton_schulz`` for the iteration, in bfloat16 for every param dtype.

    Every param must be 2-d (the constructor checks; ``add_param_group`` does not, and a
    non-2-d gradient then raises at step, as in torch). Complex params and sparse gradients raise
    at step with torch's messages, as do ``ns_steps >= 100`` and ``ns_coefficients`` of the wrong
    length; unlike torch, which raises mid-step with earlier params already moved, they are
    raised before anything is touched. There is no ``foreach`` argument (torch has none either);
    ``muon_update`` mirrors torch's functional refusal of ``foreach=True``.
    """

    def __init__(
        self,
        params,
        lr: float | Tensor = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (DEFAULT_A, DEFAULT_B, DEFAULT_C),
        eps: float = EPS,
        ns_steps: int = DEFAULT_NS_STEPS,
        adjust_lr_fn: str | None = None,
    ) -> None:
        check_tensor_lr(lr)
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 <= momentum:
            raise ValueError(f"momentum should be >= 0 but is: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
        if adjust_lr_fn is not None and adjust_lr_fn not in ADJUST_LR_FNS:
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": ns_coefficients,
            "eps": eps,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
        }
        # The param-list errors of the base class come first, then the shape check, as in torch.
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(
                        "Muon only supports 2D parameters whereas we found a parameter with "
                        f"size: {p.size()}"
                    )

    @torch.no_grad()
    def step(self, closure=None):
        """Perform a single optimization step.

        Args:
            closure (Callable, optional): A closure that reevaluates the model and returns the
                loss.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        work = [
            (group, [p for p in group["params"] if p.grad is not None])
            for group in self.param_groups
        ]
        # Validate every group before touching any (the project's rule; torch raises mid-loop).
        for group, params in work:
            check_step_inputs(group, params)

        for group, params in work:
            for p in params:
                if "momentum_buffer" not in self.state[p]:
                    # shaped like the gradient, strides included, as torch's
                    self.state[p]["momentum_buffer"] = torch.zeros_like(
                        p.grad, memory_format=torch.preserve_format
                    )
            buffers = [self.state[p]["momentum_buffer"] for p in params]
            # DTensor params (FSDP2): Newton-Schulz runs on the gathered matrices (impl._dtensor)
            gathered = any(is_dtensor(p) for p in params)
            whole = [full(p) for p in params] if gathered else params
            whole_buffers = [full(b) for b in buffers] if gathered else buffers
            muon_update(
                whole,
                [full(p.grad) for p in params],
                whole_buffers,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                momentum=group["momentum"],
                nesterov=group["nesterov"],
                ns_coefficients=group["ns_coefficients"],
                ns_steps=group["ns_steps"],
                eps=group["eps"],
                adjust_lr_fn=group["adjust_lr_fn"],
            )
            if gathered:
                for t, value in zip([*params, *buffers], [*whole, *whole_buffers]):
                    keep_own_shard(t, value)
        return loss

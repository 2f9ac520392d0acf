"""The vocabulary every update rule is written in: elementwise ops over lists of tensors.

Each algorithm in ``impl`` is one function of ``(ops, params, grads, state lists, hyper-
parameters)``. The execution path is the ``ops`` argument, so the math exists once:

* ``FOR_LOOP`` calls the same per-tensor kernels as torch's single-tensor path. The base class calls
  the update once per parameter with one-element lists, so at most one parameter's temporaries are
  alive at a time, as in torch.
* ``FOREACH`` calls the ``torch._foreach_*`` kernels on a whole (device, dtype) bucket.

A scalar argument is either one value for every tensor or a ``list`` with one value per tensor
(bias corrections depend on each parameter's own step count). Scalars are passed to the kernels
untouched, so a tensor ``lr`` rounds exactly where torch's own code rounds it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch
from torch import Tensor

Scalar = float | int | Tensor
ScalarOrPerTensor = Scalar | list


def _per_tensor(value: ScalarOrPerTensor, count: int) -> Sequence:
    return value if isinstance(value, list) else [value] * count


def _foreach_addc(fn, xs, ys, zs, value: ScalarOrPerTensor):
    """torch's foreach addc* with ``value`` bound as torch.optim binds it: a per-tensor list
    positionally (torch.optim never names ``scalars``, and a list holding tensors, from tensor
    betas, is then refused with torch's own message), anything else by keyword (a 0-d tensor
    must not be taken for the packed 1-d ``scalars`` tensor)."""
    if isinstance(value, list):
        return fn(xs, ys, zs, value)
    return fn(xs, ys, zs, value=value)


def is_dtensor(t) -> bool:
    """Whether ``t`` is a DTensor, without importing torch.distributed (absent from some torch
    builds, and slow to import): no DTensor exists before its module is imported."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(t, module.DTensor)


def _as_real(t):
    return torch.view_as_real(t) if t is not None and t.is_complex() else t


def add_sparse_(dense: Tensor, sparse: Tensor, *, alpha: Scalar = 1) -> None:
    """``dense.add_(sparse, alpha=alpha)``, also on a view: torch 2.13's kernel writes into a
    contiguous dense tensor with a storage offset at twice that offset when the sparse tensor is
    flagged coalesced (one of a single entry always is) and has no dense dims, corrupting a
    neighbour and leaving the element unchanged (docs/torch-findings.md#finding-13). A view with
    an offset is updated through an offset-free copy instead: the same kernel on the same values,
    so the same bits wherever torch's own result is right."""
    if dense.numel() == 0:  # nothing to add; torch 2.13 segfaults on some empty tensors here
        return
    if dense.storage_offset() == 0:
        dense.add_(sparse, alpha=alpha)
        return
    scratch = dense.clone()
    scratch.add_(sparse, alpha=alpha)
    dense.copy_(scratch)


class ForLoopOps:
    """One tensor at a time, through the kernels of torch's single-tensor (for-loop) path."""

    name = "for-loop"
    #: torch's for-loop path applies weight decay in complex arithmetic, then views as real.
    views_complex_up_front = False
    #: torch's for-loop NAdam multiplies mu_product before it updates the moments, its foreach
    #: path after: where that multiply raises (a bad momentum_decay), only foreach's refused
    #: step has already moved the moments.
    running_product_last = False

    @staticmethod
    def as_real(*lists):
        return [[_as_real(t) for t in tensors] for tensors in lists]

    @staticmethod
    def neg(xs):
        return [-x for x in xs]

    @staticmethod
    def clone(xs):
        return [x.detach().clone() for x in xs]

    @staticmethod
    def add(xs, ys, *, alpha: Scalar = 1):
        return [x.add(y, alpha=alpha) for x, y in zip(xs, ys)]

    @staticmethod
    def add_(xs, ys, *, alpha: Scalar = 1) -> None:
        for x, y in zip(xs, ys):
            if y.is_sparse and not x.is_sparse:
                add_sparse_(x, y, alpha=alpha)
            else:
                x.add_(y, alpha=alpha)

    @staticmethod
    def add_scalar_(xs, value: ScalarOrPerTensor) -> None:
        for x, v in zip(xs, _per_tensor(value, len(xs))):
            x.add_(v)

    @staticmethod
    def mul_(xs, value: ScalarOrPerTensor) -> None:
        for x, v in zip(xs, _per_tensor(value, len(xs))):
            x.mul_(v)

    @staticmethod
    def div_(xs, value: ScalarOrPerTensor) -> None:
        for x, v in zip(xs, _per_tensor(value, len(xs))):
            x.div_(v)

    @staticmethod
    def div(xs, value: ScalarOrPerTensor) -> list[Tensor]:
        return [x / v for x, v in zip(xs, _per_tensor(value, len(xs)))]

    @staticmethod
    def lerp_(xs, ys, weight: ScalarOrPerTensor) -> None:
        for x, y, w in zip(xs, ys, _per_tensor(weight, len(xs))):
            x.lerp_(y, w)

    @staticmethod
    def addcmul(xs, ys, zs, *, value: Scalar = 1):
        return [x.addcmul(y, z, value=value) for x, y, z in zip(xs, ys, zs)]

    @staticmethod
    def addcmul_(xs, ys, zs, *, value: ScalarOrPerTensor = 1, positional=False) -> None:
        for x, y, z, v in zip(xs, ys, zs, _per_tensor(value, len(xs))):
            x.addcmul_(y, z, value=v)

    @staticmethod
    def addcdiv_(xs, ys, zs, *, value: ScalarOrPerTensor = 1) -> None:
        for x, y, z, v in zip(xs, ys, zs, _per_tensor(value, len(xs))):
            x.addcdiv_(y, z, value=v)

    @staticmethod
    def addcdiv_scaled_(xs, ys, zs, scale: ScalarOrPerTensor, *, ys_are_scratch=False) -> None:
        """``x += scale * y / z`` with the scale folded into the addcdiv, as torch's for-loop."""
        ForLoopOps.addcdiv_(xs, ys, zs, value=scale)

    @staticmethod
    def sqrt(xs):
        return [x.sqrt() for x in xs]

    @staticmethod
    def sqrt_(xs) -> None:
        for x in xs:
            x.sqrt_()

    @staticmethod
    def maximum_(xs, ys) -> None:
        for x, y in zip(xs, ys):
            torch.maximum(x, y, out=x)

    @staticmethod
    def mul(xs, ys):
        return [x.mul(y) for x, y in zip(xs, ys)]

    @staticmethod
    def copy_(xs, ys) -> None:
        for x, y in zip(xs, ys):
            x.copy_(y)

    @staticmethod
    def sign(xs):
        return [x.sign() for x in xs]

    @staticmethod
    def sign_(xs) -> None:
        for x in xs:
            x.sign_()

    @staticmethod
    def clamp_(xs, low: Scalar, high: Scalar) -> None:
        for x in xs:
            x.clamp_(low, high)

    @staticmethod
    def masked_fill_(xs, masks, value: Scalar) -> None:
        """``x[mask] = value`` (torch's index_put, on both of its paths), as ``masked_fill_``:
        the same elements get the same value rounded into the dtype, and it is pointwise, so a
        DTensor shard fills its own elements (index_put needs a placement change there)."""
        for x, mask in zip(xs, masks):
            x.masked_fill_(mask, value)

    @staticmethod
    def step_scalars(steps) -> list[float]:
        """Steps as Python doubles: formulas of the step run in double, as torch's for-loop."""
        return [step.item() for step in steps]

    @staticmethod
    def decay_and_descend_(params, grads, etas, lambd: float) -> None:
        """ASGD's ``p <- p * (1 - lambd * eta) - eta * g`` as torch's for-loop writes it: a
        multiply by a Python-double factor, then one fused ``add_`` with ``alpha=-eta``."""
        for p, g, eta in zip(params, grads, etas):
            eta_value = eta.item()
            p.mul_(1 - lambd * eta_value)
            p.add_(g, alpha=-eta_value)

    @staticmethod
    def average_(averages, params, weights) -> None:
        """ASGD's ``ax <- ax + mu * (p - ax)``: torch's for-loop rounds the product before the
        add, and copies ``p`` outright while ``mu`` is 1 (before averaging starts)."""
        for ax, p, mu in zip(averages, params, weights):
            if mu.item() != 1:
                ax.add_(p.sub(ax).mul_(mu))
            else:
                ax.copy_(p)

    @staticmethod
    def abs(xs):
        return [x.abs() for x in xs]

    @staticmethod
    def add_scalar(xs, value: Scalar):
        return [x.add(value) for x in xs]

    @staticmethod
    def mul_tensors_(xs, ys) -> None:
        for x, y in zip(xs, ys):
            x.mul_(y)

    @staticmethod
    def div_tensors_(xs, ys) -> None:
        for x, y in zip(xs, ys):
            x.div_(y)

    @staticmethod
    def as_complex_like(xs, params):
        """Real-viewed ``xs`` back as complex where the param is complex: torch's for-loop
        Adadelta adds its update to a complex param in complex arithmetic, where ``alpha * y``
        rounds before the add (the real view would fuse them into one rounding)."""
        return [torch.view_as_complex(x) if p.is_complex() else x for x, p in zip(xs, params)]

    @staticmethod
    def lr_for_step_sizes(lr):
        """The lr that Adamax's and NAdam's step sizes are computed from. torch's for-loop keeps
        a tensor lr as the 0-d tensor, so each operation on it rounds to its dtype (float32)."""
        return lr

    @staticmethod
    def sqrt_of_ratio(xs, divisors: list):
        """``sqrt(x / d)`` as torch's for-loop NAdam computes it: divide, then take the root."""
        return [x.div(d).sqrt() for x, d in zip(xs, divisors)]

    @staticmethod
    def add_rectified_step_(
        params, exp_avgs, denoms, *, lr, bias_corrections1, bias_corrections2, rects
    ) -> None:
        """RAdam's ``p -= lr * m / bc1 * (r * sqrt(bc2) / denom if r > 0 else 1)`` as torch's
        for-loop writes it: left to right in tensor ops (``scalar / denom`` is a reciprocal and a
        multiply), then one ``add_(alpha=-1)``. ``r = 0`` means not rectified."""
        for p, m, denom, bc1, bc2, r in zip(
            params, exp_avgs, denoms, bias_corrections1, bias_corrections2, rects
        ):
            bias_corrected = m / bc1
            if r > 0:
                p.add_(bias_corrected * lr * (bc2**0.5 / denom) * r, alpha=-1.0)
            else:
                p.add_(bias_corrected * lr, alpha=-1.0)

    @staticmethod
    def increment_(steps) -> None:
        for step in steps:
            step += 1


class ForeachOps:
    """A whole bucket of same-device, same-dtype tensors per kernel launch."""

    name = "foreach"
    #: torch's foreach path views complex tensors as real before any arithmetic.
    views_complex_up_front = True
    running_product_last = True

    @staticmethod
    def as_real(*lists):
        return [list(tensors) for tensors in lists]  # already real: see views_complex_up_front

    @staticmethod
    def neg(xs):
        return list(torch._foreach_neg(xs))

    @staticmethod
    def clone(xs):
        return [x.detach().clone() for x in xs]

    @staticmethod
    def add(xs, ys, *, alpha: Scalar = 1):
        return list(torch._foreach_add(xs, ys, alpha=alpha))

    @staticmethod
    def add_(xs, ys, *, alpha: Scalar = 1) -> None:
        torch._foreach_add_(xs, ys, alpha=alpha)

    @staticmethod
    def add_scalar_(xs, value: ScalarOrPerTensor) -> None:
        torch._foreach_add_(xs, value)

    @staticmethod
    def mul_(xs, value: ScalarOrPerTensor) -> None:
        torch._foreach_mul_(xs, value)

    @staticmethod
    def div_(xs, value: ScalarOrPerTensor) -> None:
        torch._foreach_div_(xs, value)

    @staticmethod
    def div(xs, value: ScalarOrPerTensor) -> list[Tensor]:
        return list(torch._foreach_div(xs, value))

    @staticmethod
    def lerp_(xs, ys, weight: ScalarOrPerTensor) -> None:
        torch._foreach_lerp_(xs, ys, weight)

    @staticmethod
    def addcmul(xs, ys, zs, *, value: Scalar = 1):
        return list(_foreach_addc(torch._foreach_addcmul, xs, ys, zs, value))

    @staticmethod
    def addcmul_(xs, ys, zs, *, value: ScalarOrPerTensor = 1, positional=False) -> None:
        """``positional``: pass ``value`` as torch's NAdam and RAdam foreach paths do, where a
        0-d tensor (from tensor betas) binds to the packed ``scalars`` overload and is refused
        (``RuntimeError: Expected packed scalar Tensor to be of dimension 1``)."""
        if positional and not isinstance(value, list):
            torch._foreach_addcmul_(xs, ys, zs, value)
        else:
            _foreach_addc(torch._foreach_addcmul_, xs, ys, zs, value)

    @staticmethod
    def addcdiv_(xs, ys, zs, *, value: ScalarOrPerTensor = 1) -> None:
        _foreach_addc(torch._foreach_addcdiv_, xs, ys, zs, value)

    @staticmethod
    def addcdiv_scaled_(xs, ys, zs, scale: ScalarOrPerTensor, *, ys_are_scratch=False) -> None:
        """torch's foreach path scales ``y`` first, in place when ``y`` is its own scratch copy.

        Both choices matter in float16/bfloat16: the scaling is one more rounding, and the
        in-place foreach kernel rounds the scalar to the tensor's dtype, the out-of-place one not.
        """
        if ys_are_scratch:
            torch._foreach_mul_(ys, scale)
            scaled = ys
        else:
            scaled = torch._foreach_mul(ys, scale)
        torch._foreach_addcdiv_(xs, scaled, zs)

    @staticmethod
    def sqrt(xs):
        return list(torch._foreach_sqrt(xs))

    @staticmethod
    def sqrt_(xs) -> None:
        torch._foreach_sqrt_(xs)

    @staticmethod
    def maximum_(xs, ys) -> None:
        torch._foreach_maximum_(xs, ys)

    @staticmethod
    def mul(xs, ys):
        return list(torch._foreach_mul(xs, ys))

    @staticmethod
    def copy_(xs, ys) -> None:
        if any(is_dtensor(x) for x in xs):  # _foreach_copy_ has no DTensor sharding rule
            ForLoopOps.copy_(xs, ys)
        else:
            torch._foreach_copy_(xs, ys)

    @staticmethod
    def sign(xs):
        return list(torch._foreach_sign(xs))

    @staticmethod
    def sign_(xs) -> None:
        torch._foreach_sign_(xs)

    # torch's foreach path clamps and masks one tensor at a time too (both ops are exact).
    clamp_ = staticmethod(ForLoopOps.clamp_)
    masked_fill_ = staticmethod(ForLoopOps.masked_fill_)

    @staticmethod
    def step_scalars(steps) -> list[Tensor]:
        """Steps as the 0-d tensors themselves: torch's foreach path evaluates formulas of the
        step (ASGD's eta) in the step's dtype, float32 tensor ops, not in Python doubles."""
        return list(steps)

    @staticmethod
    def decay_and_descend_(params, grads, etas, lambd: float) -> None:
        """ASGD's ``p <- p * (1 - lambd * eta) - eta * g`` in torch's foreach form
        ``p <- p - (g + lambd * p) * eta``: other roundings than the for-loop's, with ``eta``
        the 0-d tensor rather than its value."""
        intermediate = torch._foreach_add(grads, params, alpha=lambd)
        torch._foreach_addcmul_(params, intermediate, etas, value=-1)

    @staticmethod
    def average_(averages, params, weights) -> None:
        """ASGD's ``ax <- ax + mu * (p - ax)`` as one ``addcmul`` (a fused multiply-add),
        also while ``mu`` is 1: torch's foreach path never copies ``p``."""
        differences = torch._foreach_sub(params, averages)
        torch._foreach_addcmul_(averages, differences, weights)

    @staticmethod
    def abs(xs):
        return list(torch._foreach_abs(xs))

    @staticmethod
    def add_scalar(xs, value: Scalar):
        return list(torch._foreach_add(xs, value))

    @staticmethod
    def mul_tensors_(xs, ys) -> None:
        torch._foreach_mul_(xs, ys)

    @staticmethod
    def div_tensors_(xs, ys) -> None:
        torch._foreach_div_(xs, ys)

    @staticmethod
    def as_complex_like(xs, params):
        """Unchanged: torch's foreach path updates complex params through their real views."""
        return list(xs)

    @staticmethod
    def lr_for_step_sizes(lr):
        """torch's foreach Adamax and NAdam compute their step sizes from ``lr.item()``, in
        Python doubles: a tensor lr is rounded once, not at every operation."""
        return lr.item() if isinstance(lr, Tensor) else lr

    @staticmethod
    def sqrt_of_ratio(xs, divisors: list):
        """``sqrt(x / d)`` as torch's foreach NAdam computes it: ``sqrt(x) / sqrt(d)``, with
        ``sqrt(d)`` in Python doubles. Other roundings than the for-loop's ``sqrt(x / d)``."""
        roots = list(torch._foreach_sqrt(xs))
        torch._foreach_div_(roots, [d**0.5 for d in divisors])
        return roots

    @staticmethod
    def add_rectified_step_(
        params, exp_avgs, denoms, *, lr, bias_corrections1, bias_corrections2, rects
    ) -> None:
        """RAdam's step as torch's foreach path writes it, for rectified and unrectified params
        alike: ``p += m * (1 / (denom / s) + u)`` with one ``addcmul``, where
        ``s = -sqrt(bc2) * lr * r / bc1`` and ``u = -lr / bc1`` only while ``r`` is 0 (then
        ``s`` is -0.0 and ``1 / (denom / s)`` is -0.0). A tensor lr stays a tensor in ``s`` and
        ``u``. Consumes ``denoms``, divided in place as torch divides its scratch buffer."""
        unrect_sizes = [
            (lr * (0 if r > 0 else 1.0) / bc1) * -1 for r, bc1 in zip(rects, bias_corrections1)
        ]
        rect_sizes = [
            (bc2**0.5) * (lr * r / bc1) * -1
            for r, bc1, bc2 in zip(rects, bias_corrections1, bias_corrections2)
        ]
        torch._foreach_div_(denoms, rect_sizes)
        torch._foreach_reciprocal_(denoms)
        torch._foreach_add_(denoms, unrect_sizes)
        torch._foreach_addcmul_(params, exp_avgs, denoms)

    @staticmethod
    def increment_(steps) -> None:
        torch._foreach_add_(steps, 1)


FOR_LOOP = ForLoopOps()
FOREACH = ForeachOps()
Ops = ForLoopOps | ForeachOps


def decay_weights(ops: Ops, params, grads, lr, weight_decay: float, decoupled: bool):
    """Adam's, NAdam's and RAdam's weight decay: ``p *= 1 - lr*wd`` in place (decoupled) or
    the L2 term in a new gradient list; returns the gradients the update goes on with."""
    if weight_decay == 0:
        return grads
    if decoupled:
        ops.mul_(params, 1 - lr * weight_decay)
        return grads
    return ops.add(grads, params, alpha=weight_decay)


def step_counts(steps: Sequence[Tensor]) -> list[float]:
    """Each parameter's step as a Python double, where torch does its bias-correction scalars."""
    return [step.item() for step in steps]

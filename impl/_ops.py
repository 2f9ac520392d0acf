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

from collections.abc import Sequence

import torch
from torch import Tensor

Scalar = float | int | Tensor
ScalarOrPerTensor = Scalar | list


def _per_tensor(value: ScalarOrPerTensor, count: int) -> Sequence:
    return value if isinstance(value, list) else [value] * count


def _scalar_or_list(value: ScalarOrPerTensor) -> dict:
    """Keyword for torch's foreach addc* overloads: a 0-d tensor ``value`` must not be taken
    for the packed 1-d ``scalars`` tensor, a list is the per-tensor ``scalars`` overload."""
    return {"scalars": value} if isinstance(value, list) else {"value": value}


def _as_real(t):
    return torch.view_as_real(t) if t is not None and t.is_complex() else t


class ForLoopOps:
    """One tensor at a time, through the kernels of torch's single-tensor (for-loop) path."""

    name = "for-loop"
    #: torch's for-loop path applies weight decay in complex arithmetic, then views as real.
    views_complex_up_front = False

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
    def lerp_(xs, ys, weight: ScalarOrPerTensor) -> None:
        for x, y, w in zip(xs, ys, _per_tensor(weight, len(xs))):
            x.lerp_(y, w)

    @staticmethod
    def addcmul(xs, ys, zs, *, value: Scalar = 1):
        return [x.addcmul(y, z, value=value) for x, y, z in zip(xs, ys, zs)]

    @staticmethod
    def addcmul_(xs, ys, zs, *, value: ScalarOrPerTensor = 1) -> None:
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
    def increment_(steps) -> None:
        for step in steps:
            step += 1


class ForeachOps:
    """A whole bucket of same-device, same-dtype tensors per kernel launch."""

    name = "foreach"
    #: torch's foreach path views complex tensors as real before any arithmetic.
    views_complex_up_front = True

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
    def lerp_(xs, ys, weight: ScalarOrPerTensor) -> None:
        torch._foreach_lerp_(xs, ys, weight)

    @staticmethod
    def addcmul(xs, ys, zs, *, value: Scalar = 1):
        return list(torch._foreach_addcmul(xs, ys, zs, **_scalar_or_list(value)))

    @staticmethod
    def addcmul_(xs, ys, zs, *, value: ScalarOrPerTensor = 1) -> None:
        torch._foreach_addcmul_(xs, ys, zs, **_scalar_or_list(value))

    @staticmethod
    def addcdiv_(xs, ys, zs, *, value: ScalarOrPerTensor = 1) -> None:
        torch._foreach_addcdiv_(xs, ys, zs, **_scalar_or_list(value))

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
    def increment_(steps) -> None:
        torch._foreach_add_(steps, 1)


FOR_LOOP = ForLoopOps()
FOREACH = ForeachOps()
Ops = ForLoopOps | ForeachOps


def step_counts(steps: Sequence[Tensor]) -> list[float]:
    """Each parameter's step as a Python double, where torch does its bias-correction scalars."""
    return [step.item() for step in steps]

"""ULP distances between tensors, in the dtype they are stored in.

Two measures:

- ``ulp_distance``: the number of representable values between ``a`` and ``b`` (the floats are
  mapped to ordered integers through their bit patterns and subtracted). ``+0`` and ``-0`` are
  0 apart, two NaNs are 0 apart, a NaN against anything else is ``inf`` apart. float16 and
  bfloat16 go through their int16 views; complex tensors through ``view_as_real``.
- ``scaled_ulp_error``: ``|actual - exact|`` in units of the dtype's spacing at
  ``scale = max(|exact|, |reference|)``. For a result ``x' = x - u`` with ``reference = x`` this
  never exceeds ``ulp_distance`` (same binade) and stays meaningful under cancellation, where
  ``x'`` is far smaller than the operands it came from. Used against the high-precision spec.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_INT_VIEW = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}
# (significand bits including the hidden one, exponent of the smallest normal)
_FORMAT = {
    torch.float16: (11, -14),
    torch.bfloat16: (8, -126),
    torch.float32: (24, -126),
    torch.float64: (53, -1022),
}


def as_real(t: Tensor) -> Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


def _ordered(t: Tensor) -> Tensor:
    """Bit patterns as integers that order like the floats (sign-magnitude to two's complement)."""
    bits = t.contiguous().view(_INT_VIEW[t.dtype]).to(torch.int64)
    width = 8 * t.element_size()
    magnitude = bits & ((1 << (width - 1)) - 1)
    return torch.where(bits < 0, -magnitude, magnitude)


def ulp_distance(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise ULP distance as float64 (exact below 2**53, ``inf`` for NaN vs number)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        raise ValueError(f"cannot compare {a.dtype}{tuple(a.shape)} with {b.dtype}{tuple(b.shape)}")
    a, b = as_real(a.detach()).cpu(), as_real(b.detach()).cpu()
    oa, ob = _ordered(a), _ordered(b)
    # same sign: exact in int64; opposite signs: |oa| + |ob| could overflow int64, and is huge
    same = (oa >= 0) == (ob >= 0)
    dist = torch.where(same, (oa - ob).abs().double(), oa.abs().double() + ob.abs().double())
    a_nan, b_nan = a.isnan(), b.isnan()
    dist = torch.where(a_nan & b_nan, 0.0, dist)
    return torch.where(a_nan ^ b_nan, math.inf, dist)


def spacing(x: Tensor, dtype: torch.dtype) -> Tensor:
    """The distance between adjacent ``dtype`` values at magnitude ``|x|`` (float64 tensor)."""
    precision, emin = _FORMAT[dtype]
    _, exponent = torch.frexp(x.double().abs())  # |x| = m * 2**e, m in [0.5, 1)
    exponent = torch.where(x == 0, emin, exponent.to(torch.int64) - 1).clamp(min=emin)
    return torch.ldexp(torch.ones_like(x, dtype=torch.float64), exponent - (precision - 1))


def scaled_ulp_error(actual: Tensor, exact: Tensor, reference: Tensor, dtype) -> Tensor:
    """``|actual - exact|`` in ``dtype`` ULPs at ``max(|exact|, |reference|)`` (float64 tensor).

    ``actual`` and ``exact`` hold ``dtype`` values (any storage dtype); NaN/inf follow
    ``ulp_distance``'s conventions.
    """
    actual, exact, reference = (t.detach().cpu().double() for t in (actual, exact, reference))
    scale = torch.maximum(exact.abs(), reference.abs())
    err = (actual - exact).abs() / spacing(scale, dtype)
    err = torch.where(actual == exact, 0.0, err)  # also equal infinities
    a_nan, e_nan = actual.isnan(), exact.isnan()
    err = torch.where(a_nan & e_nan, 0.0, err)
    return torch.where(a_nan ^ e_nan, math.inf, err)


def max_or_zero(t: Tensor) -> float:
    return float(t.max()) if t.numel() else 0.0

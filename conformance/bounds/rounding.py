"""The rounding model every derived bound shares: unit roundoff and compounded roundings."""

from __future__ import annotations

import math

import torch


def unit_roundoff(dtype: torch.dtype) -> float:
    """``u = 2**-p``: the largest relative error of one correctly rounded operation."""
    return torch.finfo(dtype).eps / 2


def gamma(k: float, dtype: torch.dtype) -> float:
    """``gamma_k / u``: the relative error of ``k`` compounded roundings, in units of ``u``
    (Higham, *Accuracy and Stability of Numerical Algorithms*, Lemma 3.1). inf where
    ``k u >= 1``: the lemma bounds nothing there (a caller judging by it must rule such cases
    out, as ``factored_moments`` does for a bfloat16 RMS over hundreds of elements)."""
    u = unit_roundoff(dtype)
    return k / (1 - k * u) if k * u < 1 else math.inf

"""Correct rounding of exact (mpmath) values into IEEE binary formats.

mpmath's own ``float(mpf)`` is not correctly rounded near subnormals and has no notion of
float16/bfloat16, so rounding is done here on the exact integer mantissa and exponent that
every finite ``mpf`` carries: round-half-even, gradual underflow, overflow to ±inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mpmath


@dataclass(frozen=True)
class BinaryFormat:
    """An IEEE-754 binary format: ``precision`` significand bits (hidden bit included)."""

    name: str
    precision: int
    emin: int  # exponent of the smallest normal number
    emax: int  # exponent of the largest finite number

    @property
    def max_finite(self) -> float:
        return math.ldexp(2**self.precision - 1, self.emax - self.precision + 1)

    @property
    def smallest_subnormal(self) -> float:
        return math.ldexp(1.0, self.emin - self.precision + 1)


FORMATS = {
    "float16": BinaryFormat("float16", 11, -14, 15),
    "bfloat16": BinaryFormat("bfloat16", 8, -126, 127),
    "float32": BinaryFormat("float32", 24, -126, 127),
    "float64": BinaryFormat("float64", 53, -1022, 1023),
}


def binary_format(dtype) -> BinaryFormat:
    """Accepts ``torch.float32``-like dtypes, numpy dtypes and strings such as ``"bfloat16"``."""
    name = str(dtype).removeprefix("torch.")
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(
            f"unsupported dtype {dtype!r}; expected one of {sorted(FORMATS)}"
        ) from None


def _quantum_exponent(value: mpmath.mpf, fmt: BinaryFormat) -> int:
    """Exponent of the ulp of ``fmt`` at ``value`` (subnormals share the emin quantum)."""
    _, _, exp, bc = value._mpf_
    return max(exp + bc - 1, fmt.emin) - (fmt.precision - 1)


def _exact_mpf(value) -> mpmath.mpf:
    # mpf(mpf) would re-round to the ambient precision: keep values that are already exact
    return value if isinstance(value, mpmath.mpf) else mpmath.mpf(value)


def round_to_format(value, dtype, zero_sign: float = 1.0) -> float:
    """Round an mpmath number once, to nearest-even, into ``dtype``; return it as a Python float.

    The result is exactly representable in ``dtype`` (and hence in float64). mpmath has no
    negative zero, so an exact zero takes the sign of ``zero_sign``; a nonzero value that
    underflows keeps its own sign, as IEEE requires.
    """
    fmt = binary_format(dtype)
    value = _exact_mpf(value)
    if mpmath.isnan(value):
        return math.nan
    if mpmath.isinf(value):
        return math.inf if value > 0 else -math.inf
    if not value:
        return math.copysign(0.0, zero_sign)
    sign, man, exp, _ = value._mpf_
    shift = _quantum_exponent(value, fmt) - exp
    if shift <= 0:
        rounded, quantum = man << -shift, exp + shift
    else:
        rounded, rest = divmod(man, 1 << shift)
        half = 1 << (shift - 1)
        if rest > half or (rest == half and rounded & 1):
            rounded += 1
        quantum = exp + shift
    top = fmt.emax - fmt.precision + 1  # quantum of the largest binade
    if quantum > top or (quantum == top and rounded >= 1 << fmt.precision):
        result = math.inf
    else:
        result = math.ldexp(rounded, quantum) if rounded else 0.0
    return -result if sign else result


def near_midpoint(value, dtype, bits: int) -> bool:
    """True when ``value`` (known to ``bits`` bits) is too close to a rounding boundary to round.

    A value computed with relative error below 2**-bits can round differently from the true one
    only if it lies within that error of a midpoint between two neighbours in ``dtype``. Such
    values are recomputed at higher precision (Ziv's strategy); exact midpoints stay hard until
    the extra precision confirms them.
    """
    fmt = binary_format(dtype)
    value = _exact_mpf(value)
    if bits <= fmt.precision + 1:
        return True  # the error spans whole ulps of dtype: nothing can be decided
    if not mpmath.isfinite(value) or not value:
        return False
    _, man, exp, bc = value._mpf_
    quantum = _quantum_exponent(value, fmt)
    # distance to the nearest midpoint, in units of 2**exp (exact integer arithmetic)
    if quantum - exp <= 0:
        return False  # exactly representable: far from any midpoint
    scaled = man % (1 << (quantum - exp))
    midpoint = 1 << (quantum - exp - 1)
    error_bound = 1 << max(bc - bits, 0)
    return abs(scaled - midpoint) <= error_bound


def ulp_distance(a: float, b: float, dtype) -> float:
    """Number of ``dtype`` values strictly between ``a`` and ``b`` plus one (0 when equal).

    Both NaN counts as equal; NaN against a number is infinitely far.
    """
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    if a == b:
        return 0.0
    if math.isinf(a) or math.isinf(b):
        return math.inf
    fmt = binary_format(dtype)

    def ordinal(x: float) -> int:
        # count of representable magnitudes below |x|: exact via the format's quantum grid
        mag = abs(x)
        if mag == 0:
            return 0
        e = max(math.frexp(mag)[1] - 1, fmt.emin)
        steps = int(math.ldexp(mag, fmt.precision - 1 - e))  # exact: mag lies on the grid
        index = (e - fmt.emin) * 2 ** (fmt.precision - 1) + steps
        return index if x > 0 else -index

    return float(abs(ordinal(a) - ordinal(b)))

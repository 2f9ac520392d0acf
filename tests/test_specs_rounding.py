"""Correct rounding of exact values into float16/bfloat16/float32/float64."""

import math

import mpmath
import numpy as np
import pytest
import torch

from specs import round_to_format, ulp_distance

TORCH = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def exact(expression: str) -> mpmath.mpf:
    with mpmath.workdps(100):
        return mpmath.mpf(eval(expression, {"mp": mpmath}))


@pytest.mark.parametrize(
    ("value", "dtype", "expected"),
    [
        ("1 + mp.ldexp(1, -11)", "float16", 1.0),  # tie: to even
        ("1 + 3 * mp.ldexp(1, -11)", "float16", 1 + 2**-9),  # tie: up to even
        ("1 + mp.ldexp(1, -11) + mp.ldexp(1, -60)", "float16", 1 + 2**-10),  # above the tie
        ("65519", "float16", 65504.0),
        ("65520", "float16", math.inf),  # midpoint to 2**16 rounds to even: overflow
        ("-1e6", "float16", -math.inf),
        ("mp.ldexp(1, -24)", "float16", 2**-24),  # smallest subnormal
        ("mp.ldexp(1, -25)", "float16", 0.0),  # half of it: ties to even zero
        ("mp.ldexp(3, -25)", "float16", 2**-23),
        ("mp.ldexp(1, -25) + mp.ldexp(1, -80)", "float16", 2**-24),
        ("1 + mp.ldexp(1, -8)", "bfloat16", 1.0),
        ("mp.ldexp(1, -134)", "bfloat16", 0.0),
        ("mp.ldexp(3, -134)", "bfloat16", 2**-132),
        ("1 + mp.ldexp(1, -24)", "float32", 1.0),
        ("mp.ldexp(1, -150) * 1.5", "float32", 2**-149),
        ("1 + mp.ldexp(1, -53)", "float64", 1.0),
        ("1 + mp.ldexp(1, -53) + mp.ldexp(1, -200)", "float64", 1 + 2**-52),
        ("mp.ldexp(1, -1075)", "float64", 0.0),
        ("mp.ldexp(3, -1075)", "float64", 2**-1073),
        ("mp.mpf(2) ** 1024", "float64", math.inf),
        ("1 / mp.mpf(3)", "float64", 1 / 3),
    ],
)
def test_known_roundings(value, dtype, expected):
    assert round_to_format(exact(value), dtype) == expected


def test_signed_zero_and_non_finite():
    assert math.copysign(1, round_to_format(exact("-mp.ldexp(1, -30)"), "float16")) == -1
    assert math.copysign(1, round_to_format(mpmath.mpf(0), "float32", zero_sign=-1.0)) == -1
    assert math.isnan(round_to_format(mpmath.mpf("nan"), "bfloat16"))
    assert round_to_format(mpmath.mpf("-inf"), "float16") == -math.inf


@pytest.mark.parametrize("dtype", sorted(TORCH))
def test_agrees_with_torch_rounding_of_doubles(dtype):
    # torch's double -> low-precision casts are round-to-nearest-even, an independent reference
    rng = np.random.default_rng(1)
    values = np.concatenate(
        [
            rng.standard_normal(300) * 10.0 ** rng.integers(-45, 40, 300),
            rng.standard_normal(100) * 2.0**-20,  # float16 subnormals
        ]
    )
    expected = torch.tensor(values, dtype=torch.float64).to(TORCH[dtype]).double().numpy()
    got = np.array([round_to_format(mpmath.mpf(float(v)), dtype) for v in values])
    np.testing.assert_array_equal(got, expected)


def test_ulp_distance():
    assert ulp_distance(1.0, float(np.nextafter(np.float32(1), np.float32(2))), "float32") == 1
    assert ulp_distance(-(2**-24), 2**-24, "float16") == 2  # across zero
    assert ulp_distance(0.0, -0.0, "float64") == 0
    assert ulp_distance(65504.0, 32768.0, "float16") == 1023
    assert ulp_distance(math.nan, math.nan, "float16") == 0
    assert ulp_distance(math.nan, 1.0, "float16") == math.inf

"""The ULP helpers the whole harness trusts."""

import math

import pytest
import torch

from conformance.core.ulp import scaled_ulp_error, spacing, ulp_distance

FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _d(a, b, dtype):
    return ulp_distance(torch.tensor([a], dtype=dtype), torch.tensor([b], dtype=dtype)).item()


_INT = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_adjacent_floats_are_one_apart(dtype):
    for x in (1.0, -3.5, 0.0, 1e-3, 2.0**-20):
        a = torch.tensor([x], dtype=dtype)
        bits = a.view(_INT[dtype])
        b = (bits + (1 if x >= 0 else -1)).view(dtype)  # the next float away from zero
        assert ulp_distance(a, b).item() == 1, (x, b)
        assert ulp_distance(b, a).item() == 1


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_signed_zeros_nan_and_sign_crossing(dtype):
    assert _d(0.0, -0.0, dtype) == 0
    assert _d(math.nan, math.nan, dtype) == 0
    assert _d(math.nan, 1.0, dtype) == math.inf
    assert _d(1.0, math.nan, dtype) == math.inf
    tiny = torch.finfo(dtype).smallest_normal
    sub = float(torch.tensor(tiny, dtype=dtype).item()) / 2  # a subnormal
    assert _d(sub, -sub, dtype) == 2 * _d(sub, 0.0, dtype)


def test_float64_distances_are_exact_beyond_2_53():
    a = torch.tensor([0.7102252986893803], dtype=torch.float64)
    assert ulp_distance(a, torch.nextafter(a, torch.tensor([1.0], dtype=torch.float64))).item() == 1


def test_complex_goes_through_view_as_real():
    a = torch.tensor([1 + 2j], dtype=torch.complex64)
    b = torch.complex(
        torch.tensor([1.0]), torch.nextafter(torch.tensor([2.0]), torch.tensor([3.0]))
    )
    assert ulp_distance(a, b).tolist() == [[0.0, 1.0]]


def test_dtype_mismatch_is_an_error():
    with pytest.raises(ValueError, match="cannot compare"):
        ulp_distance(torch.zeros(1), torch.zeros(1, dtype=torch.float64))


def test_spacing_and_scaled_error():
    assert spacing(torch.tensor([1.0]), torch.float32).item() == 2.0**-23
    assert spacing(torch.tensor([0.0]), torch.float32).item() == 2.0**-149
    assert spacing(torch.tensor([1.0]), torch.bfloat16).item() == 2.0**-7
    # cancellation: x' = 1 - (1 - 2**-20) is tiny, but an error of one float32 ULP of the
    # operands is one ULP at scale, not millions of ULPs of x'
    err = scaled_ulp_error(
        torch.tensor([2.0**-20 + 2.0**-23]),
        torch.tensor([2.0**-20]),
        torch.tensor([1.0]),
        torch.float32,
    )
    assert err.item() == 1.0

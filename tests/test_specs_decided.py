"""Decisions torch takes in floating point are taken the same way by the exact oracle.

RAdam's rectification is decided by ``rho_t > 5`` in Python doubles, Rprop's factor by the sign
of ``g*prev`` rounded into the dtype (an underflow to 0 keeps the step), NAdam's ``mu_product``
is torch's float32 product. ``Spec.exact()`` replaces each decision by its exact meaning.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specs.nadam import nadam
from specs.radam import radam
from specs.rprop import rprop


def _rprop_step(dtype, grad, prev):
    spec = rprop()
    state = {"step": 1.0, "prev": np.array([prev]), "step_size": np.array([0.5])}
    hyper = {**spec.defaults, "etaminus": 0.5, "etaplus": 2.0}
    return spec, spec.step_exact(np.array([1.0]), np.array([grad]), state, hyper, dtype), hyper


def test_rprop_factor_is_one_where_the_product_underflows_in_the_dtype():
    # 2**-13 * 2**-13 = 2**-26 is below float16's smallest subnormal (2**-24): torch's rounded
    # product is 0, "no sign change", factor 1; in float32 it is positive, factor eta+.
    tiny = 2.0**-13
    _, half, _ = _rprop_step("float16", tiny, tiny)
    _, single, _ = _rprop_step("float32", tiny, tiny)
    assert half["step_size"][0] == 0.5
    assert single["step_size"][0] == 1.0


def test_rprop_exact_variant_takes_the_exact_sign():
    tiny = 2.0**-13
    spec, _, hyper = _rprop_step("float16", tiny, tiny)
    state = {"step": 1.0, "prev": np.array([tiny]), "step_size": np.array([0.5])}
    exact = spec.exact().step_float64(np.array([1.0]), np.array([tiny]), state, hyper)
    assert exact["step_size"][0] == 1.0


@pytest.mark.parametrize(("step", "rectified"), [(4.0, False), (5.0, True)])
def test_radam_branch_is_torchs_double_precision_rho(step, rectified):
    # with the default betas, t = step + 1 = 5 is unrectified and t = 6 rectified (proofs)
    spec = radam()
    state = {"step": step, "exp_avg": np.array([0.5]), "exp_avg_sq": np.array([0.25])}
    out = spec.step_exact(np.array([1.0]), np.array([0.5]), state, spec.defaults, "float64")
    t = step + 1
    m = 0.9 * 0.5 + 0.1 * 0.5
    unrectified = 1.0 - 1e-3 * m / (1 - 0.9**t)
    assert (abs(out["param"][0] - unrectified) > 1e-12) == rectified


def test_nadam_mu_product_is_torchs_float32_product():
    spec = nadam()
    stored = np.float32(0.7)
    state = {
        "step": 2.0,
        "mu_product": np.array(stored),
        "exp_avg": np.array([0.1]),
        "exp_avg_sq": np.array([0.2]),
    }
    out = spec.step_exact(np.array([1.0]), np.array([0.5]), state, spec.defaults, "float64")
    p = torch.tensor(float(stored), dtype=torch.float32)
    p *= 0.9 * (1.0 - 0.5 * 0.96 ** (3.0 * 4e-3))  # torch's `mu_product *= mu`
    assert out["mu_product"] == p.item()
    exact = spec.exact().step_float64(np.array([1.0]), np.array([0.5]), state, spec.defaults)
    assert exact["mu_product"] != p.item()  # the exact product is not a float32


def test_nadam_exact_update_reads_the_product_once():
    """``exact()`` keeps the update's Π_t the stored product: with a float64 mu_product (default
    dtype float64, so torch computes Π_t in double), the exact spec's first step from a fresh
    state is torch's within a few ULP. A substitution applied after the product's own rule
    divided by 1 − Π·μ_t² instead (-0.739 against torch's -1.0565 at lr = 1, eps = 0)."""
    spec = nadam().exact()
    hyper = {**spec.defaults, "lr": 1.0, "eps": 0.0}
    out = spec.step_float64(np.array([0.0]), np.array([0.5]), {}, hyper)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        p = torch.zeros(1, dtype=torch.float64)
        p.grad = torch.full((1,), 0.5, dtype=torch.float64)
        torch.optim.NAdam([p], lr=1.0, eps=0.0).step()
    finally:
        torch.set_default_dtype(previous)
    assert out["param"][0] == pytest.approx(p.item(), rel=1e-14)

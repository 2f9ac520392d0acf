"""The symbolic proofs hold, and ``python -m specs`` reports them."""

import subprocess
import sys

import pytest
import sympy

from specs import ALL_SPECS, VARIANTS
from specs.proofs import ALL_PROOFS, nesterov_lr_schedule


@pytest.mark.parametrize("proof", ALL_PROOFS, ids=lambda proof: proof.__name__)
def test_proof_holds(proof):
    result = proof()
    assert result.proved, f"{result.name}: residual {result.residual}"


def test_lr_schedule_derives_the_rescaling_and_the_gap():
    result = nesterov_lr_schedule()
    eta0, eta1 = sympy.symbols("eta0 eta1", positive=True)
    assert result.derived["buffer_rescale"].equals(eta0 / eta1)
    gap = result.derived["unrescaled_residual"]
    assert gap != 0
    assert gap.subs(eta1, eta0) == 0  # a constant learning rate closes the gap


def test_python_m_specs_lists_everything_and_proves_all():
    run = subprocess.run(
        [sys.executable, "-m", "specs"], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    for spec in ALL_SPECS:
        assert spec.name in run.stdout
    for name in VARIANTS:
        assert name in run.stdout
    assert run.stdout.count(": proved") == len(ALL_PROOFS)

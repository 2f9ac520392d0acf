"""Capabilities a subject may lack (sparse gradients, complex params, step(closure), a second
param group, a tensor lr, tensor betas) are declared, not failed: found by trying, honoured by
the draws, and a run fails on a lack only where nobody declared it (docs/harness.md#refusals).

The audits run in a subprocess, as a user runs them (tests/test_harness_refusals.py's runner),
on subjects written here in a plain textbook op order.
"""

from __future__ import annotations

import pytest
import torch

from conformance import registry
from conformance import subject as subjects_
from tests.test_harness_refusals import _run, _statuses


class DenseOnlyAdagrad(torch.optim.Adagrad):
    """Duchi et al.'s Adagrad as a textbook writes it, p -= lr_t * g / (sqrt(G) + eps), for dense
    gradients only: a sparse one raises. torch's constructor (its hyperparameters, validation
    and eager state), without a ``foreach`` argument: it runs one loop."""

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
        *,
        maximize=False,
    ):
        super().__init__(
            params,
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            maximize=maximize,
        )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("DenseOnlyAdagrad takes dense gradients only")
                g = -p.grad if group["maximize"] else p.grad
                state = self.state[p]
                state["step"] += 1
                if group["weight_decay"] != 0:
                    g = g + group["weight_decay"] * p
                lr = group["lr"] / (1 + (float(state["step"]) - 1) * group["lr_decay"])
                state["sum"].add_(g * g)
                p.sub_(lr * g / (state["sum"].sqrt() + group["eps"]))
        return loss


class OneGroupSGD(torch.optim.SGD):
    """torch's SGD that refuses a second param group, as a library with one global schedule
    might."""

    def add_param_group(self, param_group):
        if self.param_groups:
            raise ValueError("OneGroupSGD takes one param group")
        super().add_param_group(param_group)


class FloatBetasAdam(torch.optim.Adam):
    """torch's Adam that refuses betas given as tensors, as most libraries' Adams do."""

    @torch.no_grad()
    def step(self, closure=None):
        if any(torch.is_tensor(b) for group in self.param_groups for b in group["betas"]):
            raise TypeError("FloatBetasAdam takes float betas only")
        return super().step(closure)


HERE = "tests.test_harness_capabilities"
# the checks that draw what these subjects lack (the spec check draws sparse gradients and two
# groups where torch takes them) and one that does not: enough to see the draws honour a lack
CHECKS = "test_matches_spec or test_maximize_is_minimizing_negation"


def _audit(tmp_path, target: str, like: str, *extra: str):
    return _run(
        tmp_path,
        "-m",
        "conformance",
        "audit",
        target,
        f"--like={like}",
        "--dtypes",
        "float32",
        "--profile=dev",
        "--shrink-seconds=1",
        *extra,
        "-k",
        CHECKS,
    )


def _fresh(tmp_path, name: str):
    """A directory of its own for each run's reports."""
    (tmp_path / name).mkdir()
    return tmp_path / name


def _output(done) -> str:
    return done.stdout[-4000:] + done.stderr[-3000:]


@pytest.mark.parametrize(
    ("target", "like", "capability", "refusal"),
    [
        ("DenseOnlyAdagrad", "Adagrad", "sparse", "takes dense gradients only"),
        ("OneGroupSGD", "SGD", "groups", "takes one param group"),
        ("FloatBetasAdam", "Adam", "tensor_betas", "takes float betas only"),
    ],
)
def test_a_lack_found_by_trying_fails_the_run_until_declared(
    tmp_path, target, like, capability, refusal
):
    done, rows = _audit(_fresh(tmp_path, "undeclared"), f"{HERE}:{target}", like)
    output = _output(done)
    assert done.returncode == 1, f"an undeclared lack of {capability} passed:\n{output}"
    counts = _statuses(rows)
    assert counts["pass"] > 0 and counts["fail"] == 0, (
        f"the draws did not honour the lack of {capability} ({counts}): rows failed on it\n{output}"
    )
    assert "undeclared refusals" in output, f"no undeclared-refusal section:\n{output}"
    listed = f"lacks {capability}: the subject refuses"
    assert listed in output and refusal in output, (
        f"the lack is not listed with the subject's own refusal ({listed!r}, {refusal!r}):\n"
        f"{output}"
    )

    done, rows = _audit(
        _fresh(tmp_path, "declared"), f"{HERE}:{target}", like, f"--without={capability}"
    )
    output = _output(done)
    assert done.returncode == 0, f"a declared lack of {capability} failed the run:\n{output}"
    counts = _statuses(rows)
    assert counts["pass"] > 0 and counts["fail"] == counts["skip"] == 0, (counts, output)
    declared = f"{capability}, declared by the user (--without {capability})"
    assert declared in output, f"the summary does not say who declared the lack:\n{output}"
    report = (tmp_path / "declared" / "reports" / "audit.md").read_text()
    assert declared in report, f"reports/audit.md does not list the declared lack:\n{report}"


def test_without_complex_declares_every_complex_dtype(tmp_path):
    """torch's fused Adagrad refuses complex params: each complex row skips quoting that
    refusal, and the run passes only where the lack is declared."""
    args = ["torch.optim:Adagrad", "--kwargs", "fused=True", "--dtypes", "complex64", "complex128"]
    done, rows = _run(_fresh(tmp_path, "undeclared"), "-m", "conformance", "audit", *args)
    assert done.returncode == 1, f"an undeclared complex refusal passed:\n{_output(done)}"

    done, rows = _run(
        _fresh(tmp_path, "declared"), "-m", "conformance", "audit", *args, "--without=complex"
    )
    output = _output(done)
    assert done.returncode == 0, f"--without complex did not declare the lack:\n{output}"
    assert rows and {r["status"] for r in rows} == {"skip"}, _statuses(rows)
    for r in rows:
        assert r["dtype"] in registry.COMPLEX_DTYPES, r
        assert r["reason"].startswith("declared by the user (--without complex); "), r["reason"]
        assert "`fused=True` requires all the params to be floating point" in r["reason"], (
            f"the skip does not quote the subject's refusal: {r['reason']}"
        )


def test_a_subject_that_lacks_nothing_is_skipped_nowhere(tmp_path):
    for entry in registry.REGISTRY:
        found = subjects_.Subject(entry.impl, entry, contract="ulp").probed().found
        assert not found, f"impl.{entry.torch_name} as {entry.name} was found lacking {found}"
    done, rows = _run(
        tmp_path,
        "-m",
        "conformance",
        "audit",
        "impl:Adagrad",
        "--dtypes",
        "float32",
        "complex64",
        "--profile=dev",
        "-k",
        CHECKS + " or test_complex_is_real_pair",
    )
    output = _output(done)
    assert done.returncode == 0, output
    skipped = [r for r in rows if r["status"] == "skip"]
    assert rows and not skipped, f"a subject that lacks nothing skipped {skipped}"
    assert "capabilities lacking" not in output, output


@pytest.mark.parametrize(
    ("target", "without", "why"),
    [
        ("impl:SparseAdam", "sparse", "SparseAdam takes only sparse gradients"),
        ("impl:LBFGS", "closure", "LBFGS steps only with a closure"),
    ],
)
def test_declaring_the_point_of_every_row_lacking_is_refused_in_one_line(
    tmp_path, target, without, why
):
    # kept small: were the declaration accepted, the audit would run
    small = ["--dtypes", "float32", "--profile=dev", "-k", "test_matches_torch"]
    done, rows = _run(
        tmp_path, "-m", "conformance", "audit", target, f"--without={without}", *small
    )
    assert done.returncode == 2, f"exit {done.returncode}:\n{_output(done)}"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and why in lines[0], f"not one line naming why: {done.stderr!r}"
    assert not rows, "the refused audit ran rows"


def test_an_unknown_capability_is_refused_in_one_line(tmp_path):
    done, _ = _run(tmp_path, "-m", "conformance", "audit", "impl:Adam", "--without=sparce")
    assert done.returncode == 2, _output(done)
    assert "unknown capability 'sparce'" in done.stderr, done.stderr

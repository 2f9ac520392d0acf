"""The harness reaches what small params and plain ``step()`` calls never do: a kernel's vector
body (params of vector-sized lengths) and the fused path's GradScaler inputs (``grad_scale``,
``found_inf``). Each planted bug below is invisible on params of at most 27 elements or without
GradScaler, and must be caught by the check functions through the registry and strategies."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, Phase, find, settings
from torch import Tensor

import impl
import impl._fused as impl_fused
from conformance import checks, registry, strategies
from conformance.core.judge import ConformanceError
from conformance.subject import Subject

LANES = 32  # a float16 AVX-512 vector: the planted bug lives past the first one


class VectorBodySkipsDecayAdamW(torch.optim.AdamW):
    """torch's AdamW, except that elements past the 32nd of a param skip the weight decay (a
    kernel that forgets it in its vector body): they get torch's own step with weight_decay=0,
    the first 32 torch's step as it is. The moments do not depend on the decoupled decay, so
    both runs leave the same state."""

    @torch.no_grad()
    def step(self, closure=None):
        stepped = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not any(p.numel() > LANES for p in stepped):
            return super().step(closure)
        params = {p: p.clone() for p in stepped}
        states = {p: _copy(self.state[p]) for p in stepped}
        decays = [g["weight_decay"] for g in self.param_groups]
        for g in self.param_groups:
            g["weight_decay"] = 0.0
        super().step(closure)
        undecayed = {p: p.clone() for p in stepped}
        for g, decay in zip(self.param_groups, decays, strict=True):
            g["weight_decay"] = decay
        for p in stepped:  # the same step again from the same start, with the decay
            p.copy_(params[p])
            self.state[p] = states[p]
        loss = super().step(closure)
        for p in stepped:
            merged = p.flatten()
            merged[LANES:] = undecayed[p].flatten()[LANES:]
            p.copy_(merged.view_as(p))
        return loss


def _copy(state: dict) -> dict:
    return {k: v.clone() if isinstance(v, Tensor) else v for k, v in state.items()}


def _caught(broken: Subject, correct: Subject, dtype: str):
    """The spec check's smallest case that ``broken`` fails and ``correct`` (the same code
    without the planted defect) passes: what is caught is the defect, whatever else a bound
    under revision may reject."""
    strategy = strategies.cases(broken.entry, dtype, "cpu", purpose="spec", steps=(1, 1))

    def passes(subject, case) -> bool:
        try:
            checks.CHECKS["spec"](subject, case)
        except ConformanceError:
            return False
        return True

    return find(
        strategy,
        lambda case: not passes(broken, case) and passes(correct, case),
        settings=settings(
            max_examples=300,
            database=None,
            derandomize=True,
            deadline=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        ),
    )


def _elements(case) -> list[int]:
    return [p.values.size for p in case.params]


def test_a_bug_past_the_first_vector_is_caught_on_a_vector_sized_param():
    entry = registry.BY_NAME["AdamW"]
    broken = Subject(VectorBodySkipsDecayAdamW, entry, contract="ulp")
    case = _caught(broken, Subject(torch.optim.AdamW, entry, contract="ulp"), "float32")
    assert max(_elements(case)) > LANES, f"caught without a param past {LANES} elements: {case}"
    with pytest.raises(ConformanceError) as info:
        checks.CHECKS["spec"](broken, case)
    # the failure names an element of the vector body's second pass, which a reader can find
    assert any(f"({k},)" in str(info.value) for k in range(LANES, 301)), str(info.value)


# GradScaler mutants of impl's fused path: the gradient multiplied by the scale where it must be
# divided, and found_inf ignored (the step runs and counts)
def _times_scale(run):
    def planted(*args, grad_scale=None, **kwargs):
        return run(*args, grad_scale=None if grad_scale is None else 1 / grad_scale, **kwargs)

    return planted


def _ignores_found_inf(run):
    def planted(*args, found_inf=None, **kwargs):
        return run(*args, found_inf=None, **kwargs)

    return planted


class TimesScaleAdam(impl.Adam):
    """impl's fused Adam multiplying by ``grad_scale``."""

    def _fused_update(self, *args, **kwargs):
        with mock.patch.object(impl_fused, "run", _times_scale(impl_fused.run)):
            return super()._fused_update(*args, **kwargs)


class IgnoresFoundInfAdam(impl.Adam):
    """impl's fused Adam stepping where GradScaler found an inf."""

    def _fused_update(self, *args, **kwargs):
        with mock.patch.object(impl_fused, "run", _ignores_found_inf(impl_fused.run)):
            return super()._fused_update(*args, **kwargs)


@pytest.mark.parametrize(
    ("broken", "skipped"), [(TimesScaleAdam, False), (IgnoresFoundInfAdam, True)]
)
def test_a_fused_unscaling_bug_is_caught_through_the_grad_scaler_inputs(broken, skipped):
    entry = registry.BY_NAME["Adam"]
    correct = Subject(impl.Adam, entry, {"fused": True}, "ulp")
    case = _caught(Subject(broken, entry, {"fused": True}, "ulp"), correct, "float32")
    assert case.grad_scale is not None, f"caught without GradScaler's inputs: {case}"
    # the ignored found_inf shows on a skipped step; a wrong unscaling on a step that runs
    assert case.skipped(0) == float(skipped), case

"""The ``errors`` check: bad input is drawn (``conformance.bad_input``), torch.optim and impl pass
it, and planted optimizers that handle bad input differently from torch are caught.

Each planted class is torch.optim.Adam with one deliberate difference on bad input only (valid
input runs torch's own code), so only the ``errors`` check can see it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from conformance import bad_input, checks, registry
from conformance.core.case import Case, P
from conformance.core.judge import ConformanceError
from conformance.subject import Subject


class NanIgnoringAdam(torch.optim.Adam):
    """Steps on a copy of each gradient with NaN replaced by 0 and ±Inf clamped to the finite
    range; the caller's p.grad is put back untouched (so ``grad_untouched`` cannot see it)."""

    def step(self, closure=None):
        given_grads = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    given_grads.append((p, p.grad))
                    p.grad = p.grad.nan_to_num(0.0)
        try:
            return super().step(closure)
        finally:
            for p, g in given_grads:
                p.grad = g


class NegativeLrAdam(torch.optim.Adam):
    """Accepts a negative lr (as its absolute value) where torch refuses it."""

    def __init__(self, params, lr=1e-3, **kwargs):
        if isinstance(lr, float) and lr < 0:
            lr = -lr
        super().__init__(params, lr=lr, **kwargs)


class OwnMessageAdam(torch.optim.Adam):
    """Refuses an invalid lr with its own message."""

    def __init__(self, params, lr=1e-3, **kwargs):
        if isinstance(lr, float) and not lr >= 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        super().__init__(params, lr=lr, **kwargs)


class ParamZeroingAdam(torch.optim.Adam):
    """A step that raises first zeroes the params (a refused step that loses the params)."""

    def step(self, closure=None):
        try:
            return super().step(closure)
        except Exception:
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        p.zero_()
            raise


FIND = settings(
    max_examples=400,
    database=None,
    derandomize=True,
    deadline=None,
    phases=[Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)


def _caught(subject, strategy):
    def fails(drawn) -> bool:
        try:
            checks.CHECKS["errors"](subject, *drawn)
        except ConformanceError:
            return True
        return False

    return find(strategy, fails, settings=FIND)


def _replays(subject, case, defaults) -> str:
    """The failure message, after checking that its snippet replays it without Hypothesis."""
    with pytest.raises(ConformanceError) as info:
        checks.CHECKS["errors"](subject, case, defaults)
    message = str(info.value)
    snippet = message.split("Reproduce without Hypothesis:\n", 1)[1]
    with pytest.raises(ConformanceError):
        exec("\n".join(line[4:] for line in snippet.splitlines()), {})
    return message


ENTRIES = [e.name for e in registry.REGISTRY]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("side", ["torch", "impl"])
@pytest.mark.parametrize("name", ENTRIES)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_reference_and_impl_pass(name, side, dtype, data):
    """The baseline: torch.optim itself (its own reference) and impl pass, so the failures below
    come from the planted differences and not from a check that fails on anything."""
    entry = registry.BY_NAME[name]
    subject = Subject(entry.reference if side == "torch" else entry.impl, entry)
    strategy = bad_input.bad_cases(entry, dtype, "cpu")
    checks.CHECKS["errors"](subject, *data.draw(strategy))


@pytest.mark.parametrize("contract", ["bitwise", "ulp"])
def test_ignoring_a_nan_gradient_is_caught(contract):
    entry = registry.BY_NAME["Adam"]
    subject = Subject(NanIgnoringAdam, entry, contract=contract)
    case, defaults = _caught(subject, bad_input.nonfinite_grads(entry, "float32", "cpu"))
    poisoned = [g for step in case.grads for g in step if g is not None]
    assert any(not math.isfinite(x) for g in poisoned for x in g.reshape(-1)), case
    message = _replays(subject, case, defaults)
    # bitwise: torch's value; ulp: the exact value's class (errors._wrong_class)
    shown = ("expected {}, actual",) if contract == "bitwise" else ("({}), actual",)
    values = ("nan", "inf", "-inf") if contract == "bitwise" else ("NaN", "+inf", "-inf")
    assert any(s.format(v) in message for s in shown for v in values), message


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (NegativeLrAdam, "raised None, expected ValueError('Invalid learning rate: "),
        (OwnMessageAdam, "raised ValueError('lr must be >= 0, got "),
    ],
)
def test_validating_lr_differently_is_caught(broken, expected):
    entry = registry.BY_NAME["Adam"]
    subject = Subject(broken, entry)  # bitwise: torch on the subject's own path
    strategy = bad_input.bad_hyperparameter(entry, "float32", "cpu", keys=("lr",))
    case, defaults = _caught(subject, strategy)
    assert set(defaults) == {"lr"}, defaults  # torch validates the constructor's lr only
    message = _replays(subject, case, defaults)
    assert "at construction: " + expected in message, message


def test_a_refused_step_that_changes_params_is_caught():
    entry = registry.BY_NAME["Adam"]
    subject = Subject(ParamZeroingAdam, entry)
    case, defaults = _caught(subject, bad_input.bad_hyperparameter(entry, "float32", "cpu"))
    message = _replays(subject, case, defaults)
    assert "(refused), param" in message or "step 1, param" in message, message


def test_nan_and_tensor_values_replay_in_plain_torch():
    """The plain-torch reproduction defines nan/inf and builds tensor hyperparameters."""
    entry = registry.BY_NAME["Adam"]
    subject = Subject(OwnMessageAdam, entry)
    strategy = bad_input.bad_hyperparameter(entry, "float32", "cpu", keys=("lr",))
    case, defaults = _caught(subject, strategy)
    case = case.replace(groups=[{**g, "eps": "torch.tensor([0.1, 0.2])"} for g in case.groups])
    defaults = {"lr": math.nan}
    message = _replays(subject, case, defaults)
    plain = message.split("Reproduce in plain torch:\n", 1)[1].split("Reproduce without")[0]
    assert "from math import inf, nan" in plain and "torch.tensor([0.1, 0.2])" in plain
    script = "\n".join(line[4:] for line in plain.splitlines())
    with pytest.raises(ValueError, match="lr must be >= 0, got nan"):
        exec(script, {"__name__": "repro"})


def test_a_refusal_that_loses_nothing_where_torch_keeps_a_half_step_passes():
    """torch's foreach Adamax refuses eps=torch.tensor([0.1]) after it has counted the step and
    moved both moments; impl refuses before (its zero first-step state aside). Under
    ``bitwise`` the subject ends where torch ends or changes nothing; a subject that keeps
    another half step than torch's is still caught
    (``test_a_refused_step_that_changes_params_is_caught``)."""
    entry = registry.BY_NAME["Adamax"]
    case = Case(
        "float64",
        "cpu",
        [P(np.array([1.0, 1.0]))],
        [{"lr": 1.0, "params": [0]}],
        grads=[[np.array([0.5, 0.5])]],
        foreach=True,
        torch_foreach=True,
    )
    checks.CHECKS["errors"](Subject(entry.impl, entry), case, {"eps": "torch.tensor([0.1])"})


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_lbfgs_budgets_are_never_drawn_unbounded(data):
    """max_eval = 1e300 gives the line search 1e300 evaluations, which a NaN can make it spend:
    bad budgets are drawn, but never inf or 1e300 (bad_input.BUDGETS)."""
    entry = registry.BY_NAME["LBFGS"]
    strategy = bad_input.bad_hyperparameter(entry, "float32", "cpu", keys=("max_eval", "max_iter"))
    case, defaults = data.draw(strategy)
    drawn = [g.get(k) for g in case.groups for k in bad_input.BUDGETS] + list(defaults.values())
    assert not any(v in bad_input.UNBOUNDED for v in drawn), f"an unbounded budget: {drawn}"

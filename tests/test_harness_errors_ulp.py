"""The ``errors`` check under the ``ulp`` contract judges bad input by the spec, not by torch's
quirks; and the ``torch`` and ``maximize`` rows under ``ulp`` do not demand torch's conventions.

The correct subjects here are textbook classes written in this module in a plain op order (not a
copy of torch's op sequence): they must pass. Each broken one is the textbook Adam with one
deliberate difference on bad input; it must fail.
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

REAL = ("float16", "bfloat16", "float32", "float64")


def _opmath(p: torch.Tensor) -> torch.dtype:
    """Half dtypes computed in float32 (as a user's class would), the others as they are."""
    return torch.float32 if p.dtype in (torch.float16, torch.bfloat16) else p.dtype


class TextbookAdam(torch.optim.Optimizer):
    """Adam as the paper writes it: m = b1*m + (1 - b1)*g, v = b2*v + (1 - b2)*g*g,
    p -= lr * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps); validation as torch's."""

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        *,
        maximize=False,
        foreach=None,
        capturable=False,
        differentiable=False,
        fused=None,
        decoupled_weight_decay=False,
    ):
        self.validate(lr, betas, eps, weight_decay)
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)

    def validate(self, lr, betas, eps, weight_decay):
        for name, value, ok in (
            ("lr", lr, lambda x: 0.0 <= x),
            ("eps", eps, lambda x: 0.0 <= x),
            ("beta1", betas[0], lambda x: 0.0 <= x < 1.0),
            ("beta2", betas[1], lambda x: 0.0 <= x < 1.0),
            ("weight_decay", weight_decay, lambda x: 0.0 <= x),
        ):
            if not ok(value):
                raise ValueError(f"{name} out of range: {value}")

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, group)

    def update(self, p, group):
        beta1, beta2 = (float(b) for b in group["betas"])
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        work = _opmath(p)
        x, g = p.to(work), p.grad.to_dense().to(work)
        g = -g if group["maximize"] else g
        if wd and group["decoupled_weight_decay"]:
            x = x * (1 - lr * wd)
        elif wd:
            g = g + wd * x
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        t = float(state["step"])
        m = beta1 * state["exp_avg"].to(work) + (1 - beta1) * g
        v = beta2 * state["exp_avg_sq"].to(work) + (1 - beta2) * g * g
        state["exp_avg"].copy_(m)
        state["exp_avg_sq"].copy_(v)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"].to(work), v)
            state["max_exp_avg_sq"].copy_(v)
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        p.copy_(x - lr * m_hat / (v_hat.sqrt() + eps))


class AssertingAdam(TextbookAdam):
    """Refuses a bad lr with an AssertionError: a crash, not a refusal."""

    def validate(self, lr, betas, eps, weight_decay):
        assert isinstance(lr, float) and lr >= 0, "bad lr"
        super().validate(lr, betas, eps, weight_decay)


class TrustingAdam(TextbookAdam):
    """Validates nothing: takes a negative lr that torch refuses."""

    def validate(self, lr, betas, eps, weight_decay):
        pass


class ClampingAdam(TextbookAdam):
    """Clamps a non-finite gradient into the finite range: -inf becomes the most negative
    finite value, so exp_avg is finite where the math gives -inf."""

    def update(self, p, group):
        given = p.grad
        p.grad = given.nan_to_num()
        try:
            super().update(p, group)
        finally:
            p.grad = given


class CountingFirstAdam(TextbookAdam):
    """Counts the step, then refuses a negative lr found in a param group: a refused step that
    changes the state."""

    def update(self, p, group):
        state = self.state[p]
        if "step" in state:
            state["step"] += 1
        if not float(group["lr"]) >= 0:
            raise ValueError(f"lr out of range: {group['lr']}")
        if "step" in state:
            state["step"] -= 1
        super().update(p, group)


class SetsUpFirstAdam(TextbookAdam):
    """Sets up a fresh (zero) state, then refuses a negative lr found in a param group, as
    torch's classes set up their state before their update validates its input."""

    counts_before_refusing = False

    def update(self, p, group):
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        if self.counts_before_refusing:
            state["step"] += 1
        if not float(group["lr"]) >= 0:
            raise ValueError(f"lr out of range: {group['lr']}")
        if self.counts_before_refusing:
            state["step"] -= 1
        super().update(p, group)


class CountsFreshAdam(SetsUpFirstAdam):
    """Sets up a fresh state and counts the step before it refuses: step 1 is a change."""

    counts_before_refusing = True


class TextbookSGD(torch.optim.Optimizer):
    """SGD with momentum, dense throughout: b = mu*b + (1 - tau)*d (b = d at first),
    p -= lr * (d + mu*b if nesterov else b)."""

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0.0,
        dampening=0.0,
        weight_decay=0.0,
        nesterov=False,
        *,
        maximize=False,
        foreach=None,
        differentiable=False,
        fused=None,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            differentiable=differentiable,
            fused=fused,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                work = _opmath(p)
                x, d = p.to(work), p.grad.to_dense().to(work)
                d = -d if group["maximize"] else d
                d = d + wd * x if wd else d
                if mu:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        b = d.clone()
                    else:
                        b = mu * state["momentum_buffer"].to(work) + (1 - group["dampening"]) * d
                    state["momentum_buffer"] = b.to(p.dtype)
                    d = d + mu * b if group["nesterov"] else b
                p.copy_(x - lr * d)


class TextbookAdagrad(torch.optim.Optimizer):
    """Adagrad: s += d*d, p -= clr * d / (sqrt(s) + eps), clr = lr / (1 + (t - 1)*lr_decay);
    takes a ``foreach`` argument (and ignores it) as torch's signature does."""

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
        foreach=None,
        *,
        maximize=False,
        differentiable=False,
        fused=None,
    ):
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            eps=eps,
            initial_accumulator_value=initial_accumulator_value,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            fused=fused,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["step"] = torch.tensor(0.0)
                self.state[p]["sum"] = torch.full_like(p, initial_accumulator_value)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                work, state = _opmath(p), self.state[p]
                x, d = p.to(work), p.grad.to_dense().to(work)
                d = -d if group["maximize"] else d
                d = d + group["weight_decay"] * x if group["weight_decay"] else d
                state["step"] += 1
                clr = group["lr"] / (1 + (float(state["step"]) - 1) * group["lr_decay"])
                s = state["sum"].to(work) + d * d
                state["sum"].copy_(s)
                p.copy_(x - clr * d / (s.sqrt() + group["eps"]))


class SignFlippingAdagrad(TextbookAdagrad):
    """maximize ignored: steps downhill whatever the flag says."""

    def step(self, closure=None):
        flags = [g["maximize"] for g in self.param_groups]
        for g in self.param_groups:
            g["maximize"] = False
        try:
            return super().step(closure)
        finally:
            for g, flag in zip(self.param_groups, flags, strict=True):
                g["maximize"] = flag


def _ulp(cls, name: str) -> Subject:
    return Subject(cls, registry.BY_NAME[name], contract="ulp")


FIND = settings(
    max_examples=300,
    database=None,
    derandomize=True,
    deadline=None,
    phases=[Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)
PASS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def _caught(check: str, subject, strategy) -> str:
    """The failure message of the first drawn example ``check`` rejects (none: the test fails)."""

    def fails(drawn) -> bool:
        try:
            checks.CHECKS[check](subject, *drawn)
        except ConformanceError:
            return True
        return False

    drawn = find(strategy, fails, settings=FIND)
    with pytest.raises(ConformanceError) as info:
        checks.CHECKS[check](subject, *drawn)
    return str(info.value)


# -- errors: correct subjects pass ------------------------------------------------------------


@pytest.mark.parametrize("dtype", REAL)
@PASS
@given(data=st.data())
def test_textbook_adam_passes_errors(dtype, data):
    subject = _ulp(TextbookAdam, "Adam")
    drawn = data.draw(bad_input.bad_cases(subject.entry, dtype, "cpu", contract="ulp"))
    checks.CHECKS["errors"](subject, *drawn)


def _inf_with_beta1_zero(dtype: str) -> Case:
    return Case(
        dtype=dtype,
        device="cpu",
        params=[P(np.array([0.5, 0.25]), "contiguous")],
        groups=[
            {
                "lr": 0.01,
                "betas": (0.0, 0.999),
                "eps": 1e-3,
                "weight_decay": 0.0,
                "amsgrad": False,
                "maximize": False,
                "params": [0],
            }
        ],
        state={},
        grads=[[np.array([-math.inf, 0.5])], [np.array([0.25, 0.5])]],
    )


@pytest.mark.parametrize("dtype", REAL)
def test_an_infinite_gradient_with_beta1_zero_is_judged_by_the_math(dtype):
    """exp_avg = 0*m + 1*g is -inf; torch's lerp gives NaN there. The textbook class passes;
    its element 1, which the inf does not reach, is judged within the bound."""
    case = _inf_with_beta1_zero(dtype)
    checks.CHECKS["errors"](_ulp(TextbookAdam, "Adam"), case)
    mine = TextbookAdam([p := case.make_params()[0]], **_kwargs(case))
    p.grad = case.make_grads(0)[0]
    mine.step()
    theirs = torch.optim.Adam([q := case.make_params()[0]], **_kwargs(case), foreach=False)
    q.grad = case.make_grads(0)[0]
    theirs.step()
    assert float(mine.state[p]["exp_avg"][0]) == -math.inf, mine.state[p]
    assert math.isnan(float(theirs.state[q]["exp_avg"][0])), "torch's quirk is gone: see docs"


def _kwargs(case: Case) -> dict:
    return {k: v for k, v in case.groups[0].items() if k != "params"}


# -- errors: broken subjects fail -------------------------------------------------------------


def _bad_lr():
    return bad_input.bad_hyperparameter(registry.BY_NAME["Adam"], "float32", "cpu", keys=("lr",))


def test_an_assertion_error_is_not_a_refusal():
    message = _caught("errors", _ulp(AssertingAdam, "Adam"), _bad_lr())
    assert "raised AssertionError(" in message, message
    assert "which is not a refusal (expected a ValueError, TypeError or RuntimeError" in message


def test_accepting_an_lr_torch_refuses_fails():
    message = _caught("errors", _ulp(TrustingAdam, "Adam"), _bad_lr())
    assert "accepted input that torch.optim refuses: raised None, expected " in message, message
    with pytest.raises(ConformanceError, match=r"expected ValueError.'Invalid learning rate: -1"):
        checks.CHECKS["errors"](
            _ulp(TrustingAdam, "Adam"), _inf_with_beta1_zero("float32"), {"lr": -1.0}
        )


def test_a_finite_value_where_the_math_gives_minus_inf_fails():
    subject = _ulp(ClampingAdam, "Adam")
    message = _caught(
        "errors",
        subject,
        bad_input.nonfinite_grads(subject.entry, "float32", "cpu", purpose="spec_trajectory"),
    )
    assert "(finite)" in message or "exact value" in message, message
    with pytest.raises(ConformanceError, match=r"exp_avg element \(0,\): exact value .*\(-inf\)"):
        checks.CHECKS["errors"](subject, _inf_with_beta1_zero("float32"))


def test_a_refusal_that_changes_state_fails():
    entry = registry.BY_NAME["Adam"]
    case = _inf_with_beta1_zero("float32").replace(grads=[[np.array([0.5, 0.5])]] * 2)
    # torch takes a negative lr set in a group (it validates its constructor's lr only);
    # refusing it is stricter validation outside the domain, which must change nothing
    bad = case.replace(groups=[{**case.groups[0], "lr": -1.0}])
    checks.CHECKS["errors"](_ulp(TextbookAdam, "Adam"), bad)  # no refusal at all: passes
    with pytest.raises(ConformanceError, match=r"step 1 \(refused\), state\[0\]\['step'\]"):
        checks.CHECKS["errors"](
            _ulp(CountingFirstAdam, "Adam"),
            bad.replace(state={0: {"step": 3.0, "exp_avg": [0.1, 0.1], "exp_avg_sq": [0.1, 0.1]}}),
        )
    assert entry.name == "Adam"


def test_a_refusal_that_only_sets_up_a_fresh_state_changes_nothing():
    """A zero state where there was none is what the next first step starts from: nothing the
    math can see changed (torch's own classes do this). A refusal that then counts it fails."""
    case = _inf_with_beta1_zero("float32").replace(grads=[[np.array([0.5, 0.5])]] * 2)
    bad = case.replace(groups=[{**case.groups[0], "lr": -1.0}])
    checks.CHECKS["errors"](_ulp(SetsUpFirstAdam, "Adam"), bad)
    with pytest.raises(ConformanceError, match=r"step 1 \(refused\), state: params with state"):
        checks.CHECKS["errors"](_ulp(CountsFreshAdam, "Adam"), bad)


def _lr_beyond_float32() -> Case:
    """RAdam with lr = 1e300 on float32 params and a zero first gradient: the exact step is 0,
    and lr held in float32 is inf, so inf * 0 is NaN (torch's Adam refuses this lr; RAdam's
    unrectified first step takes it)."""
    group = {"lr": 1e300, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    return Case(
        dtype="float32",
        device="cpu",
        params=[P(np.array([0.5, 0.25]), "contiguous")],
        groups=[{**group, "maximize": False, "decoupled_weight_decay": False, "params": [0]}],
        state={},
        grads=[[np.array([0.0, 0.0])]],
    )


def test_a_hyperparameter_the_dtype_cannot_hold_may_be_held_as_the_dtype_holds_it():
    """docs/bounds.md's model rounds a scalar operand into the dtype; lr = 1e300 is inf there.
    torch's and impl's NaN passes; a NaN where the lr the dtype holds gives a finite value
    does not."""
    import impl

    case = _lr_beyond_float32()
    checks.CHECKS["errors"](Subject(impl.RAdam, registry.BY_NAME["RAdam"], contract="ulp"), case)
    theirs = torch.optim.RAdam([q := case.make_params()[0]], **_kwargs(case), foreach=False)
    q.grad = case.make_grads(0)[0]
    theirs.step()
    assert torch.isnan(q).all(), f"torch's lr*0 is no longer NaN: {q}"
    adam = {**_inf_with_beta1_zero("float32").groups[0], "lr": 1e30, "betas": (0.9, 0.999)}
    representable = case.replace(groups=[adam])
    with pytest.raises(ConformanceError, match=r"param element \(0,\): exact value .*\(finite\)"):
        checks.CHECKS["errors"](_ulp(NanStepAdam, "Adam"), representable)


class NanStepAdam(TextbookAdam):
    """Multiplies its step by an lr overflowed on purpose: NaN where the step is 0."""

    def update(self, p, group):
        super().update(p, {**group, "lr": math.inf})


def _decay_beyond_float64(param: float) -> Case:
    """Adam in float64 with weight_decay = 1e300 (torch validates it >= 0 only) and a zero
    gradient: g = wd*p, and the exact step is p - lr*sign(p)."""
    group = {**_inf_with_beta1_zero("float64").groups[0], "lr": 1.0, "betas": (0.9, 0.999)}
    return Case(
        dtype="float64",
        device="cpu",
        params=[P(np.array([param]), "contiguous")],
        groups=[{**group, "weight_decay": 1e300}],
        state={},
        grads=[[np.array([0.0])]],
    )


def test_an_overflowed_product_may_end_in_nan():
    """wd*p = 1e300 * 1.8e8 is beyond float64: g is inf, and Adam's m/sqrt(v) is inf/inf. The
    exact step is finite (p - 1), but no op order that forms wd*p first reaches it: the textbook
    class's NaN passes, as torch's. Where wd*p fits (p = 1e7), the same NaN fails."""
    case = _decay_beyond_float64(179769314.0)
    checks.CHECKS["errors"](_ulp(TextbookAdam, "Adam"), case)
    theirs = torch.optim.Adam([q := case.make_params()[0]], **_kwargs(case), foreach=False)
    q.grad = case.make_grads(0)[0]
    theirs.step()
    assert torch.isnan(q).all(), f"torch's step is no longer NaN: {q}"
    with pytest.raises(ConformanceError, match=r"param element \(0,\): exact value .*\(finite\)"):
        checks.CHECKS["errors"](_ulp(NanStepAdam, "Adam"), _decay_beyond_float64(1e7))


def test_outside_the_spec_domain_nan_says_undefined():
    """eps = -1 set in a param group (torch validates its constructor's eps only): the spec's
    sqrt(v + eps) is undefined, though SymPy's simplified acc_delta reads finite; impl's and
    torch's NaN pass. Inside the domain the same NaN fails."""
    import impl

    entry = registry.BY_NAME["Adadelta"]
    group = {"lr": 1.0, "rho": 0.9, "eps": -1.0, "weight_decay": 0.0, "maximize": False}
    case = Case(
        dtype="float32",
        device="cpu",
        params=[P(np.array([0.0]), "contiguous")],
        groups=[{**group, "params": [0]}],
        state={0: {"step": 1.0, "square_avg": [0.0], "acc_delta": [0.0]}},
        grads=[[np.array([0.0])]],
    )
    subject = Subject(impl.Adadelta, entry, contract="ulp")
    checks.CHECKS["errors"](subject, case)
    inside = case.replace(groups=[{**group, "eps": 1.0, "params": [0]}])
    with pytest.raises(ConformanceError, match=r"exact value .*\(finite\), actual .*nan"):
        checks.CHECKS["errors"](_ulp(UndefinedAdadelta, "Adadelta"), inside)


def test_a_nan_gradient_may_be_skipped_but_not_replaced():
    """A NaN is no number: the math gives the param no value. torch's Rprop keeps the param
    (torch.sign(nan) is 0: finding 31) and passes; an Adam that reads NaN as a zero gradient
    moves the param by its momentum, a finite value the math does not give, and fails."""
    import impl

    rprop = Case(
        dtype="float32",
        device="cpu",
        params=[P(np.array([0.5, 0.25]), "contiguous")],
        groups=[{"lr": 0.01, "etas": (0.5, 1.2), "step_sizes": (1e-6, 1.0), "params": [0]}],
        state={0: {"step": 1.0, "prev": [0.5, 0.5], "step_size": [0.01, 0.01]}},
        grads=[[np.array([math.nan, 0.5])]],
    )
    checks.CHECKS["errors"](Subject(impl.Rprop, registry.BY_NAME["Rprop"], contract="ulp"), rprop)
    case = _inf_with_beta1_zero("float32")
    moving = case.replace(
        groups=[{**case.groups[0], "betas": (0.9, 0.999)}],
        state={0: {"step": 3.0, "exp_avg": [0.1, 0.1], "exp_avg_sq": [0.1, 0.1]}},
        grads=[[np.array([math.nan, 0.5])]],
    )
    with pytest.raises(ConformanceError, match=r"exact value .*\(NaN\), actual .*\d"):
        checks.CHECKS["errors"](_ulp(NanAsZeroAdam, "Adam"), moving)


def test_a_nan_gradient_with_a_per_tensor_state_is_judged():
    """NAdam keeps mu_product, one value per param: the elements a NaN reaches are a per-element
    mask, which a per-tensor output reads as 'any' (it raised a numpy broadcast error)."""
    import impl

    group = {"lr": 1.0, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0.0}
    case = Case(
        dtype="float32",
        device="cpu",
        params=[P(np.array([0.5, 0.25]), "contiguous")],
        groups=[{**group, "momentum_decay": 0.004, "maximize": False, "params": [0]}],
        state={},
        grads=[[np.array([math.nan, 0.5])], [np.array([0.5, 0.5])]],
    )
    checks.CHECKS["errors"](Subject(impl.NAdam, registry.BY_NAME["NAdam"], contract="ulp"), case)


class NanAsZeroAdam(TextbookAdam):
    """Reads a NaN gradient as 0 (``nan_to_num``), as some gradient-clipping code does."""

    def update(self, p, group):
        given = p.grad
        p.grad = given.nan_to_num(nan=0.0)
        try:
            super().update(p, group)
        finally:
            p.grad = given


class UndefinedAdadelta(torch.optim.Adadelta):
    """torch's Adadelta that writes NaN into acc_delta after each step."""

    def step(self, closure=None):
        loss = super().step(closure)
        for state in self.state.values():
            state["acc_delta"].fill_(math.nan)
        return loss


# -- the torch and maximize rows under ulp ---------------------------------------------------


@pytest.mark.parametrize("dtype", REAL)
@PASS
@given(data=st.data())
def test_textbook_sgd_passes_the_torch_rows(dtype, data):
    """Its momentum buffer is dense where torch keeps a sparse one: compared as dense values."""
    from conformance import strategies

    subject = _ulp(TextbookSGD, "SGD")
    case = data.draw(strategies.cases(subject.entry, dtype, "cpu"))
    checks.CHECKS["torch"](subject, case)


@pytest.mark.parametrize("dtype", REAL)
@PASS
@given(data=st.data())
def test_textbook_adagrad_passes_maximize(dtype, data):
    """On the foreach path without weight decay, where torch's maximize rounds lr into a half
    dtype (finding 6): a textbook class that takes ``foreach`` need not copy that."""
    from conformance import strategies

    subject = _ulp(TextbookAdagrad, "Adagrad")
    case = data.draw(strategies.cases(subject.entry, dtype, "cpu", purpose="invariant"))
    groups = [{**g, "weight_decay": 0.0} for g in case.groups]
    checks.CHECKS["maximize"](subject, case.replace(groups=groups, foreach=True))


def test_a_maximize_that_steps_downhill_fails():
    from conformance import strategies

    subject = _ulp(SignFlippingAdagrad, "Adagrad")
    message = _caught(
        "maximize",
        subject,
        strategies.cases(subject.entry, "float16", "cpu", purpose="invariant").map(lambda c: (c,)),
    )
    assert "maximize:" in message, message


def _adagrad_foreach_bfloat16(lr_decay: float) -> Case:
    """Step 2 of torch's foreach Adagrad in bfloat16 (the 2026-12-08 mutation baseline's case,
    shrunk to one motif of 17 elements)."""
    grad = np.zeros(17)
    grad[16] = 4.458563631096791e17
    group = {"lr": 0.559661907406482, "lr_decay": lr_decay, "weight_decay": 0.0, "eps": 0.0625}
    return Case(
        dtype="bfloat16",
        device="cpu",
        params=[P(np.zeros(17), "contiguous")],
        groups=[{**group, "initial_accumulator_value": 0.0, "maximize": False, "params": [0]}],
        state={0: {"step": 1.0, "sum": np.zeros(17)}},
        grads=[[grad]],
        foreach=True,
        torch_foreach=True,
    )


def test_maximize_with_a_per_step_rounded_clr_is_not_judged():
    """With lr_decay, torch's foreach maximize rounds each step's clr into bfloat16, which no
    minimizing group reproduces: impl (torch's path) is 2 ULP off the exact negation. The
    example is rejected under ulp as under bitwise; without lr_decay it is judged, and passes."""
    from hypothesis.errors import UnsatisfiedAssumption

    import impl

    subject = Subject(impl.Adagrad, registry.BY_NAME["Adagrad"], contract="ulp")
    with pytest.raises(UnsatisfiedAssumption):
        checks.CHECKS["maximize"](subject, _adagrad_foreach_bfloat16(0.3627847693841681))
    checks.CHECKS["maximize"](subject, _adagrad_foreach_bfloat16(0.0))
    case = _adagrad_foreach_bfloat16(0.3627847693841681)
    steps = []
    for maximize, sign in ((True, -1), (False, 1)):
        group = {**_kwargs(case), "maximize": maximize}
        opt = torch.optim.Adagrad([p := case.make_params()[0]], **group, foreach=True)
        opt.state[p] = {"step": torch.tensor(1.0), "sum": torch.zeros(17, dtype=p.dtype)}
        p.grad = sign * case.make_grads(0)[0]
        opt.step()
        steps.append(float(p[16]))
    assert steps[0] != steps[1], f"torch's foreach maximize no longer rounds clr: {steps}"

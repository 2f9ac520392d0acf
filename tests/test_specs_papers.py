"""The papers' forms (``specs.papers``) against torch.optim: where the notes say they coincide
the float64 oracle lands within a few ULP of torch's own class, and where the notes say they
differ, torch measurably differs. Inputs are fixed, hand-chosen values."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from specs import ALL_SPECS, VARIANTS, papers
from specs.proofs import nadam_dozat_vs_torch, radam_threshold_band

NAMES = (
    "paper:NAdam(Dozat 2016)",
    "paper:RAdam(Liu 2019)",
    "paper:Rprop(Riedmiller-Braun 1993)",
    "paper:ASGD(Polyak-Juditsky 1992)",
)
X0 = np.array([0.75, -1.5, 2.0])
# gradient rows for successive steps: mixed signs and scales, no zero (v > 0 throughout)
GRADS = np.array(
    [
        [0.5, -2.0, 0.25],
        [0.4, -1.0, -0.5],
        [0.3, 0.5, 0.75],
        [0.6, -0.25, 1.0],
        [0.2, 1.5, -0.125],
        [0.1, -0.75, 0.5],
        [0.35, 0.25, -1.0],
        [0.45, -0.5, 0.625],
        [0.15, 1.0, 0.3],
        [0.25, -1.25, -0.2],
        [0.55, 0.125, 0.9],
        [0.05, -0.6, 0.45],
    ]
)


@contextlib.contextmanager
def float64_default():
    """torch keeps NAdam's mu_product and ASGD's eta/mu in float64 under this default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _numpy_state(state: dict) -> dict:
    return {key: np.array(value.detach().numpy(), np.float64) for key, value in state.items()}


def torch_steps(name: str, kwargs: dict, grads, x0=X0) -> list[tuple]:
    """(param before, state before, grad, param after, state after) of each torch step."""
    with float64_default():
        x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
        optimizer = getattr(torch.optim, name)([x], **kwargs)
        records = []
        for grad in grads:
            before, state = x.detach().numpy().copy(), _numpy_state(optimizer.state[x])
            x.grad = torch.tensor(grad, dtype=torch.float64)
            optimizer.step()
            records.append(
                (before, state, grad, x.detach().numpy().copy(), _numpy_state(optimizer.state[x]))
            )
        return records


def one_step(spec, before, state, grad, hyper) -> dict:
    """The spec's float64 step from torch's state before that step (its own keys only)."""
    own = {var.name: state[var.name] for var in spec.state if var.name in state}
    return spec.step_float64(before, grad, own, hyper)


def ulps(actual, expected, scale) -> float:
    """Distance in float64 ULPs at the scale of max(|expected|, |scale|) (the value before the
    step, so a step that cancels most of the param does not count as many ULPs)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    size = np.maximum(np.abs(expected), np.abs(np.asarray(scale, np.float64)))
    return float(np.max(np.abs(actual - expected) / np.spacing(size)))


# ---- registration ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_paper_variant_is_registered_with_notes(name):
    assert name in VARIANTS and VARIANTS[name] is papers.VARIANTS[name]
    assert any(spec.name == name for spec in ALL_SPECS)
    assert "torch" in VARIANTS[name].notes


def test_paper_variants_follow_one_naming_scheme():
    assert sorted(papers.VARIANTS) == sorted(NAMES)
    assert all(name.startswith(papers.PREFIX) for name in papers.VARIANTS)
    assert all(not name.startswith(papers.PREFIX) for name in VARIANTS if name not in NAMES)


# ---- NAdam -----------------------------------------------------------------------------------

NADAM_HYPER = {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "momentum_decay": 4e-3}


def test_nadam_with_torchs_two_changes_is_torchs_nadam():
    """The notes: torch = Dozat's rule with β1 in the m EMA and no ν in n̂."""
    aligned = papers.nadam(scheduled_ema=False, nu_in_n_hat=False)
    kwargs = {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "momentum_decay": 4e-3}
    for before, state, grad, after, state_after in torch_steps("NAdam", kwargs, GRADS):
        out = one_step(aligned, before, state, grad, NADAM_HYPER)
        assert ulps(out["param"], after, before) <= 4
        # the moments at the scale of their inputs (m ± (1 − β1)·g may cancel)
        scales = {"exp_avg": np.abs(grad), "exp_avg_sq": grad**2, "mu_product": 0.0}
        for key, scale in scales.items():
            scale = np.maximum(scale, np.abs(state.get(key, 0.0)))
            assert ulps(out[key], state_after[key], scale) <= 2, key


def test_nadam_paper_form_differs_from_torch_by_the_derived_ratio():
    """First step from a fresh state, eps = 0: torch's step is 0.806× Dozat's (each change
    alone: 0.9995× from ν, 0.806× from the EMA), the ratios ``nadam_dozat_vs_torch`` derives."""
    kwargs = {"lr": 0.01, "eps": 0.0}
    ((before, _, grad, after, _),) = torch_steps("NAdam", kwargs, GRADS[:1])
    derived = nadam_dozat_vs_torch().derived
    for form in (
        papers.nadam(),
        papers.nadam(scheduled_ema=False),
        papers.nadam(nu_in_n_hat=False),
    ):
        out = form.step_float64(before, grad, {}, {**NADAM_HYPER, "eps": 0.0})
        ratio = (before - after) / (before - out["param"])
        expected = float(derived[f"torch/{form.name} first step"])
        np.testing.assert_allclose(ratio, expected, rtol=1e-5)
        assert abs(expected - 1) > 4e-4


def test_nadam_paper_first_moment_is_unbiased_and_torchs_is_not():
    """Under a constant gradient Dozat's m/(1 − Π_t) is the gradient; torch's is not."""
    paper = VARIANTS["paper:NAdam(Dozat 2016)"]
    grads = np.full((6, 3), 0.5)
    state = {}
    for grad in grads:
        state = paper.step_float64(X0, grad, state, NADAM_HYPER)
        state.pop("param")
        np.testing.assert_allclose(state["exp_avg"] / (1 - state["mu_product"]), 0.5, rtol=1e-14)
    *_, torch_state = torch_steps("NAdam", {"lr": 0.01}, grads)[-1]
    ratio = torch_state["exp_avg"] / (1 - torch_state["mu_product"])
    assert np.all(np.abs(ratio / 0.5 - 1) > 0.1)


# ---- RAdam -----------------------------------------------------------------------------------


def _radam_pairs(beta2: float, eps: float = 0.0, lr: float = 0.01):
    """(t, paper's step, torch's step) from torch's state, step by step."""
    paper = VARIANTS["paper:RAdam(Liu 2019)"]
    hyper = {"lr": lr, "beta1": 0.9, "beta2": beta2}
    kwargs = {"lr": lr, "betas": (0.9, beta2), "eps": eps}
    for t, (before, state, grad, after, _) in enumerate(torch_steps("RAdam", kwargs, GRADS), 1):
        yield t, before, one_step(paper, before, state, grad, hyper)["param"], after


@pytest.mark.parametrize(
    ("beta2", "band"),
    [
        (0.999, {5}),
        (0.9, {5}),
        (0.8, {5, 6}),
        (0.7, {6, 7, 8, 9}),
        (0.65, set(range(8, 13))),
    ],
)
def test_radam_paper_and_torch_part_exactly_where_4_lt_rho_le_5(beta2, band):
    """eps = 0: the same step outside 4 < ρ_t ≤ 5 (within a few ULP), another one inside it
    (the paper rectifies, torch does not). 0.65 is in (3/5, 2/3]: torch never rectifies, the
    paper does from t = 8 on. At β2 = 0.999 the agreement is up to torch's own rounding of
    1 − β2^t, which ρ_t − 4 amplifies (≤ 7 ULP at the param's scale here; the paper spec
    computes it with expm1); β2 ≤ 0.9 agree to the bit."""
    for t, before, paper_step, torch_step in _radam_pairs(beta2):
        if t in band:
            assert ulps(paper_step, torch_step, before) > 1e6, t
        else:
            assert ulps(paper_step, torch_step, before) <= 8, t


def test_radam_bands_are_the_proofs():
    derived = radam_threshold_band().derived
    key = "steps with 4 < rho_t <= 5, beta2 = {}"
    assert tuple(derived[key.format("999/1000")]) == (5,)
    assert tuple(derived[key.format("9/10")]) == (5,)
    assert tuple(derived[key.format("4/5")]) == (5, 6)
    assert tuple(derived[key.format("7/10")]) == (6, 7, 8, 9)
    assert derived[key.format("13/20")].inf == 8


def test_radam_eps_is_added_to_sqrt_v_in_torch_only():
    """eps > 0 changes torch's rectified step; the paper has no eps. eps/sqrt(1 − β2^t) on the
    scale of sqrt(v̂): with eps = 1e-3 and |g| ~ 0.1..2 a visible difference."""
    for t, before, paper_step, torch_step in _radam_pairs(0.9, eps=1e-3):
        if t > 5:
            relative = np.abs(paper_step - torch_step) / np.abs(before - paper_step)
            assert np.all(relative > 1e-4), t


# ---- Rprop -----------------------------------------------------------------------------------

RPROP = VARIANTS["paper:Rprop(Riedmiller-Braun 1993)"]
RPROP_HYPER = {"lr": 0.1, "etaminus": 0.5, "etaplus": 1.2, "step_size_min": 1e-6}
RPROP_HYPER["step_size_max"] = 50.0


def _rprop_kwargs(lr=0.1):
    return {"lr": lr, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50.0)}


def _run_paper(spec, grads, hyper, x0=X0):
    params, state, x = [np.array(x0, np.float64)], {}, np.array(x0, np.float64)
    for grad in grads:
        state = spec.step_float64(x, grad, state, hyper)
        x = state.pop("param")
        params.append(x)
    return params, state


def test_rprop_without_sign_changes_is_torchs():
    # per element: signs never flip (zeros between: the g·prev = 0 branch)
    grads = np.array(
        [[1.0, -2.0, 0.0], [3.0, -1.0, 0.5], [0.5, 0.0, 2.0], [2.0, -3.0, 1.0], [0.25, -1, 3]]
    )
    params, state = _run_paper(RPROP, grads, RPROP_HYPER)
    records = torch_steps("Rprop", _rprop_kwargs(), grads)
    for (before, _, _, after, _), param in zip(records, params[1:]):
        assert ulps(param, after, before) == 0
    torch_state = records[-1][-1]
    for key in ("prev", "step_size"):
        assert ulps(state[key], torch_state[key], torch_state[key]) == 0


def test_rprop_sign_change_reverts_the_previous_step_where_torch_stays():
    grads = np.array([[1.0, -1.0, 2.0], [1.0, -1.0, 2.0], [-1.0, 1.0, -2.0]])
    params, state = _run_paper(RPROP, grads, RPROP_HYPER)
    records = torch_steps("Rprop", _rprop_kwargs(), grads)
    torch_params = [records[0][0]] + [after for *_, after, _ in records]
    np.testing.assert_array_equal(params[1], torch_params[1])
    np.testing.assert_array_equal(params[2], torch_params[2])
    np.testing.assert_array_equal(params[3], params[1])  # the paper: back to p_1
    np.testing.assert_array_equal(torch_params[3], torch_params[2])  # torch: stays at p_2
    gap = torch_params[3] - params[3]
    np.testing.assert_allclose(gap, -np.sign(grads[1]) * 0.12, rtol=1e-15)  # the step undone
    torch_state = records[-1][-1]
    np.testing.assert_array_equal(state["prev"], torch_state["prev"])  # zeroed in both
    np.testing.assert_array_equal(state["step_size"], torch_state["step_size"])


def test_rprop_clamps_differ_only_with_lr_outside_the_step_size_range():
    """The paper clamps one-sidedly (Δ kept where g·prev = 0, shrink floored at Δmin, growth
    capped at Δmax); torch clamps to [min, max] at every step. lr = 300 > 50: torch's first
    step is 50, the paper's 300, and after a flip the paper's Δ is 150 (torch's 25). lr = 1e-7
    < 1e-6: torch's first step is 1e-6, the paper's 1e-7, and a growth step makes it 1.2e-7.
    (In range, the no-sign-change test above agrees to the bit.)"""
    grads = np.array([[1.0, -1.0, 0.5], [-1.0, 1.0, -0.5]])
    params, state = _run_paper(RPROP, grads, {**RPROP_HYPER, "lr": 300.0})
    records = torch_steps("Rprop", _rprop_kwargs(lr=300.0), grads)
    np.testing.assert_array_equal(X0 - params[1], np.sign(grads[0]) * 300.0)
    np.testing.assert_array_equal(X0 - records[0][3], np.sign(grads[0]) * 50.0)
    np.testing.assert_array_equal(state["step_size"], 150.0)
    np.testing.assert_array_equal(records[-1][-1]["step_size"], 25.0)

    grads = np.array([[1.0, -1.0, 0.5], [1.0, -1.0, 0.5]])
    _, state = _run_paper(RPROP, grads[:1], {**RPROP_HYPER, "lr": 1e-7})
    ((_, _, _, _, torch_state),) = torch_steps("Rprop", _rprop_kwargs(lr=1e-7), grads[:1])
    np.testing.assert_array_equal(state["step_size"], 1e-7)
    np.testing.assert_array_equal(torch_state["step_size"], 1e-6)
    _, state = _run_paper(RPROP, grads, {**RPROP_HYPER, "lr": 1e-7})
    np.testing.assert_allclose(state["step_size"], 1.2e-7, rtol=1e-15)


# ---- ASGD ------------------------------------------------------------------------------------

ASGD = VARIANTS["paper:ASGD(Polyak-Juditsky 1992)"]
SCALE = np.array([2.0, 0.5, 1.0])  # gradient of ½·Σ scale·x²


def _torch_asgd(steps: int, **kwargs):
    """torch's iterates x_0..x_T and its ax after each step, on the quadratic."""
    with float64_default():
        x = torch.tensor(X0, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.ASGD([x], **kwargs)
        iterates, averages = [X0.copy()], []
        for _ in range(steps):
            x.grad = torch.tensor(SCALE) * x.detach()
            optimizer.step()
            iterates.append(x.detach().numpy().copy())
            averages.append(optimizer.state[x]["ax"].numpy().copy())
    return np.array(iterates), np.array(averages)


def _paper_asgd(steps: int, **hyper):
    path = ASGD.run_float64(X0, lambda x: SCALE * x, {"lr": 0.125, **hyper}, steps)
    averages, state, x = [], {}, X0
    for grad_point in path[:-1]:
        state = ASGD.step_float64(grad_point, SCALE * grad_point, state, {"lr": 0.125, **hyper})
        x = state.pop("param")
        averages.append(state["ax"])
    np.testing.assert_array_equal(x, path[-1])
    return path, np.array(averages)


def test_asgd_constant_step_iterates_are_torchs_with_lambd_0():
    steps = 8
    torch_path, _ = _torch_asgd(steps, lr=0.125, lambd=0.0, alpha=0.75, t0=0.0)
    paper_path, _ = _paper_asgd(steps, alpha=0.0)
    for before, mine, theirs in zip(torch_path[:-1], paper_path[1:], torch_path[1:]):
        assert ulps(mine, theirs, before) <= 1


@pytest.mark.parametrize(("t0", "dropped"), [(0.0, 2), (-1.0, 1)])
def test_asgd_averages_differ_by_the_leading_iterates(t0, dropped):
    """P–J's x̄_T = mean(x_0..x_{T−1}); torch's ax (t0 = 0) leaves out x_0 and x_1, with
    t0 = −1 only x_0: (T + 1)·x̄_{T+1} − (x_0 + …) = (T + 1 − dropped)·ax_T."""
    steps = 8
    _, torch_ax = _torch_asgd(steps, lr=0.125, lambd=0.0, t0=t0)
    paper_path, paper_ax = _paper_asgd(steps + 1, alpha=0.0)
    np.testing.assert_array_equal(paper_ax[-1], paper_path[:-1].mean(axis=0))
    for T in range(2, steps + 1):
        kept = (T + 1) * paper_ax[T] - paper_path[:dropped].sum(axis=0)
        np.testing.assert_allclose(kept, (T + 1 - dropped) * torch_ax[T - 1], rtol=1e-13)
        assert np.all(np.abs(paper_ax[T - 1] - torch_ax[T - 1]) > 1e-3)


def test_asgd_decaying_step_needs_lambd_which_shrinks_p():
    """λ = 1/lr makes torch's η_t = lr·t^(−α), the paper's γ_t, but zeroes p in step 1."""
    lr = 0.125
    torch_path, _ = _torch_asgd(1, lr=lr, lambd=1 / lr, alpha=0.75, t0=0.0)
    paper_path, _ = _paper_asgd(1, alpha=0.75)
    np.testing.assert_array_equal(torch_path[1], -lr * SCALE * X0)  # p(1 − 1) − lr·g
    np.testing.assert_array_equal(paper_path[1], X0 - lr * SCALE * X0)
    with float64_default():
        x = torch.tensor(X0, requires_grad=True)
        optimizer = torch.optim.ASGD([x], lr=lr, lambd=1 / lr, alpha=0.75, t0=0.0)
        etas = []
        for _ in range(4):
            x.grad = torch.ones(3)
            optimizer.step()
            etas.append(float(optimizer.state[x]["eta"]))  # the step size of the next step
    np.testing.assert_allclose(etas, lr * np.arange(2.0, 6.0) ** -0.75, rtol=1e-15)

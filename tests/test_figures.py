"""The figures render headless, and the numbers behind them are the ones closed forms predict."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import impl
from conformance import figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STEPS = np.arange(figures.STEPS + 1)

SYNTHETIC_REPORT = [
    {"optimizer": "SGD", "check": "vs_torch", "dtype": "float32", "device": "cpu",
     "examples": 50, "max_ulp": 0, "status": "pass", "reason": None},
    {"optimizer": "SGD", "check": "vs_torch", "dtype": "float32", "device": "cuda",
     "examples": 0, "max_ulp": None, "status": "skip", "reason": "CUDA not available"},
    {"optimizer": "Adam", "check": "vs_spec", "dtype": "float32", "device": "cpu",
     "examples": 50, "max_ulp": 3, "status": "pass", "reason": None},
    {"optimizer": "Adam", "check": "vs_spec", "dtype": "float32", "device": "cpu",
     "examples": 50, "max_ulp": 40, "status": "fail", "reason": "bound 8"},
    {"optimizer": "Adam", "check": "vs_spec", "dtype": "float64", "device": "cpu",
     "examples": 50, "max_ulp": None, "status": "pass", "reason": None},
]  # fmt: skip


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """Run the command line entry once, headless, with a synthetic conformance report."""
    out = tmp_path_factory.mktemp("reports")
    (out / "conformance.json").write_text(json.dumps(SYNTHETIC_REPORT))
    figures.main(["--out", str(out), "--docs-img", str(out / "docs" / "seed-corrected.png")])
    return out


@pytest.fixture(scope="module")
def panels32() -> dict[str, figures.Panel]:
    return {p.run.title: p for p in figures.seed_panels()}


@pytest.fixture(scope="module")
def panels64() -> dict[str, figures.Panel]:
    return {p.run.title: p for p in figures.seed_panels(dtype=torch.float64)}


@pytest.mark.parametrize(
    "name",
    ["seed_corrected", "loss_vs_step", "seed_dialects", "more_optimizers", "conformance_heat"],
)
def test_every_figure_is_a_nontrivial_png(rendered, name):
    path = rendered / f"{name}.png"
    width, height = png_size(path)
    assert width >= 400 and height >= 200
    assert path.stat().st_size > 10_000  # a blank canvas of that size compresses to ~2 KB


def test_docs_copy_is_the_seed_figure(rendered):
    copy = rendered / "docs" / "seed-corrected.png"
    assert copy.read_bytes() == (rendered / "seed_corrected.png").read_bytes()


def test_committed_readme_figure_is_commit_sized():
    path = Path(__file__).resolve().parents[1] / "docs" / "img" / "seed-corrected.png"
    png_size(path)
    assert path.stat().st_size < 300_000


def test_missing_report_skips_heat_table_with_a_note(tmp_path, capsys, monkeypatch):
    # Only the heat-table is under test: skip the (slow) trajectory figures.
    monkeypatch.setattr(figures, "plot_seed_corrected", lambda *a: tmp_path / "a.png")
    monkeypatch.setattr(figures, "plot_loss_vs_step", lambda *a: tmp_path / "b.png")
    monkeypatch.setattr(figures, "plot_seed_dialects", lambda *a: tmp_path / "c.png")
    monkeypatch.setattr(figures, "plot_more_optimizers", lambda *a: tmp_path / "d.png")
    written = figures.write_all(tmp_path)
    assert not (tmp_path / "conformance_heat.png").exists()
    assert len(written) == 4
    assert "skipping the conformance heat-table" in capsys.readouterr().out


def test_gd_lr_0_1_closed_form(panels64, panels32):
    # x ← x − 0.1·(2·x1, 20·x2): x1 shrinks by 0.8, x2 flips sign since 1 − 0.1·20 = −1.
    x = panels64["GD, lr=0.1"].impl.x
    np.testing.assert_allclose(x[:, 0], 4 * 0.8**STEPS, rtol=1e-12, atol=0)
    np.testing.assert_allclose(x[:, 1], 3 * (-1.0) ** STEPS, rtol=1e-12, atol=0)
    # In the figure's float32 run |x2| = 3 exactly, forever: f never drops below 90.
    x32 = panels32["GD, lr=0.1"].impl.x
    assert np.all(np.abs(x32[:, 1]) == 3)
    assert figures.loss_along(x32)[-1] == pytest.approx(90, rel=1e-12)


def test_gd_lr_0_01_closed_form(panels64):
    x = panels64["GD, lr=0.01"].impl.x
    np.testing.assert_allclose(x[:, 0], 4 * 0.98**STEPS, rtol=1e-12, atol=0)
    np.testing.assert_allclose(x[:, 1], 3 * 0.8**STEPS, rtol=1e-12, atol=0)


@pytest.mark.parametrize("title", [run.title for run in figures.SEED_RUNS])
def test_overlay_is_bitwise(panels32, panels64, title):
    """The dashed torch.optim line of every panel lies exactly on impl's, as the legend says."""
    for panels in (panels32, panels64):
        panel = panels[title]
        assert panel.bitwise, f"{title}: max |impl − torch| = {panel.max_abs_diff}"
        if panel.impl.momentum is not None:
            assert np.array_equal(panel.impl.momentum, panel.torch.momentum)


@pytest.mark.parametrize("run", figures.MORE_RUNS, ids=lambda run: run.name)
def test_more_optimizers_overlay_is_bitwise_and_they_descend(run):
    (panel,) = figures.seed_panels(runs=(run,))
    assert panel.bitwise, f"{run.title}: max |impl − torch| = {panel.max_abs_diff}"
    start, end = figures.loss_along(panel.impl.x[[0, -1]])
    assert end < start / 10, f"{run.title}: f went from {start} to {end}"


def test_panels_run_impl_and_torch():
    run = figures.SEED_RUNS[0]
    assert figures.trajectory(impl.SGD, run.hyper, steps=1).x.shape == (2, 2)
    assert getattr(impl, run.name) is impl.SGD and getattr(torch.optim, run.name) is torch.optim.SGD


def test_nesterov_true_iterate_follows_the_seeds_definition(panels64):
    """x = x' + η·μ·v satisfies the seed's x_{t+1} = x_t − η·v_{t+1} with the gradient at x'."""
    panel = panels64["Nesterov, lr=0.01, μ=0.9"]
    lr, mu = panel.run.hyper["lr"], panel.run.hyper["momentum"]
    look, v = panel.impl.x, panel.impl.momentum
    x = figures.nesterov_true_iterate(panel.impl, panel.run.hyper)
    np.testing.assert_array_equal(x[0], figures.X0)
    np.testing.assert_allclose(x[1:], x[:-1] - lr * v[1:], rtol=0, atol=1e-12)
    grads = np.array([figures.grad_f(p) for p in look[:-1]])
    np.testing.assert_allclose(v[1:], mu * v[:-1] + grads, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def dialects() -> dict[str, figures.Dialect]:
    return {d.variant: d for d in figures.seed_dialects()}


def test_dialects_use_the_seeds_hyperparameters_at_lr_0_1(dialects):
    assert dialects["seed:RMSProp"].hyper == {"lr": 0.1, "alpha": 0.9, "eps": 1e-8}
    assert dialects["seed:AdaGrad(code)"].hyper == {"lr": 0.1, "eps": 1e-8}


def test_rmsprop_dialect_first_step_closed_form(dialects):
    # Step 1 from h = 0: x − lr·g/√((1−α)·g²) = x − lr/√(1−α)·sign(g) (eps negligible):
    # the seed's α = 0.9 moves 0.1/√0.1 ≈ 0.316, torch's α = 0.99 moves 0.1/√0.01 = 1.
    d = dialects["seed:RMSProp"]
    np.testing.assert_allclose(d.seed[1], np.array(figures.X0) - 0.1 / np.sqrt(0.1), rtol=1e-7)
    np.testing.assert_allclose(d.torch[1], np.array(figures.X0) - 1.0, rtol=1e-7)
    assert d.max_abs_diff > 0.5  # the legend's number: α, not eps placement, makes the gap
    gap = abs(dialects["seed:RMSProp(text)"].max_abs_diff - d.max_abs_diff)
    assert gap < 1e-6


def test_adagrad_dialects_barely_differ_from_torch(dialects):
    for name in ("seed:AdaGrad(code)", "seed:AdaGrad(text)"):
        assert 0 < dialects[name].max_abs_diff < 1e-6


def test_heat_table_pivots_and_keeps_the_worst(tmp_path):
    table = figures.heat_table(SYNTHETIC_REPORT)
    assert table.rows == [("SGD", "vs_torch"), ("Adam", "vs_spec")]
    assert table.cols == [("float32", "cpu"), ("float64", "cpu"), ("float32", "cuda")]
    assert table.status == [["pass", None, "skip"], ["fail", "pass", None]]
    assert table.ulp == [[0.0, None, None], [40.0, None, None]]
    assert table.skip_reasons == {"CUDA not available": 1}
    path = figures.plot_conformance_heat(table, tmp_path / "heat.png")
    assert png_size(path)[0] >= 400


def test_an_infinite_distance_is_drawn_in_the_darkest_colour(tmp_path):
    rows = [
        {
            "subject": "torch.optim.SGD(foreach=True)",
            "optimizer": "SGD",
            "check": "torch",
            "dtype": dt,
            "device": "cpu",
            "max_ulp": ulp,
            "status": "pass",
            "reason": "",
        }
        for dt, ulp in (("float32", float("inf")), ("float64", 3.0))
    ]
    table = figures.heat_table(rows)
    assert table.rows == [("torch.optim.SGD(foreach=True) as SGD", "torch")]
    assert figures.plot_conformance_heat(table, tmp_path / "audit_heat.png").exists()

"""The figures render headless, and the numbers behind them are the ones closed forms predict."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib.colors import LogNorm, to_rgba

import impl
from plots import cli, heat, seed

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STEPS = np.arange(seed.STEPS + 1)


def report_row(optimizer, check, dtype, device="cpu", status="pass", max_ulp=None, **extra):
    """One row of a conformance report (conformance.report's JSON format)."""
    return {
        "subject": f"impl.{optimizer}",
        "optimizer": optimizer,
        "check": check,
        "contract": "bitwise",
        "dtype": dtype,
        "device": device,
        "examples": 0 if status == "skip" else 50,
        "max_ulp": max_ulp,
        "status": status,
        "reason": "",
        **extra,
    }


def margin(measure, allowance):
    """A report row's margin (conformance.core.judge.Margin.as_dict's fields)."""
    ratio = 0.0 if measure == 0 else measure / allowance if allowance else float("inf")
    return {"measure": measure, "allowance": allowance, "ratio": ratio, "source": "derived",
            "mostly_absolute": False, "at": "param 0"}  # fmt: skip


SYNTHETIC_REPORT = [
    report_row("SGD", "torch", "float32", max_ulp=0, margin=margin(0, 0)),
    report_row("SGD", "torch", "float32", "cuda", "skip", reason="CUDA not available"),
    report_row("Adam", "spec", "float32", max_ulp=3, margin=margin(3, 12)),
    # the same cell through another subject: the cell shows the worse of the two
    report_row("Adam", "spec", "float32", status="fail", max_ulp=40, reason="bound 8",
               subject="impl.Adam(fused=True)", margin=margin(40, 8)),
    report_row("Adam", "spec", "float64"),
    report_row("Adam", "torch", "float64", status="skip", reason="refused by the registry"),
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
    cli.main(["--out", str(out), "--docs-img", str(out / "docs" / "seed-corrected.png")])
    return out


@pytest.fixture(scope="module")
def panels32() -> dict[str, seed.Panel]:
    return {p.run.title: p for p in seed.seed_panels()}


@pytest.fixture(scope="module")
def panels64() -> dict[str, seed.Panel]:
    return {p.run.title: p for p in seed.seed_panels(dtype=torch.float64)}


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
    # Only the heat-table is under test: skip the (slow) trajectory seed.
    fake = [tmp_path / f"{k}.png" for k in range(4)]
    monkeypatch.setattr(seed, "write_figures", lambda *a: list(fake))
    written = cli.write_all(tmp_path)
    assert not (tmp_path / "conformance_heat.png").exists()
    assert written == fake
    assert "skipping the conformance heat-table" in capsys.readouterr().out


def test_gd_lr_0_1_closed_form(panels64, panels32):
    # x ← x − 0.1·(2·x1, 20·x2): x1 shrinks by 0.8, x2 flips sign since 1 − 0.1·20 = −1.
    x = panels64["GD, lr=0.1"].impl.x
    np.testing.assert_allclose(x[:, 0], 4 * 0.8**STEPS, rtol=1e-12, atol=0)
    np.testing.assert_allclose(x[:, 1], 3 * (-1.0) ** STEPS, rtol=1e-12, atol=0)
    # In the figure's float32 run |x2| = 3 exactly, forever: f never drops below 90.
    x32 = panels32["GD, lr=0.1"].impl.x
    assert np.all(np.abs(x32[:, 1]) == 3)
    assert seed.loss_along(x32)[-1] == pytest.approx(90, rel=1e-12)


def test_gd_lr_0_01_closed_form(panels64):
    x = panels64["GD, lr=0.01"].impl.x
    np.testing.assert_allclose(x[:, 0], 4 * 0.98**STEPS, rtol=1e-12, atol=0)
    np.testing.assert_allclose(x[:, 1], 3 * 0.8**STEPS, rtol=1e-12, atol=0)


@pytest.mark.parametrize("title", [run.title for run in seed.SEED_RUNS])
def test_overlay_is_bitwise(panels32, panels64, title):
    """The dashed torch.optim line of every panel lies exactly on impl's, as the legend says."""
    for panels in (panels32, panels64):
        panel = panels[title]
        assert panel.bitwise, f"{title}: max |impl − torch| = {panel.max_abs_diff}"
        if panel.impl.momentum is not None:
            assert np.array_equal(panel.impl.momentum, panel.torch.momentum)


@pytest.mark.parametrize("run", seed.MORE_RUNS, ids=lambda run: run.name)
def test_more_optimizers_overlay_is_bitwise_and_they_descend(run):
    (panel,) = seed.seed_panels(runs=(run,))
    assert panel.bitwise, f"{run.title}: max |impl − torch| = {panel.max_abs_diff}"
    start, end = seed.loss_along(panel.impl.x[[0, -1]])
    assert end < start / 10, f"{run.title}: f went from {start} to {end}"


def test_panels_run_impl_and_torch():
    run = seed.SEED_RUNS[0]
    assert seed.trajectory(impl.SGD, run.hyper, steps=1).x.shape == (2, 2)
    assert getattr(impl, run.name) is impl.SGD and getattr(torch.optim, run.name) is torch.optim.SGD


def test_nesterov_true_iterate_follows_the_seeds_definition(panels64):
    """x = x' + η·μ·v satisfies the seed's x_{t+1} = x_t − η·v_{t+1} with the gradient at x'."""
    panel = panels64["Nesterov, lr=0.01, μ=0.9"]
    lr, mu = panel.run.hyper["lr"], panel.run.hyper["momentum"]
    look, v = panel.impl.x, panel.impl.momentum
    x = seed.nesterov_true_iterate(panel.impl, panel.run.hyper)
    np.testing.assert_array_equal(x[0], seed.X0)
    np.testing.assert_allclose(x[1:], x[:-1] - lr * v[1:], rtol=0, atol=1e-12)
    grads = np.array([seed.grad_f(p) for p in look[:-1]])
    np.testing.assert_allclose(v[1:], mu * v[:-1] + grads, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def dialects() -> dict[str, seed.Dialect]:
    return {d.variant: d for d in seed.seed_dialects()}


def test_dialects_use_the_seeds_hyperparameters_at_lr_0_1(dialects):
    assert dialects["seed:RMSProp"].hyper == {"lr": 0.1, "alpha": 0.9, "eps": 1e-8}
    assert dialects["seed:AdaGrad(code)"].hyper == {"lr": 0.1, "eps": 1e-8}


def test_rmsprop_dialect_first_step_closed_form(dialects):
    # Step 1 from h = 0: x − lr·g/√((1−α)·g²) = x − lr/√(1−α)·sign(g) (eps negligible):
    # the seed's α = 0.9 moves 0.1/√0.1 ≈ 0.316, torch's α = 0.99 moves 0.1/√0.01 = 1.
    d = dialects["seed:RMSProp"]
    np.testing.assert_allclose(d.seed[1], np.array(seed.X0) - 0.1 / np.sqrt(0.1), rtol=1e-7)
    np.testing.assert_allclose(d.torch[1], np.array(seed.X0) - 1.0, rtol=1e-7)
    assert d.max_abs_diff > 0.5  # the legend's number: α, not eps placement, makes the gap
    gap = abs(dialects["seed:RMSProp(text)"].max_abs_diff - d.max_abs_diff)
    assert gap < 1e-6


def test_adagrad_dialects_barely_differ_from_torch(dialects):
    for name in ("seed:AdaGrad(code)", "seed:AdaGrad(text)"):
        assert 0 < dialects[name].max_abs_diff < 1e-6


# ---------------------------------------------------------------------------------------------
# The report's heat-table
# ---------------------------------------------------------------------------------------------

OPTIMIZERS = [
    "ASGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "LBFGS", "Muon",
    "NAdam", "RAdam", "RMSprop", "Rprop", "SGD", "SGD-nesterov", "SparseAdam",
]  # fmt: skip
REAL = ("float16", "bfloat16", "float32", "float64")
ALL = (*REAL, "complex64", "complex128")
# Every check of today's matrix with its dtypes (conformance.registry.CHECK_DTYPES), for a
# report at least as wide as a real one: every optimizer gets every check.
MATRIX = {
    "torch": ALL, "spec": ALL, "spec_trajectory": ("float64",),
    "complex_as_real": ALL[4:], "maximize": REAL, "state_dict_roundtrip": REAL,
    "grad_untouched": REAL, "deterministic": REAL, "errors": REAL, "memory_safety": ALL,
    "factored_moments": REAL, "two_loop": REAL[2:], "wolfe": REAL[2:], "convergence": REAL[2:],
    "singular_values": REAL, "scale_invariance": REAL, "nesterov_lookahead": ("float64",),
    "sparse_rows": REAL,
}  # fmt: skip


def full_matrix(device: str, status: str = "pass") -> list[dict]:
    checks = {"distributed": ALL} if device == "cpu-gloo-2" else MATRIX
    return [
        report_row(opt, check, dtype, device, status, max_ulp=None if status == "skip" else 2.0)
        for opt in OPTIMIZERS
        for check, dtypes in checks.items()
        for dtype in dtypes
    ]


def red_pixels(path: Path) -> int:
    """How many pixels of the PNG are exactly the fail colour."""
    image = mpimg.imread(path)[..., :3]
    red = np.array(to_rgba(heat.FAIL_COLOR)[:3])
    return int(np.all(np.abs(image - red) < 1.5 / 255, axis=-1).sum())


def test_heat_table_has_one_row_per_optimizer_and_keeps_the_worst():
    table = heat.heat_table(SYNTHETIC_REPORT)
    (band,) = table.bands
    assert band.rows == ["SGD", "Adam"]
    assert [(g.check, g.dtypes) for g in band.groups] == [
        ("torch", ("float32", "float64")),
        ("spec", ("float32", "float64")),
    ]
    assert band.cell("Adam", "spec", "float32") == heat.Cell("fail", 40.0, ratio=5.0)
    # in either order: the worse row wins, not the later one
    (reverse,) = heat.heat_table(SYNTHETIC_REPORT[::-1]).bands
    assert reverse.cell("Adam", "spec", "float32") == heat.Cell("fail", 40.0, ratio=5.0)
    assert band.cell("Adam", "spec", "float64") == heat.Cell("pass")
    assert band.cell("SGD", "torch", "float32") == heat.Cell("pass", 0.0, ratio=0.0, bitwise=True)
    assert band.cell("SGD", "spec", "float32") == heat.Cell()  # no such report row
    assert band.cell("Adam", "torch", "float64") == heat.Cell("skip", skip=1)
    assert table.skip_reasons == {"refused by the registry": 1}


def test_a_device_that_only_skipped_is_a_note_not_a_band():
    table = heat.heat_table(SYNTHETIC_REPORT)
    assert table.skipped_devices == {
        "cuda": "cuda: not drawn, all 1 row skipped (CUDA not available)"
    }
    assert [band.devices for band in table.bands] == [("cpu",)]


MINI_MATRIX = [("torch", "float32"), ("torch", "float64"), ("spec", "float32")]


def test_devices_share_a_band_until_it_is_full(monkeypatch):
    # in the report's order: by device name
    rows = [
        *(report_row("SGD", c, d, "cpu") for c, d in MINI_MATRIX),
        *(report_row("SGD", "distributed", d, "cpu-gloo-2") for d in ("float32", "float64")),
        *(report_row("SGD", c, d, "cuda") for c, d in MINI_MATRIX),
    ]
    monkeypatch.setattr(heat, "MAX_COLUMNS", 5)
    bands = heat.heat_table(rows).bands
    assert [b.devices for b in bands] == [("cpu", "cpu-gloo-2"), ("cuda",)]
    monkeypatch.setattr(heat, "MAX_COLUMNS", 2)  # narrower than a device: cut between checks
    bands = heat.heat_table(rows).bands
    assert [[g.check for g in b.groups] for b in bands] == [
        ["torch"],
        ["spec"],
        ["distributed"],
        ["torch"],
        ["spec"],
    ]


def test_full_matrix_heat_table_fits_a_screen(tmp_path):
    report = [
        *full_matrix("cpu"),
        *full_matrix("cpu-gloo-2"),
        *full_matrix("cuda", status="skip"),  # CI's machines have no GPU
    ]
    table = heat.heat_table(report)
    assert [band.rows for band in table.bands] == [OPTIMIZERS]
    width, height = png_size(heat.plot_conformance_heat(table, tmp_path / "heat.png"))
    assert width <= 2000 and height <= 1000, (width, height)


def test_with_a_gpu_the_devices_stack_in_two_bands(tmp_path):
    report = [*full_matrix("cpu"), *full_matrix("cpu-gloo-2"), *full_matrix("cuda")]
    table = heat.heat_table(report)
    assert [band.rows for band in table.bands] == [OPTIMIZERS, OPTIMIZERS]
    width, height = png_size(heat.plot_conformance_heat(table, tmp_path / "heat.png"))
    assert width <= 2000 and height <= 1250, (width, height)


def test_a_failing_cell_is_drawn_red(tmp_path):
    # The key has a red patch too: count what the failing cell adds to it.
    passing = [dict(r, status="pass") if r["status"] == "fail" else r for r in SYNTHETIC_REPORT]
    with_fail = heat.plot_conformance_heat(heat.heat_table(SYNTHETIC_REPORT), tmp_path / "f.png")
    without = heat.plot_conformance_heat(heat.heat_table(passing), tmp_path / "p.png")
    cell_area = heat.CELL_W * heat.CELL_H * heat.DPI**2
    assert red_pixels(with_fail) - red_pixels(without) > cell_area / 2


@pytest.mark.parametrize("status", ["fail", "error", "something new"])
def test_anything_but_pass_or_skip_is_red(status):
    assert heat.cell_rgba(heat.Cell(status, 0.0), LogNorm(1, 10)) == to_rgba(heat.FAIL_COLOR)


def test_cell_colours_follow_the_key():
    norm = LogNorm(1e-4, 1)  # unclipped: <= 0 would be masked
    shades = colormaps[heat.ULP_CMAP]
    assert heat.cell_rgba(heat.Cell(), norm) == to_rgba(heat.MISSING_COLOR)
    assert heat.cell_rgba(heat.Cell("skip", skip=1), norm) == to_rgba(heat.SKIP_COLOR)
    assert heat.cell_rgba(heat.Cell("pass", 3.0), norm) == to_rgba(heat.PASS_COLOR)  # no margin
    bitwise = heat.Cell("pass", 0.0, ratio=0.0, bitwise=True)
    assert heat.cell_rgba(bitwise, norm) == to_rgba(heat.BITWISE_COLOR)
    assert heat.cell_rgba(heat.Cell("pass", 7.0, ratio=1e-2), norm) == shades(0.5)
    # 0 of a nonzero allowance is not "bitwise": the lightest shade
    assert heat.cell_rgba(heat.Cell("pass", 0.0, ratio=0.0), norm) == shades(0.0)


def test_the_shade_is_the_ratio_not_the_raw_measure():
    """A huge raw maximum far inside a huge allowance is light; a few ULPs at the edge of a
    tight one are dark (docs/bounds.md: why some raw maxima are huge)."""
    rows = [
        report_row("SparseAdam", "spec", "float64", max_ulp=4.8e10, margin=margin(4.8e10, 2.1e13)),
        report_row("Adam", "spec", "float64", max_ulp=3.0, margin=margin(3.0, 3.5)),
    ]
    (band,) = heat.heat_table(rows).bands
    norm, shades = heat.value_norm(), colormaps[heat.ULP_CMAP]
    huge, tight = (band.cell(name, "spec", "float64") for name in ("SparseAdam", "Adam"))
    assert heat.cell_rgba(huge, norm) == shades(norm(4.8e10 / 2.1e13))
    assert heat.cell_rgba(tight, norm) == shades(norm(3.0 / 3.5))
    assert norm(3.0 / 3.5) > 0.9 > 0.2 > norm(4.8e10 / 2.1e13), "the scale does not span 1e-3..1"


def test_an_infinite_ratio_is_drawn_in_the_darkest_colour(tmp_path):
    rows = [
        report_row("SGD", "torch", dt, max_ulp=ulp, subject="torch.optim.SGD(foreach=True)",
                   margin=margin(ulp, 1.0))
        for dt, ulp in (("float32", float("inf")), ("float64", 0.5))
    ]  # fmt: skip
    table = heat.heat_table(rows)
    (band,) = table.bands
    assert band.rows == ["torch.optim.SGD(foreach=True) as SGD"]
    darkest = colormaps[heat.ULP_CMAP](1.0)
    norm = heat.value_norm(table)
    assert heat.cell_rgba(band.cell(band.rows[0], "torch", "float32"), norm) == darkest
    assert heat.cell_rgba(heat.Cell("pass", ratio=float("nan")), norm) == darkest
    assert heat.plot_conformance_heat(table, tmp_path / "audit_heat.png").exists()

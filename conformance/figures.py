"""Pictures: the seed post's experiment reproduced and corrected, and the conformance report.

``python -m conformance.figures [--out reports] [--report PATH] [--docs-img PATH]`` writes

- ``more_optimizers.png``: Adamax, NAdam, RAdam, Adadelta, ASGD and Rprop on the same function,
  impl with torch.optim dashed over it;
- ``seed_corrected.png``: the seed's eight panels on f(x1, x2) = x1² + 10·x2² from (4, 3), run
  with ``impl`` and overlaid (dashed) with the same run of ``torch.optim``; the duplicated panel is
  replaced by Nesterov's stored look-ahead iterate drawn with the iterate it stands for;
- ``loss_vs_step.png``: f along every trajectory, one log-scale plot;
- ``seed_dialects.png``: the seed's RMSProp and AdaGrad formulas (``specs.VARIANTS``) beside
  torch's;
- ``conformance_heat.png``: ``conformance.json`` as an optimizer × check by dtype × device table,
  only when that report exists.

Data functions return what the plot functions draw, so tests can check the numbers behind a picture.
Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so they render headless anywhere.
"""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

import impl
import specs
from conformance.report import measure

X0 = (4.0, 3.0)
STEPS = 100
DTYPE = torch.float32  # the seed's torch.tensor([4.0, 3.0])
BOX = (-5.0, 5.0)  # the seed's plotting window, both axes
DPI = 100


def f(x):
    """The seed's test function; works on a tensor/array whose first axis is (x1, x2)."""
    return x[0] ** 2 + 10 * x[1] ** 2


def grad_f(x: np.ndarray) -> np.ndarray:
    """∇f in float64, for the spec evaluations (torch runs use autograd, as the seed does)."""
    return np.array([2.0 * x[0], 20.0 * x[1]])


def loss_along(xs: np.ndarray) -> np.ndarray:
    """f at every iterate of a (steps + 1, 2) trajectory, in float64."""
    return f(np.asarray(xs, dtype=np.float64).T)


# ---------------------------------------------------------------------------------------------
# Data: trajectories
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A seed experiment in torch semantics; ``name`` is the class in both impl and torch.optim."""

    title: str
    name: str
    hyper: dict


SEED_RUNS = (
    Run("GD, lr=0.1", "SGD", {"lr": 0.1}),
    Run("GD, lr=0.01", "SGD", {"lr": 0.01}),
    Run("Momentum, lr=0.01, μ=0.9", "SGD", {"lr": 0.01, "momentum": 0.9}),
    Run("Nesterov, lr=0.01, μ=0.9", "SGD", {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    Run("AdaGrad, lr=0.1", "Adagrad", {"lr": 0.1}),
    Run("RMSProp, lr=0.1", "RMSprop", {"lr": 0.1}),
    Run("Adam, lr=0.1", "Adam", {"lr": 0.1}),
)
NESTEROV = SEED_RUNS[3]
# torch.optim's other elementwise classes on the same function (not in the seed post)
MORE_RUNS = (
    Run("Adamax, lr=0.1", "Adamax", {"lr": 0.1}),
    Run("NAdam, lr=0.1", "NAdam", {"lr": 0.1}),
    Run("RAdam, lr=0.1 (rectified from t = 6)", "RAdam", {"lr": 0.1}),
    Run("Adadelta, lr=10", "Adadelta", {"lr": 10.0}),
    Run("ASGD, lr=0.01, t0=20", "ASGD", {"lr": 0.01, "t0": 20.0}),
    Run("Rprop, lr=0.1", "Rprop", {"lr": 0.1}),
)


@dataclass(frozen=True)
class Trajectory:
    """Iterates ``x`` (steps + 1, 2), start first; ``momentum_buffer`` after each step, if any."""

    x: np.ndarray
    momentum: np.ndarray | None


def trajectory(opt_cls, hyper: dict, steps: int = STEPS, dtype=DTYPE) -> Trajectory:
    """Minimise f from X0 with ``opt_cls([x], **hyper)``, gradients by autograd like the seed."""
    x = torch.tensor(X0, dtype=dtype, requires_grad=True)
    opt = opt_cls([x], **hyper)
    xs, bufs = [x.detach().clone()], [torch.zeros_like(x).detach()]
    for _ in range(steps):
        opt.zero_grad()
        f(x).backward()
        opt.step()
        xs.append(x.detach().clone())
        buf = opt.state[x].get("momentum_buffer")
        bufs.append(torch.zeros_like(xs[-1]) if buf is None else buf.detach().clone())
    has_momentum = "momentum_buffer" in opt.state[x]
    return Trajectory(torch.stack(xs).numpy(), torch.stack(bufs).numpy() if has_momentum else None)


@dataclass(frozen=True)
class Panel:
    """One seed experiment run by impl (drawn solid) and by torch.optim (drawn dashed over it)."""

    run: Run
    impl: Trajectory
    torch: Trajectory

    @property
    def bitwise(self) -> bool:
        return self.impl.x.dtype == self.torch.x.dtype and np.array_equal(self.impl.x, self.torch.x)

    @property
    def max_abs_diff(self) -> float:
        return float(np.max(np.abs(self.impl.x.astype(np.float64) - self.torch.x)))


def seed_panels(steps: int = STEPS, dtype=DTYPE, runs=SEED_RUNS) -> list[Panel]:
    """The seed's seven distinct experiments (or ``runs``), each through impl and through
    torch.optim."""
    return [
        Panel(
            run,
            trajectory(getattr(impl, run.name), run.hyper, steps, dtype),
            trajectory(getattr(torch.optim, run.name), run.hyper, steps, dtype),
        )
        for run in runs
    ]


def nesterov_true_iterate(lookahead: Trajectory, hyper: dict) -> np.ndarray:
    """The seed's x_t from torch's stored look-ahead x'_t = x_t − η·μ·v_t, i.e. x'_t + η·μ·v_t.

    A change of variables (float64), not a third implementation: both come from the impl run.
    """
    shift = hyper["lr"] * hyper["momentum"] * lookahead.momentum.astype(np.float64)
    return lookahead.x.astype(np.float64) + shift


# ---------------------------------------------------------------------------------------------
# Data: seed dialects (specs) vs torch semantics
# ---------------------------------------------------------------------------------------------

# (variant in specs.VARIANTS, torch.optim class it is set against, what makes it differ)
DIALECTS = (
    ("seed:RMSProp", "RMSprop", "α=0.9, eps inside √"),
    ("seed:RMSProp(text)", "RMSprop", "α=0.9, eps outside √"),
    ("seed:AdaGrad(code)", "Adagrad", "eps=1e-8 inside √"),
    ("seed:AdaGrad(text)", "Adagrad", "eps=1e-8 outside √"),
)
SEED_LR = 0.1  # the seed's figure runs AdaGrad and RMSProp at lr=0.1


@dataclass(frozen=True)
class Dialect:
    """A seed formula's float64 trajectory beside torch's, on the seed's own experiment."""

    variant: str
    torch_name: str
    note: str
    hyper: dict
    seed: np.ndarray
    torch: np.ndarray

    @property
    def max_abs_diff(self) -> float:
        return float(np.max(np.abs(self.seed - self.torch)))


def spec_hyper(variant: str, **overrides) -> dict:
    """A variant's hyperparameter defaults, as its spec declares them, with ``overrides``."""
    hyper = {h.name: h.default for h in specs.VARIANTS[variant].hypers}
    unknown = set(overrides) - set(hyper)
    if unknown:
        raise KeyError(
            f"{variant} has no hyperparameters {sorted(unknown)}; it has {sorted(hyper)}"
        )
    return {**hyper, **overrides}


def seed_dialects(steps: int = STEPS) -> list[Dialect]:
    """Every seed dialect run by its spec, and torch.optim at the same lr, both in float64."""
    out = []
    for variant, torch_name, note in DIALECTS:
        hyper = spec_hyper(variant, lr=SEED_LR)
        seed = specs.VARIANTS[variant].run_float64(np.array(X0), grad_f, hyper, steps)
        ref = trajectory(getattr(torch.optim, torch_name), {"lr": SEED_LR}, steps, torch.float64)
        out.append(Dialect(variant, torch_name, note, hyper, np.asarray(seed), ref.x))
    return out


# ---------------------------------------------------------------------------------------------
# Data: conformance heat-table
# ---------------------------------------------------------------------------------------------

# Worst first: a cell that several report rows fall into shows its worst status.
_SEVERITY = {"fail": 3, "error": 3, "pass": 2, "skip": 1}


@dataclass(frozen=True)
class HeatTable:
    """``status[i][j]`` / ``ulp[i][j]`` for row (optimizer, check) i and column (dtype, device) j;
    ``None`` status means the report has no such row."""

    rows: list[tuple[str, str]]
    cols: list[tuple[str, str]]
    status: list[list[str | None]]
    ulp: list[list[float | None]]
    skip_reasons: dict[str, int]


def _worse(a: str | None, b: str) -> str:
    return b if a is None or _SEVERITY.get(b, 3) > _SEVERITY.get(a, 3) else a


def _row_label(r: dict) -> str:
    """The optimizer entry for impl's own rows; subject and entry for any other subject's."""
    subject = r.get("subject", "")
    return (
        r["optimizer"]
        if not subject or subject.startswith("impl.")
        else (f"{subject} as {r['optimizer']}")
    )


def heat_table(report: Sequence[dict]) -> HeatTable:
    """Pivot the report's rows (subject, optimizer, check, dtype, device, max_ulp, status)."""
    # The report's own order (the registry's), columns grouped by device.
    rows = list(dict.fromkeys((_row_label(r), r["check"]) for r in report))
    cols = sorted(dict.fromkeys((r["dtype"], r["device"]) for r in report), key=lambda c: c[1])
    status = [[None] * len(cols) for _ in rows]
    ulp = [[None] * len(cols) for _ in rows]
    reasons: dict[str, int] = {}
    for r in report:
        i, j = rows.index((_row_label(r), r["check"])), cols.index((r["dtype"], r["device"]))
        status[i][j] = _worse(status[i][j], r["status"])
        if r.get("max_ulp") is not None:
            ulp[i][j] = max(ulp[i][j] or 0.0, float(r["max_ulp"]))
        if r["status"] == "skip":
            reason = r.get("reason") or "no reason given"
            reasons[reason] = reasons.get(reason, 0) + 1
    return HeatTable(rows, cols, status, ulp, reasons)


def load_report(path: Path) -> list[dict] | None:
    """The conformance report's rows, or None when the harness has not written one."""
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------------------------------------
# Plotting
# ---------------------------------------------------------------------------------------------

# Log-spaced so the valley floor (f ≪ 1 along x2 = 0) shows, unlike the seed's linear levels.
CONTOUR_LEVELS = np.logspace(-2, np.log10(250), 12)
IMPL_STYLE = {"color": "tab:blue", "lw": 2.4, "alpha": 0.55, "marker": ".", "ms": 4}
TORCH_STYLE = {"color": "black", "lw": 0.9, "ls": (0, (3, 2))}


def _landscape(ax) -> None:
    """f's log-spaced contours, the minimum ★, the seed's window, equal axes."""
    grid = np.linspace(*BOX, 201)
    X, Y = np.meshgrid(grid, grid)
    ax.contour(X, Y, f(np.array([X, Y])), levels=CONTOUR_LEVELS, cmap="Greys_r", linewidths=0.6)
    ax.plot(0, 0, marker="*", ms=13, color="gold", mec="black", mew=0.7, ls="none", zorder=5)
    ax.set_xlim(*BOX)
    ax.set_ylim(*BOX)
    ax.set_aspect("equal")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")


def _ends(ax, xs: np.ndarray, color: str = "black") -> None:
    """Start ○ and end × of a trajectory."""
    ax.plot(*xs[0], marker="o", ms=9, mfc="none", mec=color, mew=1.5, ls="none", zorder=6)
    ax.plot(*xs[-1], marker="x", ms=9, color=color, mew=2.0, ls="none", zorder=6)


def _conformance_label(panel: Panel) -> str:
    if panel.bitwise:
        return f"torch.optim.{panel.run.name} (dashed): bitwise equal"
    return f"torch.optim.{panel.run.name} (dashed): max|Δx| = {panel.max_abs_diff:.2g}"


def _trajectory_panel(ax, panel: Panel) -> None:
    _landscape(ax)
    ax.plot(*panel.impl.x.T, label=f"impl.{panel.run.name}", **IMPL_STYLE)
    ax.plot(*panel.torch.x.T, label=_conformance_label(panel), **TORCH_STYLE)
    _ends(ax, panel.impl.x)
    end = loss_along(panel.impl.x[-1:])[0]
    ax.set_title(f"{panel.run.title}\nf(end) = {end:.3g}", fontsize=10)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.85)


def _nesterov_pair_panel(ax, panel: Panel) -> None:
    """Torch's Nesterov iterate is the look-ahead x'; the seed's x = x' + η·μ·v is drawn with it."""
    _landscape(ax)
    true_x = nesterov_true_iterate(panel.impl, panel.run.hyper)
    ax.plot(
        *true_x.T,
        color="tab:orange",
        lw=1.6,
        marker=".",
        ms=4,
        label="x (look-ahead definition's iterate)",
    )
    ax.plot(*panel.impl.x.T, label="x′ = x − ημv (impl/torch store)", **IMPL_STYLE)
    # The look-ahead offset ημv for the first steps, where it is large enough to see.
    for a, b in zip(true_x[1:13], panel.impl.x[1:13]):
        ax.plot([a[0], b[0]], [a[1], b[1]], color="tab:red", lw=0.8)
    ax.plot([], [], color="tab:red", lw=0.8, label="look-ahead ημv, steps 1-12")
    _ends(ax, true_x, color="tab:orange")
    _ends(ax, panel.impl.x)
    _zoom_to(ax, np.concatenate([true_x, panel.impl.x]))
    ax.set_title(
        "Nesterov, lr=0.01, μ=0.9: both iterates (zoomed)\n"
        'replaces the seed\'s duplicate "GD, lr=0.1" panel',
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=7, framealpha=0.85)


def _zoom_to(ax, points: np.ndarray, margin: float = 0.4) -> None:
    """Square window around ``points`` (equal aspect kept), so small offsets become visible."""
    lo, hi = points.min(axis=0) - margin, points.max(axis=0) + margin
    half, mid = (hi - lo).max() / 2, (hi + lo) / 2
    ax.set_xlim(mid[0] - half, mid[0] + half)
    ax.set_ylim(mid[1] - half, mid[1] + half)


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def plot_seed_corrected(panels: list[Panel], path: Path, dtype=DTYPE) -> Path:
    """The seed's 2×4 figure with its duplicate replaced: panels 1-4, Nesterov pair, 5-7."""
    fig = Figure(figsize=(16, 9), dpi=DPI, layout="constrained")
    axes = fig.subplots(2, 4).ravel()
    order = [*panels[:4], None, *panels[4:]]
    for ax, panel in zip(axes, order):
        if panel is None:
            _nesterov_pair_panel(ax, panels[3])
        else:
            _trajectory_panel(ax, panel)
    fig.suptitle(
        f"The seed's experiment, corrected: f(x1, x2) = x1² + 10·x2² from (4, 3), {STEPS} steps, "
        f"{_dtype_name(dtype)}\nimpl solid, torch.optim dashed over it;  ○ start, × end, "
        "★ minimum;  contours log-spaced (f = 0.01 … 250)",
        fontsize=12,
    )
    return _save(fig, path)


def plot_more_optimizers(panels: list[Panel], path: Path, dtype=DTYPE) -> Path:
    """The six elementwise classes the seed post does not have, on its function, 2×3."""
    fig = Figure(figsize=(13, 8.5), dpi=DPI, layout="constrained")
    for ax, panel in zip(fig.subplots(2, 3).ravel(), panels, strict=True):
        _trajectory_panel(ax, panel)
    fig.suptitle(
        f"torch.optim's other elementwise optimizers on the seed's f = x1² + 10·x2² from (4, 3), "
        f"{STEPS} steps, {_dtype_name(dtype)}\nimpl solid, torch.optim dashed over it;  "
        "○ start, × end, ★ minimum",
        fontsize=12,
    )
    return _save(fig, path)


def plot_loss_vs_step(panels: list[Panel], path: Path, dtype=DTYPE) -> Path:
    """f(x_t) for every seed experiment on one log axis; torch.optim dashed over impl."""
    fig = Figure(figsize=(10, 6), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for k, panel in enumerate(panels):
        color = f"C{k}"
        ax.semilogy(loss_along(panel.impl.x), color=color, lw=2.4, alpha=0.6, label=panel.run.title)
        ax.semilogy(loss_along(panel.torch.x), color="black", lw=0.7, ls=(0, (3, 2)))
        if panel.run is NESTEROV:
            true_x = nesterov_true_iterate(panel.impl, panel.run.hyper)
            ax.semilogy(loss_along(true_x), color=color, lw=1.2, ls=":", label="Nesterov, seed's x")
    ax.plot([], [], color="black", lw=0.7, ls=(0, (3, 2)), label="torch.optim (each run)")
    ax.set_xlabel("step t")
    ax.set_ylabel("f(x_t)  (log scale)")
    ax.set_title(
        f"Loss vs step on f = x1² + 10·x2² from (4, 3), {_dtype_name(dtype)}: "
        "impl (coloured) and torch.optim (dashed)"
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def _dialect_label(d: Dialect) -> str:
    f_seed, f_torch = loss_along(d.seed[-1:])[0], loss_along(d.torch[-1:])[0]
    return (
        f"{d.variant} ({d.note})\nmax|Δx| vs torch = {d.max_abs_diff:.2g}; "
        f"f(end) = {f_seed:.2g} (torch {f_torch:.2g})"
    )


# Dashed where a dialect coincides with another at this scale, so both stay visible.
DIALECT_STYLE = {
    "seed:RMSProp": {"color": "tab:red"},
    "seed:RMSProp(text)": {"color": "tab:orange", "ls": (0, (4, 3))},
    "seed:AdaGrad(code)": {"color": "tab:green"},
    "seed:AdaGrad(text)": {"color": "tab:purple", "ls": (0, (4, 3))},
}
TORCH_REF_STYLE = {"RMSprop": {"color": "tab:blue"}, "Adagrad": {"color": "tab:cyan"}}


def _torch_ref(dialects: list[Dialect], torch_name: str) -> np.ndarray:
    return next(d.torch for d in dialects if d.torch_name == torch_name)


def _dialect_panel(ax, dialects: list[Dialect], torch_name: str) -> None:
    _landscape(ax)
    ref = _torch_ref(dialects, torch_name)
    style = {**IMPL_STYLE, **TORCH_REF_STYLE[torch_name]}
    ax.plot(*ref.T, label=f"torch.optim.{torch_name}(lr={SEED_LR})", **style)
    _ends(ax, ref)
    mine = [d for d in dialects if d.torch_name == torch_name]
    for d in mine:
        color = DIALECT_STYLE[d.variant]["color"]
        ax.plot(
            *d.seed.T, lw=1.3, marker=".", ms=4, label=_dialect_label(d), **DIALECT_STYLE[d.variant]
        )
        _ends(ax, d.seed, color=color)
    _zoom_to(ax, np.concatenate([ref, *(d.seed for d in mine)]))
    ax.set_title(f"{torch_name}: the seed's formulas vs torch's (lr={SEED_LR}, dots = steps)")
    ax.legend(loc="lower right", fontsize=7, framealpha=0.9)


def plot_seed_dialects(dialects: list[Dialect], path: Path) -> Path:
    """The seed's RMSProp/AdaGrad dialects beside torch semantics: paths and losses."""
    fig = Figure(figsize=(19, 6.6), dpi=DPI, layout="constrained")
    ax_rms, ax_ada, ax_loss = fig.subplots(1, 3)
    _dialect_panel(ax_rms, dialects, "RMSprop")
    _dialect_panel(ax_ada, dialects, "Adagrad")
    for name, style in TORCH_REF_STYLE.items():
        ref = _torch_ref(dialects, name)
        ax_loss.semilogy(loss_along(ref), lw=3, alpha=0.5, label=f"torch.optim.{name}", **style)
    for d in dialects:
        ax_loss.semilogy(loss_along(d.seed), lw=1.3, label=d.variant, **DIALECT_STYLE[d.variant])
    ax_loss.set_xlabel("step t")
    ax_loss.set_ylabel("f(x_t)  (log scale)")
    ax_loss.set_title("Loss vs step")
    ax_loss.grid(True, alpha=0.3)
    ax_loss.legend(fontsize=8)
    fig.suptitle(
        "The seed's dialects vs torch semantics on the seed's experiment, float64 "
        "(seed formulas evaluated from specs.VARIANTS; ○ start, × end, ★ minimum)",
        fontsize=12,
    )
    return _save(fig, path)


BITWISE_COLOR, PASS_COLOR = "#7fc97f", "#c7e9c0"
SKIP_COLOR, FAIL_COLOR, MISSING_COLOR = "#d9d9d9", "#e31a1c", "white"
ULP_CMAP = "YlOrBr"


def _cell(status: str | None, ulp: float | None, norm, cmap) -> tuple[tuple, str]:
    """Colour and text of one heat-table cell."""
    if status is None:
        return to_rgba(MISSING_COLOR), "—"
    if status == "skip":
        return to_rgba(SKIP_COLOR), "skip"
    if status != "pass":  # fail, error, or anything unknown: never shown as a pass
        label = status.upper()
        return to_rgba(FAIL_COLOR), label if ulp is None else f"{label}\n{ulp:.3g}"
    if ulp is None:
        return to_rgba(PASS_COLOR), "pass"
    if ulp == 0:
        return to_rgba(BITWISE_COLOR), "bitwise"
    return cmap(norm(ulp)), f"{ulp:.3g}"


def plot_conformance_heat(table: HeatTable, path: Path) -> Path:
    """Optimizer × check rows by dtype × device columns, coloured by max ULP; skips grey."""
    cmap = colormaps[ULP_CMAP]
    finite = [u for row in table.ulp for u in row if u and np.isfinite(u)]
    # clip: an infinite distance (NaN against a number) takes the darkest colour
    norm = LogNorm(vmin=1, vmax=max([10.0, *finite]), clip=True)
    n_rows, n_cols = len(table.rows), len(table.cols)
    labels = [
        f"{opt} · {check}" + ("" if measure(check) == "ULP" else f" ({measure(check)})")
        for opt, check in table.rows
    ]
    label_width = 0.075 * max((len(label) for label in labels), default=20)
    fig = Figure(
        figsize=(1.5 + label_width + 1.25 * n_cols, 1.8 + 0.32 * n_rows),
        dpi=DPI,
        layout="constrained",
    )
    ax = fig.subplots()
    image = np.zeros((n_rows, n_cols, 4))
    for i in range(n_rows):
        for j in range(n_cols):
            image[i, j], text = _cell(table.status[i][j], table.ulp[i][j], norm, cmap)
            dark = (
                table.status[i][j] not in (None, "skip", "pass")
                or (table.ulp[i][j] or 0) > norm.vmax**0.6
            )
            ax.text(
                j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "black"
            )
    ax.imshow(image, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(n_cols), [f"{dt}\n{dev}" for dt, dev in table.cols], fontsize=8)
    ax.set_yticks(range(n_rows), labels, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_xticks(np.arange(-0.5, n_cols), minor=True)
    ax.set_yticks(np.arange(-0.5, n_rows), minor=True)
    ax.grid(which="minor", color="white", lw=1.5)
    ax.tick_params(which="minor", length=0)
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label="max error (log)", shrink=0.6)
    handles = [
        Patch(color=BITWISE_COLOR, label="bitwise (0 ULP)"),
        Patch(color=PASS_COLOR, label="pass (no ULP measured)"),
        Patch(color=SKIP_COLOR, label="\n".join(_skip_labels(table.skip_reasons))),
        Patch(color=FAIL_COLOR, label="fail (or error)"),
        Patch(facecolor=MISSING_COLOR, edgecolor="grey", label="— no such row in the report"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2, fontsize=8)
    ax.set_title(
        "Max error per subject × check × dtype × device (ULP unless the row names a measure)"
    )
    return _save(fig, path)


def _skip_labels(reasons: dict[str, int], width: int = 110) -> list[str]:
    """'skip' with each reason and how many report rows gave it, wrapped to ``width``."""
    return [
        textwrap.fill(f"skip: {reason} ({n} rows)", width) for reason, n in reasons.items()
    ] or ["skip"]


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def write_all(out: Path, report: Path | None = None, dtype=DTYPE, seed=True) -> list[Path]:
    """Render every figure under ``out`` (``seed=False``: only the report's heat-table); the
    heat-table only if the report exists."""
    out = Path(out)
    written = []
    if seed:
        panels = seed_panels(dtype=dtype)
        written = [
            plot_seed_corrected(panels, out / "seed_corrected.png", dtype),
            plot_loss_vs_step(panels, out / "loss_vs_step.png", dtype),
            plot_seed_dialects(seed_dialects(), out / "seed_dialects.png"),
            plot_more_optimizers(
                seed_panels(dtype=dtype, runs=MORE_RUNS), out / "more_optimizers.png", dtype
            ),
        ]
    report = out / "conformance.json" if report is None else Path(report)
    rows = load_report(report)
    if rows is None:
        print(f"figures: no {report}; skipping the conformance heat-table (run the harness first)")
    else:
        heat = out / f"{report.stem}_heat.png"  # conformance_heat.png, audit_heat.png
        written.append(plot_conformance_heat(heat_table(rows), heat))
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.figures", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output folder")
    parser.add_argument(
        "--report", type=Path, help="conformance JSON (default: OUT/conformance.json)"
    )
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--report-only", action="store_true", help="only the report's heat-table")
    parser.add_argument("--docs-img", type=Path, help="also copy seed_corrected.png here (README)")
    args = parser.parse_args(argv)
    written = write_all(args.out, args.report, getattr(torch, args.dtype), not args.report_only)
    if args.docs_img:
        args.docs_img.parent.mkdir(parents=True, exist_ok=True)
        written.append(Path(shutil.copyfile(written[0], args.docs_img)))
    for path in written:
        print(f"figures: wrote {path}")


if __name__ == "__main__":
    main()

"""The seed post's experiment reproduced and corrected, as data and as figures.

- ``seed_corrected.png``: the seed's eight panels on f(x1, x2) = x1² + 10·x2² from (4, 3), run
  with ``impl`` and overlaid (dashed) with the same run of ``torch.optim``; the duplicated panel is
  replaced by Nesterov's stored look-ahead iterate drawn with the iterate it stands for;
- ``loss_vs_step.png``: f along every trajectory, one log-scale plot;
- ``seed_dialects.png``: the seed's RMSProp and AdaGrad formulas (``specs.VARIANTS``) beside
  torch's;
- ``more_optimizers.png``: Adamax, NAdam, RAdam, Adadelta, ASGD and Rprop on the same function,
  impl with torch.optim dashed over it.

Data functions return what the plot functions draw, so tests can check the numbers behind a picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

import impl
import specs
from plots.canvas import DPI, save

X0 = (4.0, 3.0)
STEPS = 100
DTYPE = torch.float32  # the seed's torch.tensor([4.0, 3.0])
BOX = (-5.0, 5.0)  # the seed's plotting window, both axes


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
    return save(fig, path)


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
    return save(fig, path)


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
    return save(fig, path)


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
    return save(fig, path)


def write_figures(out: Path, dtype=DTYPE) -> list[Path]:
    """The four seed figures under ``out``, ``seed_corrected.png`` first (the README's picture)."""
    out = Path(out)
    panels = seed_panels(dtype=dtype)
    return [
        plot_seed_corrected(panels, out / "seed_corrected.png", dtype),
        plot_loss_vs_step(panels, out / "loss_vs_step.png", dtype),
        plot_seed_dialects(seed_dialects(), out / "seed_dialects.png"),
        plot_more_optimizers(
            seed_panels(dtype=dtype, runs=MORE_RUNS), out / "more_optimizers.png", dtype
        ),
    ]

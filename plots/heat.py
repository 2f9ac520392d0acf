"""The conformance report as a heat-table: one row per optimizer, one column group per check,
one sub-column per dtype.

A report (``reports/conformance.json``, ``reports/audit.json``) is a list of rows keyed by
(subject, optimizer, check, dtype, device). The table pivots them so that a whole run fits on a
screen: a row is a registry entry (or, for a subject other than impl's own, "subject as
entry"), and the eye runs along it to find the red cells. Devices sit side by side while they
fit in ``MAX_COLUMNS``; beyond that each further device starts a band of its own below. A device
where every row was skipped (CUDA on a machine without a GPU) is not drawn as a block of grey:
one line under the table says so, and why.

Colours: fail red (with ✕), skip grey (with the number of its reason, listed under the table),
pass green when bitwise (a margin of 0 of 0) and otherwise shaded by the row's margin ratio, its
largest error over the allowance it was judged against, on one log scale from ``RATIO_FLOOR``
to 1: a dark cell came close to its allowance, a light one is far inside it (a loose bound, or a
good implementation). A pass whose row recorded no margin (a check that judges without an
allowance) is plain light green; white where the report has no such row.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from conformance.report import measure
from plots.canvas import DPI, save

# The report's dtype names, in the registry's order, and the short forms the sub-columns show.
DTYPES = {
    "float16": "f16",
    "bfloat16": "bf16",
    "float32": "f32",
    "float64": "f64",
    "complex64": "c64",
    "complex128": "c128",
}
# Wider than this many sub-columns and a band stops taking further devices (about 1800 px).
MAX_COLUMNS = 72
# Higher is worse: a cell that several report rows fall into shows its worst status; a status
# not listed here counts as a failure.
SEVERITY = {"fail": 3, "error": 3, "pass": 2, "skip": 1}

BITWISE_COLOR, PASS_COLOR = "#7fc97f", "#c7e9c0"
SKIP_COLOR, FAIL_COLOR, MISSING_COLOR = "#d9d9d9", "#e31a1c", "white"
SEPARATOR_COLOR = "#4d4d4d"
ULP_CMAP = "YlOrBr"
RATIO_FLOOR = 1e-3  # ratios below it share the lightest shade

# Layout, in inches (DPI px each): cell, row label character, and the fixed parts.
CELL_W, CELL_H = 0.24, 0.2
LABEL_CHAR_W = 0.068  # one character of a row label at fontsize 8.5
HEADER_CHAR_H = 0.055  # one character of a rotated group label at fontsize 8
NOTE_LINE_H = 11.5 / 72  # the notes' line spacing, 11.5 pt
MIN_CELLS_W = 12.0  # the key's width: a table of few columns, or none, still has room for it
COLORBAR_W, TITLE_H, LEGEND_H, DTYPE_LABEL_H = 1.0, 0.55, 0.45, 0.4
NOTE_CHAR_W = 0.064  # one character of a note under the table, at fontsize 8


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """One check on one device: the column group, with the dtypes the report has for it."""

    check: str
    device: str
    measure: str
    dtypes: tuple[str, ...]


@dataclass(frozen=True)
class Cell:
    """The worst of the report rows that fall on one (row, group, dtype); ``status`` None where
    the report has none. ``value``: the largest raw measure; ``ratio``: the largest margin
    ratio (None: no row recorded one), what the colour shows; ``bitwise``: every row's margin is
    0 of 0. ``skip`` is the 1-based number of the skip reason in ``HeatTable.skip_reasons``."""

    status: str | None = None
    value: float | None = None
    skip: int | None = None
    ratio: float | None = None
    bitwise: bool = False


@dataclass(frozen=True)
class Band:
    """One strip of the figure: ``cells[i][j]`` for row label ``rows[i]`` and column
    ``columns[j]`` (the groups' dtypes, group after group)."""

    devices: tuple[str, ...]
    rows: list[str]
    groups: list[Group]
    cells: list[list[Cell]]

    @property
    def columns(self) -> list[tuple[Group, str]]:
        return [(g, dtype) for g in self.groups for dtype in g.dtypes]

    def cell(self, row: str, check: str, dtype: str, device: str | None = None) -> Cell:
        """The cell of ``row`` under ``check`` / ``dtype`` (on ``device``, if the band has
        several); a blank Cell where the band has no such column."""
        i = self.rows.index(row)
        for j, (g, dt) in enumerate(self.columns):
            if (g.check, dt) == (check, dtype) and device in (None, g.device):
                return self.cells[i][j]
        return Cell()


@dataclass(frozen=True)
class HeatTable:
    """The bands to draw, the devices left out because nothing ran on them (device -> a line
    saying why), and the skip reasons of the drawn cells (reason -> report rows), numbered from
    1 in this order."""

    bands: list[Band]
    skipped_devices: dict[str, str]
    skip_reasons: dict[str, int]


def row_label(r: dict) -> str:
    """The registry entry for impl's own rows; subject and entry for any other subject's."""
    subject = r.get("subject", "")
    if not subject or subject.startswith("impl."):
        return r["optimizer"]
    return f"{subject} as {r['optimizer']}"


def _measure(r: dict) -> str:
    # Reports written before rows carried their measure name it by the check alone.
    return r.get("measure") or measure(r["check"])


def _dtype_order(dtype: str) -> tuple[int, str]:
    return (list(DTYPES).index(dtype) if dtype in DTYPES else len(DTYPES), dtype)


def _groups(rows: Sequence[dict]) -> list[Group]:
    """Column groups in the report's order (the registry's), each with its dtypes sorted."""
    dtypes: dict[tuple[str, str], set[str]] = {}
    measures: dict[tuple[str, str], str] = {}
    for r in rows:
        key = (r["check"], r["device"])
        dtypes.setdefault(key, set()).add(r["dtype"])
        measures.setdefault(key, _measure(r))
    return [
        Group(check, device, measures[check, device], tuple(sorted(dts, key=_dtype_order)))
        for (check, device), dts in dtypes.items()
    ]


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _fully_skipped(rows: Sequence[dict]) -> dict[str, str]:
    """Devices whose every row is a skip -> 'DEVICE: all N rows skipped (commonest reason)'."""
    by_device: dict[str, list[dict]] = {}
    for r in rows:
        by_device.setdefault(r["device"], []).append(r)
    out = {}
    for device, rs in by_device.items():
        if all(r["status"] == "skip" for r in rs):
            reasons = Counter(r.get("reason") or "no reason given" for r in rs)
            (top, _), others = reasons.most_common(1)[0], len(reasons) - 1
            more = f"; and {others} other reason(s)" if others else ""
            out[device] = f"{device}: not drawn, all {_rows(len(rs))} skipped ({top}{more})"
    return out


def _pack(groups: list[Group]) -> list[list[Group]]:
    """Whole devices side by side while they fit in MAX_COLUMNS; a device wider than that
    alone is cut between groups."""
    bands: list[list[Group]] = []
    width = 0
    for device in dict.fromkeys(g.device for g in groups):
        mine = [g for g in groups if g.device == device]
        need = sum(len(g.dtypes) for g in mine)
        if bands and width + need <= MAX_COLUMNS:
            bands[-1].extend(mine)
            width += need
            continue
        bands.append([])
        width = 0
        for g in mine:
            if bands[-1] and width + len(g.dtypes) > MAX_COLUMNS:
                bands.append([])
                width = 0
            bands[-1].append(g)
            width += len(g.dtypes)
    return bands


def _larger(a: float | None, b) -> float | None:
    return a if b is None else float(b) if a is None else max(a, float(b))


def _worse(old: Cell, r: dict, skip: int | None) -> Cell:
    """Fold report row ``r`` into a cell: the worse status wins, the value and the ratio are
    the largest, bitwise while every row's margin is 0 of 0."""
    margin = r.get("margin")
    ratio = _larger(old.ratio, margin and margin["ratio"])
    exact = bool(margin) and margin["measure"] == 0 and margin["allowance"] == 0
    bitwise = exact and (old.status is None or old.bitwise)
    status, reason = old.status, old.skip
    if status is None or SEVERITY.get(r["status"], 3) > SEVERITY.get(status, 3):
        status, reason = r["status"], skip
    return Cell(status, _larger(old.value, r.get("max_ulp")), reason, ratio, bitwise)


def _band(groups: list[Group], rows: Sequence[dict], reasons: dict[str, int]) -> Band:
    wanted = {(g.check, g.device) for g in groups}
    mine = [r for r in rows if (r["check"], r["device"]) in wanted]
    labels = list(dict.fromkeys(row_label(r) for r in mine))
    keys = [(g.check, g.device, dt) for g in groups for dt in g.dtypes]
    columns = {key: j for j, key in enumerate(keys)}
    cells = [[Cell()] * len(columns) for _ in labels]
    for r in mine:
        i, j = labels.index(row_label(r)), columns[r["check"], r["device"], r["dtype"]]
        skip = None
        if r["status"] == "skip":
            skip = list(reasons).index(r.get("reason") or "no reason given") + 1
        cells[i][j] = _worse(cells[i][j], r, skip)
    devices = tuple(dict.fromkeys(g.device for g in groups))
    return Band(devices, labels, groups, cells)


def heat_table(report: Sequence[dict]) -> HeatTable:
    """Pivot the report's rows (subject, optimizer, check, dtype, device, max_ulp, status)."""
    skipped = _fully_skipped(report)
    drawn = [r for r in report if r["device"] not in skipped]
    reasons = Counter(r.get("reason") or "no reason given" for r in drawn if r["status"] == "skip")
    reasons = dict(reasons.most_common())
    bands = [_band(groups, drawn, reasons) for groups in _pack(_groups(drawn))]
    return HeatTable(bands, skipped, reasons)


def load_report(path: Path) -> list[dict] | None:
    """The conformance report's rows, or None when the harness has not written one."""
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------------------------------------
# Colours
# ---------------------------------------------------------------------------------------------


def value_norm(table: HeatTable | None = None) -> LogNorm:
    """One log scale for every cell's ratio, whatever its measure: RATIO_FLOOR to 1 (a pass
    is at most 1; a failure is red, not shaded)."""
    return LogNorm(vmin=RATIO_FLOOR, vmax=1.0, clip=True)


def cell_rgba(cell: Cell, norm: Normalize) -> tuple:
    """The colour of one cell. Anything not a pass or a skip (fail, error, unknown) is red:
    never shown as a pass."""
    if cell.status is None:
        return to_rgba(MISSING_COLOR)
    if cell.status == "skip":
        return to_rgba(SKIP_COLOR)
    if cell.status != "pass":
        return to_rgba(FAIL_COLOR)
    if cell.bitwise:
        return to_rgba(BITWISE_COLOR)
    if cell.ratio is None:
        return to_rgba(PASS_COLOR)
    return _shade(cell.ratio, norm)


def _shade(value: float, norm: Normalize) -> tuple:
    cmap = colormaps[ULP_CMAP]
    if not np.isfinite(value):  # NaN against a number is infinitely far: the darkest colour
        return cmap(1.0)
    # Below the scale's floor (0 of a nonzero allowance included) is the lightest colour: a
    # LogNorm that does not clip masks values <= 0, and a masked value draws transparent.
    return cmap(norm(max(value, norm.vmin)))


def _is_dark(rgba: tuple) -> bool:
    r, g, b, _ = rgba
    return 0.299 * r + 0.587 * g + 0.114 * b < 0.5


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------


def _group_label(g: Group, band: Band) -> str:
    """The check; its measure when that is not ULPs; its device when the band has several."""
    label = g.check
    if g.measure != "ULP":
        label += f"\n({g.measure})"
    if len(band.devices) > 1 and g.device != band.devices[0]:
        label += f"\n[{g.device}]"
    return label


def _header_height(band: Band) -> float:
    """Room above a band for its rotated group labels (the longest line sets it)."""
    lines = [line for g in band.groups for line in _group_label(g, band).split("\n")]
    return HEADER_CHAR_H * max(len(line) for line in lines) + 0.2


def _band_title(band: Band) -> str:
    devices = " + ".join(band.devices)
    return f"device {devices}: {len(band.rows)} rows × {len(band.columns)} (check, dtype) columns"


def _draw_band(ax, band: Band, norm: Normalize, width: int) -> None:
    """The band's cells as an image ``width`` columns wide (unused ones blank), so that every
    band's cells are the same size; marks on fail and skip cells; labels on three sides."""
    image = np.ones((len(band.rows), width, 4))
    for i, row in enumerate(band.cells):
        for j, cell in enumerate(row):
            image[i, j] = cell_rgba(cell, norm)
            _mark(ax, i, j, cell, image[i, j])
    ax.imshow(image, aspect="auto", interpolation="nearest")
    _grid(ax, band, width)
    _labels(ax, band)
    ax.set_title(_band_title(band), loc="left", fontsize=10)


def _mark(ax, i: int, j: int, cell: Cell, rgba) -> None:
    """✕ on a failure, so it reads without colour; the reason's number on a skip."""
    colour = "white" if _is_dark(tuple(rgba)) else "#333333"
    if cell.status not in (None, "pass", "skip"):
        ax.text(j, i, "✕", ha="center", va="center", fontsize=9, color="white", weight="bold")
    elif cell.status == "skip" and cell.skip is not None:
        ax.text(j, i, str(cell.skip), ha="center", va="center", fontsize=7, color=colour)


def _grid(ax, band: Band, width: int) -> None:
    """Thin white lines between cells, dark ones between groups, no frame past the last."""
    n_rows, n_cols = len(band.rows), len(band.columns)
    ax.set_xticks(np.arange(-0.5, width), minor=True)
    ax.set_yticks(np.arange(-0.5, n_rows), minor=True)
    ax.grid(which="minor", color="white", lw=0.8)
    ax.tick_params(which="minor", length=0)
    for x in _starts(band) - 0.5:
        ax.plot([x, x], [-0.5, n_rows - 0.5], color=SEPARATOR_COLOR, lw=1.2, clip_on=False)
    for y in (-0.5, n_rows - 0.5):
        ax.plot([-0.5, n_cols - 0.5], [y, y], color=SEPARATOR_COLOR, lw=1.2, clip_on=False)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _starts(band: Band) -> np.ndarray:
    """The first column of every group, and one past the last column."""
    return np.cumsum([0, *(len(g.dtypes) for g in band.groups)])


def _labels(ax, band: Band) -> None:
    """Row labels left, group labels (rotated) on top, dtypes underneath."""
    ax.set_yticks(range(len(band.rows)), band.rows, fontsize=8.5)
    sizes = np.array([len(g.dtypes) for g in band.groups])
    centres = _starts(band)[:-1] + (sizes - 1) / 2
    ax.xaxis.tick_top()
    ax.set_xticks(centres, [_group_label(g, band) for g in band.groups], fontsize=8, rotation=90)
    ax.tick_params(axis="x", which="major", length=0)
    dtypes = ax.secondary_xaxis("bottom")
    dtypes.set_xticks(
        range(len(band.columns)), [DTYPES.get(dt, dt) for _, dt in band.columns], fontsize=7
    )
    dtypes.tick_params(length=0, rotation=90)
    for spine in dtypes.spines.values():
        spine.set_visible(False)


def _notes(table: HeatTable, slots: int) -> list[str]:
    """The numbered skip reasons and the devices left out, wrapped to the cells' width."""
    width = int(CELL_W * slots / NOTE_CHAR_W)
    reasons = table.skip_reasons.items()
    notes = [f"skip {k}: {r} ({_rows(n)})" for k, (r, n) in enumerate(reasons, start=1)]
    notes += table.skipped_devices.values()
    return [line for note in notes for line in textwrap.wrap(note, width, subsequent_indent="  ")]


def _legend(ax, notes: list[str]) -> None:
    """Status key across the top of the bottom strip, the notes under it."""
    ax.axis("off")
    handles = [
        Patch(facecolor=FAIL_COLOR, label="✕ fail or error"),
        Patch(facecolor=SKIP_COLOR, label="skip (n: reason n below)"),
        Patch(facecolor=BITWISE_COLOR, label="bitwise (0 of 0)"),
        Patch(facecolor=PASS_COLOR, label="pass, no allowance recorded"),
        Patch(facecolor=colormaps[ULP_CMAP](0.6), label="pass, shaded by error / allowance"),
        Patch(facecolor=MISSING_COLOR, edgecolor="grey", label="blank: not in the report"),
    ]
    ax.legend(handles=handles, loc="upper left", ncol=len(handles), fontsize=8.5, frameon=False)
    # Placed by offsets below the key; kept out of the layout, which _heights sized for them.
    for k, line in enumerate(notes):
        ax.annotate(
            line,
            xy=(0, 1),
            xycoords="axes fraction",
            xytext=(4, -26 - 72 * NOTE_LINE_H * k),
            textcoords="offset points",
            fontsize=8,
            va="top",
            in_layout=False,
        )


def _colorbar(fig: Figure, axes: list, norm: Normalize, fig_w: float) -> None:
    """One scale for every band; its title short, so that a band of two rows has room."""
    bar = fig.colorbar(
        ScalarMappable(norm, colormaps[ULP_CMAP]),
        ax=axes,
        fraction=0.25 / fig_w,
        aspect=30,
        pad=0.01,
    )
    bar.ax.set_title("error /\nallowance", fontsize=8)


def _slots(table: HeatTable) -> int:
    """Cells across: the widest band's, or as many as the key needs."""
    widest = max((len(b.columns) for b in table.bands), default=0)
    return max(widest, math.ceil(MIN_CELLS_W / CELL_W))


def _width(table: HeatTable, slots: int) -> float:
    """Figure width (inches): row labels, ``slots`` cells, the colour scale."""
    labels = [label for band in table.bands for label in band.rows]
    label_w = LABEL_CHAR_W * max((len(s) for s in labels), default=10) + 0.3
    return label_w + CELL_W * slots + COLORBAR_W


def _heights(table: HeatTable, notes: int) -> tuple[list[float], float]:
    """The inside heights (inches) of each band and of the key with ``notes`` lines under it,
    and the room their labels take outside them. The layout shares the inside heights by ratio
    and adds the labels' room around them, so only inside heights may go in the ratios."""
    inside = [CELL_H * len(b.rows) for b in table.bands]
    inside.append(LEGEND_H + NOTE_LINE_H * notes)
    outside = sum(_header_height(b) + DTYPE_LABEL_H for b in table.bands)
    return inside, outside


def plot_conformance_heat(table: HeatTable, path: Path, title: str = "conformance") -> Path:
    """Draw ``table``: its bands stacked, one colour scale at the right, the key underneath."""
    norm = value_norm(table)
    slots = _slots(table)
    fig_w = _width(table, slots)
    notes = _notes(table, slots)
    heights, labels_h = _heights(table, len(notes))
    fig_h = TITLE_H + sum(heights) + labels_h
    fig = Figure(figsize=(fig_w, fig_h), dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights)
    axes = [fig.add_subplot(grid[k]) for k in range(len(table.bands))]
    for ax, band in zip(axes, table.bands):
        _draw_band(ax, band, norm, slots)
    if axes:
        _colorbar(fig, axes, norm, fig_w)
    _legend(fig.add_subplot(grid[-1]), notes)
    fig.suptitle(
        f"{title}: worst result per optimizer × check × dtype  (shade: the largest ratio of "
        "an error to the allowance it was judged against, log scale)",
        fontsize=12,
        x=0.01,
        ha="left",
    )
    return save(fig, path)

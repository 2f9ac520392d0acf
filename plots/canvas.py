"""What every figure shares: the resolution and how a figure reaches the disk.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so they render headless anywhere
and nothing leaks between figures through pyplot's global state.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

DPI = 100  # sizes below are in inches, so at this DPI 1 inch is 100 px


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (its folder created), and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path

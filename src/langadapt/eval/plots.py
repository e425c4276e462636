"""Matplotlib figures (Agg backend, PNG): curves of several runs, per-layer similarity, per-tensor bars."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]  # label -> (x, y)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def panels_figure(panels: Sequence[tuple[str, str, str, Series]], path: str | Path, *, title: str | None = None) -> Path:
    """One row of line plots; each panel is (title, xlabel, ylabel, {label: (x, y)})."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (panel_title, xlabel, ylabel, series) in zip(axes[0], panels):
        for label, (x, y) in series.items():
            ax.plot(list(x), list(y), marker="o" if len(x) < 25 else None, markersize=3, label=label)
        ax.set_title(panel_title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def bar_figure(labels: Sequence[str], values: Sequence[float], path: str | Path, *, title: str, ylabel: str) -> Path:
    """Horizontal bars, one per label (e.g. per parameter tensor)."""
    plt = _pyplot()
    height = max(3.0, 0.22 * len(labels) + 1.0)
    fig, ax = plt.subplots(figsize=(8, height))
    ax.barh(range(len(labels)), list(values), color="tab:blue")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(ylabel)
    ax.set_title(title)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)

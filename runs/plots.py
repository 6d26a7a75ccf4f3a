"""The run's figures as PNGs (matplotlib, Agg): HIoU and chain-length histograms, rejections by reason,
and the report's per-record distributions.

Each function takes plain numbers (a sequence, or a dict of label -> sequence drawn as one stacked
series per label, empty series left out), writes the PNG at ``path`` (or into a binary file object) with a
title, readable fonts and whole-number count ticks, and returns the (closed) matplotlib figure.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

DPI = 100
FONT_SIZE = 12  # points: 17 pixels at DPI 100, for PNGs shown at their own size
RC = {"font.size": FONT_SIZE, "axes.titlesize": FONT_SIZE + 1, "axes.titleweight": "bold",
      "legend.fontsize": FONT_SIZE - 1, "legend.frameon": False}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(values) -> dict[str, list[float]]:
    """label -> numbers; a mapping's empty series are dropped (nothing to draw or list)."""
    if isinstance(values, Mapping):
        found = {str(k): [float(v) for v in vs if v is not None] for k, vs in values.items()}
        return {k: vs for k, vs in found.items() if vs}
    return {"": [float(v) for v in values if v is not None]}


def _drawn(path: str, title: str, draw: Callable, counts: str = "y", width: float = 5.6, height: float = 3.4):
    """Run ``draw(ax)`` on a new figure, title it, make the ``counts`` axis tick whole numbers, save."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(width, height), dpi=DPI)
        draw(ax)
        ax.set_title(title)
        (ax.yaxis if counts == "y" else ax.xaxis).set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[1]:  # beside the axes: never over the bars
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        fig.set_layout_engine(None)  # laid out: savefig then draws once (a layout engine makes it draw twice)
        fig.savefig(path, format="png")
    plt.close(fig)
    return fig


def _histogram(values, path: str, title: str, xlabel: str, ylabel: str, bins, xlim=None, xticks=None):
    series = _series(values)
    named = isinstance(values, Mapping)

    def draw(ax):
        if any(series.values()):
            ax.hist(list(series.values()), bins=bins, label=list(series) if named else None,
                    stacked=len(series) > 1, histtype="stepfilled")  # one polygon per series, not one bar per bin
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        if xlim:
            ax.set_xlim(*xlim)
        if xticks is not None:
            ax.set_xticks(xticks)

    return _drawn(path, title, draw)


def hiou_histogram(values: Sequence[float] | Mapping[str, Sequence[float]], path: str):
    """HIoU (0..1) of the written rows, ten bins of 0.1 (styles without boxes have no HIoU: not listed)."""
    return _histogram(values, path, "HIoU of the written rows", "HIoU of the last focus vs. the ground truth",
                      "rows", [i / 10 for i in range(11)], (0, 1))


def critic_histogram(values: Mapping[str, Sequence[float]], path: str):
    """The critic's scores (0..1) of the written rows per style, ten bins of 0.1."""
    return _histogram(values, path, "Critic scores of the written rows", "critic score", "rows",
                      [i / 10 for i in range(11)], (0, 1))


def chain_length_histogram(lengths: Sequence[int] | Mapping[str, Sequence[int]], path: str):
    """Steps per trajectory, one bar per length."""
    top = int(max((max(v) for v in _series(lengths).values() if v), default=1))
    return _histogram(lengths, path, "Steps per trajectory", "steps per trajectory", "rows",
                      [b - 0.5 for b in range(top + 2)], xticks=range(top + 1))


def rejections_bar(counts: Mapping[str, int], path: str):
    """Rejected records per reason, largest first (a note when there are none)."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))

    def draw(ax):
        if items:
            ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1])
            ax.set(xlabel="rejected records")
        else:
            ax.text(0.5, 0.5, "no rejections", ha="center", va="center", transform=ax.transAxes)
            ax.set(xticks=[], yticks=[])

    return _drawn(path, "Rejected records by reason", draw, counts="x", height=max(2.4, 0.45 * len(items) + 1.4))


def area_share_histogram(values: Sequence[float], path: str):
    """Ground-truth box area as a share of the image (0..1), twenty bins; each record's boxes once."""
    return _histogram(values, path, "GT box area share (per record)", "GT box area / image area", "GT boxes",
                      [i / 20 for i in range(21)], (0, 1))


def evidence_depth_histogram(values: Sequence[float], path: str):
    """Depth (0 = nearest, 1 = farthest) of the evidence: the last chain step's boxes; each record once."""
    return _histogram(values, path, "Depth of the evidence (per record)", "depth of the evidence (0 = nearest)",
                      "evidence boxes", [i / 20 for i in range(21)], (0, 1))


def cot_length_histogram(values: Sequence[int] | Mapping[str, Sequence[int]], path: str):
    """Characters of assistant text per row."""
    top = max((max(v) for v in _series(values).values() if v), default=1.0)
    return _histogram(values, path, "CoT length per row", "CoT length (characters)", "rows",
                      [top * i / 20 for i in range(21)] if top > 0 else 20)

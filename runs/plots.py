"""The run's figures as PNGs (matplotlib, Agg): HIoU and chain-length histograms, rejections by reason.

Each function takes plain numbers (a sequence, or a dict of label -> sequence drawn as one series per
label) and writes the PNG at ``path``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence


def _figure(width: float = 6.0, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(width, height), dpi=100)


def _series(values) -> dict[str, list[float]]:
    if isinstance(values, Mapping):
        return {str(k): [float(v) for v in vs if v is not None] for k, vs in values.items()}
    return {"": [float(v) for v in values if v is not None]}


def _save(plt, fig, ax, path: str, legend: bool) -> None:
    if legend:
        ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def hiou_histogram(values: Sequence[float] | Mapping[str, Sequence[float]], path: str) -> None:
    """HIoU (0..1) of the written rows, ten bins of 0.1."""
    plt, fig, ax = _figure()
    series = _series(values)
    bins = [i / 10 for i in range(11)]
    data = [v for v in series.values()]
    ax.hist(data, bins=bins, label=list(series) if len(series) > 1 else None, stacked=len(series) > 1)
    ax.set(xlabel="HIoU of the last focus vs. the ground truth", ylabel="rows", xlim=(0, 1))
    _save(plt, fig, ax, path, len(series) > 1)


def chain_length_histogram(lengths: Sequence[int] | Mapping[str, Sequence[int]], path: str) -> None:
    """Steps per trajectory, one bar per length."""
    plt, fig, ax = _figure()
    series = _series(lengths)
    top = int(max((max(v) for v in series.values() if v), default=1))
    bins = [b - 0.5 for b in range(top + 2)]
    ax.hist(list(series.values()), bins=bins, label=list(series) if len(series) > 1 else None,
            stacked=len(series) > 1)
    ax.set(xlabel="steps per trajectory", ylabel="rows", xticks=range(top + 1))
    _save(plt, fig, ax, path, len(series) > 1)


def rejections_bar(counts: Mapping[str, int], path: str) -> None:
    """Rejected records per reason, largest first (a note when there are none)."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    plt, fig, ax = _figure(height=max(2.0, 0.35 * len(items) + 1.0))
    if items:
        ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1])
        ax.set(xlabel="rejected records")
    else:
        ax.text(0.5, 0.5, "no rejections", ha="center", va="center", transform=ax.transAxes)
        ax.set(xticks=[], yticks=[])
    _save(plt, fig, ax, path, False)


def _histogram(values, path: str, xlabel: str, bins, xlim=None) -> None:
    plt, fig, ax = _figure()
    series = _series(values)
    ax.hist(list(series.values()), bins=bins, label=list(series) if len(series) > 1 else None,
            stacked=len(series) > 1)
    ax.set(xlabel=xlabel, ylabel="rows")
    if xlim:
        ax.set_xlim(*xlim)
    _save(plt, fig, ax, path, len(series) > 1)


def area_share_histogram(values: Sequence[float] | Mapping[str, Sequence[float]], path: str) -> None:
    """Ground-truth box area as a share of the image (0..1), twenty bins."""
    _histogram(values, path, "GT box area / image area", [i / 20 for i in range(21)], (0, 1))


def evidence_depth_histogram(values: Sequence[float] | Mapping[str, Sequence[float]], path: str) -> None:
    """Depth (0 = nearest, 1 = farthest) of the evidence: the last chain step's boxes."""
    _histogram(values, path, "depth of the evidence (0 = nearest)", [i / 20 for i in range(21)], (0, 1))


def cot_length_histogram(values: Sequence[int] | Mapping[str, Sequence[int]], path: str) -> None:
    """Characters of assistant text per row."""
    series = _series(values)
    top = max((max(v) for v in series.values() if v), default=1.0)
    _histogram(values, path, "CoT length (characters)", [top * i / 20 for i in range(21)] if top > 0 else 20)

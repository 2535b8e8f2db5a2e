"""What every plot needs: the axes it was given or a new figure, and the figure an axes is in."""

from __future__ import annotations

from typing import cast

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["figure_and_axes", "figure_of"]


def figure_and_axes(
    ax: Axes | None, figsize: tuple[float, float], layout: str | None = "constrained"
) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure of ``figsize`` with one axes when ``ax`` is None."""
    if ax is None:
        fig, new_ax = plt.subplots(figsize=figsize, layout=layout)
        return fig, new_ax
    return figure_of(ax), ax


def figure_of(ax: Axes) -> Figure:
    """The top-level figure that holds ``ax`` (also when ``ax`` sits in a subfigure)."""
    return cast(Figure, ax.get_figure(root=True))

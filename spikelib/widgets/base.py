"""What every explorer shares: controls that redraw one figure, rendered to a PNG in an Output.

An explorer is a plain object that holds

* its controls as attributes (ipywidgets), so code can set ``explorer.step.value = 3``
  exactly as a student drags the slider;
* the result of the last update (whatever the explorer computes), recomputed whenever a
  control changes (through ``observe``);
* the matplotlib ``figure`` drawn from it (a :class:`matplotlib.figure.Figure` made without
  pyplot, so it is never shown twice or kept alive by pyplot), rendered to a PNG (``png``)
  inside ``output`` (an :class:`ipywidgets.Output`). That works with Jupyter's default
  inline backend and needs no ``ipympl``. Outside a kernel (tests, scripts) the figure is
  drawn but not rendered, unless ``render=True``;
* ``redraw_seconds``: how long the last update took, from the control change to the
  figure rendered (with ``render=False`` matplotlib only lays out the artists then; the
  pixels are drawn when the figure is saved or shown), and ``redraw_cpu_seconds``, the
  CPU time of the same (what the redraw costs on a machine busy with other work).

Subclasses set ``controls`` (the names of the control attributes) and implement
``_simulate`` (compute) and ``_draw`` (draw on ``figure``).
"""

from __future__ import annotations

import io
import time
from typing import Any, Literal

import ipywidgets as widgets
from IPython.display import Image, display
from matplotlib.figure import Figure

__all__ = ["Explorer", "in_kernel", "figure_png", "CONTROL_STYLE"]

#: Keyword arguments every control gets: a label as wide as its text.
CONTROL_STYLE: dict[str, Any] = {"style": {"description_width": "initial"}}


def in_kernel() -> bool:
    """True inside a Jupyter kernel, where an ``Output`` widget can show the figure."""
    from IPython import get_ipython  # lazy: IPython is there only when a notebook kernel runs this

    return getattr(get_ipython(), "kernel", None) is not None


def figure_png(figure: Figure) -> bytes:
    """``figure`` rendered as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


class Explorer:
    """Shared plumbing: one figure, one Output, redraw on every control change."""

    controls: tuple[str, ...] = ()

    def _setup(
        self,
        figsize: tuple[float, float],
        dpi: int,
        controls_box: widgets.Widget,
        render: bool | None,
        layout: Literal["constrained"] | None = "constrained",
    ) -> None:
        """Build the figure and the output, observe the controls, draw once.

        ``layout=None`` leaves the placement of the axes to the subclass (fixed margins):
        the constrained layout costs about 0.1 s of CPU per redraw of a many-axes figure.
        """
        self.render = in_kernel() if render is None else bool(render)
        self.png: bytes | None = None
        self.redraw_seconds = self.redraw_cpu_seconds = 0.0
        self.figure = Figure(figsize=figsize, dpi=dpi, layout=layout)
        self.output = widgets.Output()
        self.widget = widgets.VBox([controls_box, self.output])
        for name in self.controls:
            getattr(self, name).observe(self._on_change, names="value")
        self.update()

    def _on_change(self, change: dict[str, Any]) -> None:
        self.update()

    def update(self) -> None:
        """Compute with the current control values and redraw."""
        start, start_cpu = time.perf_counter(), time.process_time()
        self._simulate()
        self.figure.clear()
        self._draw()
        if self.render:
            self.png = figure_png(self.figure)
            self.output.clear_output(wait=True)
            with self.output:
                display(Image(data=self.png))
        self.redraw_seconds = time.perf_counter() - start
        self.redraw_cpu_seconds = time.process_time() - start_cpu

    def _simulate(self) -> None:
        raise NotImplementedError

    def _draw(self) -> None:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):  # what a viewer without widgets (GitHub) shows instead
            bundle["text/plain"] = f"{self!r}: run the notebook to use the controls"
        return bundle

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={getattr(self, name).value!r}" for name in self.controls)
        return f"{type(self).__name__}({values})"

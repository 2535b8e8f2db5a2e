"""spikelib: the code behind a course on spiking neural networks.

From a single leaky integrate-and-fire neuron to a spiking pyramid encoder-decoder that
localizes objects in Pascal VOC images (Barchid, Mennesson & Djeraba, CBMI 2021).

Importing this package has no side effects: no seeds, no global flags, no downloads.
Import the submodule you need, e.g. ``from spikelib import metrics``.

Conventions used everywhere:

* Time comes first: a sequence tensor is ``[T, B, ...]`` (``num_steps`` = T).
* Boxes are ``xyxy``: ``(xmin, ymin, xmax, ymax)``; normalized boxes lie in ``[0, 1]``.
"""

__version__ = "0.1.0"

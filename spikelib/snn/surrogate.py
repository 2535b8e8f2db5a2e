r"""Spike functions: a Heaviside step forward, a surrogate derivative backward.

A spiking neuron fires when its membrane potential :math:`U` crosses the threshold
:math:`\theta`. Writing :math:`x = U - \theta` for the shifted input,

.. math::

    S = H(x) = \begin{cases} 1 & x > 0 \\ 0 & x \le 0 \end{cases}

The true derivative :math:`H'(x)` is zero everywhere except at :math:`x = 0`, where it
does not exist, so backpropagation through :math:`H` passes no gradient and nothing
learns. Surrogate gradient learning (Neftci, Mostafa & Zenke, IEEE Signal Processing
Magazine 36(6), 2019) keeps :math:`H` in the forward pass and replaces
:math:`H'` in the backward pass with the slope :math:`\sigma'(x)` of a smooth step
:math:`\sigma`:

.. math::

    \frac{\partial L}{\partial x} = \sigma'(x) \, \frac{\partial L}{\partial S}

Every spike function here is a small frozen dataclass (its ``repr`` shows its
parameters, it cannot be changed after creation, so one instance may be shared by many
neurons). It offers:

* ``spike_fn(x) -> spikes``: Heaviside forward, surrogate backward (autograd);
* ``spike_fn.derivative(x)``: the surrogate derivative :math:`\sigma'(x)`, analytically;
* ``spike_fn.smooth_step(x)``: the smooth step :math:`\sigma(x)` it is the slope of
  (for plots; ``derivative`` is its derivative).

``H(0) = 0`` (a neuron exactly at threshold does not fire), as in snnTorch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "heaviside",
    "SurrogateSpike",
    "Heaviside",
    "FastSigmoid",
    "ArcTan",
    "Sigmoid",
    "Triangle",
    "Boxcar",
    "StraightThrough",
    "SURROGATE_NAMES",
    "get_surrogate",
]


def heaviside(x: Tensor) -> Tensor:
    r"""Heaviside step :math:`H(x) = [x > 0]`, in the dtype of ``x``, with no gradient.

    Args:
        x (Tensor[...]): shifted membrane potential :math:`U - \theta`.

    Returns:
        Tensor[...]: 1.0 where ``x > 0``, else 0.0. Not connected to the autograd graph.
    """
    return (x > 0).to(x.dtype)


class _SpikeWithSurrogate(torch.autograd.Function):
    """Forward :math:`H(x)`; backward ``surrogate.derivative(x) * grad_spk``.

    One Function serves every surrogate: the surrogate object carries the derivative, so
    the backward pass is by construction exactly ``derivative(x) * grad_spk``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, surrogate: SurrogateSpike) -> Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return heaviside(x)

    @staticmethod
    def backward(ctx: Any, grad_spk: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return ctx.surrogate.derivative(x) * grad_spk, None


class SurrogateSpike:
    """Base class: Heaviside forward, ``self.derivative`` backward.

    Subclasses are frozen dataclasses that set ``name`` and implement ``derivative``
    and ``smooth_step``.
    """

    name = "surrogate"

    def __call__(self, x: Tensor) -> Tensor:
        r"""Spikes :math:`H(x)`, differentiable through the surrogate derivative.

        Args:
            x (Tensor[...]): shifted membrane potential :math:`U - \theta`.

        Returns:
            Tensor[...]: spikes in {0, 1}, dtype of ``x``.
        """
        return _SpikeWithSurrogate.apply(x, self)

    def derivative(self, x: Tensor) -> Tensor:
        r"""Surrogate derivative :math:`\sigma'(x)` (Tensor of the shape of ``x``)."""
        raise NotImplementedError

    def smooth_step(self, x: Tensor) -> Tensor:
        r"""The smooth step :math:`\sigma(x)` whose slope is ``derivative``."""
        raise NotImplementedError


def _positive(owner: str, name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise if it is not a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__} {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{owner}: {name} must be a finite number > 0, got {value!r}")
    return float(value)


class _Parametrised(SurrogateSpike):
    """Validates every dataclass field as a positive number and stores it as float."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _positive(type(self).__name__, field.name, getattr(self, field.name))
            object.__setattr__(self, field.name, value)


@dataclass(frozen=True)
class Heaviside(SurrogateSpike):
    r"""The plain step with its true derivative, zero almost everywhere.

    .. math:: \sigma(x) = H(x), \qquad \sigma'(x) = 0

    Gradients through it are exactly zero: this is the reason surrogates exist.
    (snnTorch's ``surrogate.heaviside`` is different: its backward passes ``H(x)``.)
    """

    name = "heaviside"

    def derivative(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def smooth_step(self, x: Tensor) -> Tensor:
        return heaviside(x)


@dataclass(frozen=True)
class FastSigmoid(_Parametrised):
    r"""Fast sigmoid (SuperSpike) surrogate with slope :math:`k`.

    .. math::

        \sigma(x) = \frac{x}{1 + k|x|}, \qquad \sigma'(x) = \frac{1}{(1 + k|x|)^2}

    Peak 1 at threshold. Zenke & Ganguli, Neural Computation 30(6), 2018. Same as
    ``snntorch.surrogate.fast_sigmoid(slope=k)``; the student replication planned ``k = 25``
    (snnTorch's default), which silences deep layers' gradients (notebook 03, section 6).

    Args:
        slope (float): :math:`k > 0`; larger is sharper. Default 25.
    """

    slope: float = 25.0
    name = "fast_sigmoid"

    def derivative(self, x: Tensor) -> Tensor:
        return 1.0 / (self.slope * x.abs() + 1.0) ** 2

    def smooth_step(self, x: Tensor) -> Tensor:
        return x / (1.0 + self.slope * x.abs())


@dataclass(frozen=True)
class ArcTan(_Parametrised):
    r"""Arc-tangent surrogate with width parameter :math:`\alpha`.

    .. math::

        \sigma(x) = \frac{1}{\pi}\arctan\!\left(\frac{\pi \alpha x}{2}\right) + \frac12,
        \qquad \sigma'(x) = \frac{\alpha / 2}{1 + (\pi \alpha x / 2)^2}

    Unit area, peak :math:`\alpha/2`. Fang et al., ICCV 2021. Same as
    ``snntorch.surrogate.atan(alpha)`` (snnTorch's default spike gradient).

    Args:
        alpha (float): :math:`\alpha > 0`. Default 2.
    """

    alpha: float = 2.0
    name = "arctan"

    def derivative(self, x: Tensor) -> Tensor:
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x) ** 2)

    def smooth_step(self, x: Tensor) -> Tensor:
        return torch.atan(math.pi / 2 * self.alpha * x) / math.pi + 0.5


@dataclass(frozen=True)
class Sigmoid(_Parametrised):
    r"""Logistic sigmoid surrogate with slope :math:`k`.

    .. math::

        \sigma(x) = \frac{1}{1 + e^{-kx}}, \qquad
        \sigma'(x) = \frac{k e^{-k|x|}}{(1 + e^{-k|x|})^2}

    Unit area, peak :math:`k/4`. Zenke & Ganguli 2018. Same as
    ``snntorch.surrogate.sigmoid(slope=k)``, but written with :math:`|x|` so it never
    overflows (snnTorch's form gives NaN below about :math:`x = -88/k` in float32).

    Args:
        slope (float): :math:`k > 0`. Default 25.
    """

    slope: float = 25.0
    name = "sigmoid"

    def derivative(self, x: Tensor) -> Tensor:
        decay = torch.exp(-self.slope * x.abs())
        return self.slope * decay / (decay + 1) ** 2

    def smooth_step(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.slope * x)


@dataclass(frozen=True)
class Triangle(_Parametrised):
    r"""Triangular (piecewise linear) surrogate of half-width :math:`w`.

    .. math::

        \sigma'(x) = \max\!\left(0,\ 1 - \frac{|x|}{w}\right), \qquad
        \sigma(x) = \int_{-w}^{x} \sigma'(s)\, ds

    Peak 1 at threshold, area :math:`w`. Esser et al., PNAS 2016; Bellec et al., NeurIPS
    2018 (with :math:`w = \theta`). snnTorch's ``surrogate.triangular`` is a different
    function (its gradient is :math:`+\theta` below threshold and :math:`-\theta` above),
    so there is nothing to compare with.

    Args:
        width (float): half-width :math:`w > 0`. Default 1.
    """

    width: float = 1.0
    name = "triangle"

    def derivative(self, x: Tensor) -> Tensor:
        return (1 - x.abs() / self.width).clamp(min=0)

    def smooth_step(self, x: Tensor) -> Tensor:
        u = (x / self.width).clamp(-1, 1)
        return self.width * (0.5 + u - u * u.abs() / 2)


@dataclass(frozen=True)
class Boxcar(_Parametrised):
    r"""Rectangular (boxcar) surrogate of width :math:`a`.

    .. math::

        \sigma'(x) = \frac{1}{a}\,[\,|x| < a/2\,], \qquad
        \sigma(x) = \mathrm{clamp}\!\left(\frac{x}{a} + \frac12,\ 0,\ 1\right)

    Unit area. Wu et al., "Spatio-temporal backpropagation", Frontiers in Neuroscience
    2018 (their rectangular curve). Not in snnTorch.

    Args:
        width (float): :math:`a > 0`. Default 1.
    """

    width: float = 1.0
    name = "boxcar"

    def derivative(self, x: Tensor) -> Tensor:
        return (x.abs() < self.width / 2).to(x.dtype) / self.width

    def smooth_step(self, x: Tensor) -> Tensor:
        return (x / self.width + 0.5).clamp(0, 1)


@dataclass(frozen=True)
class StraightThrough(SurrogateSpike):
    r"""Straight-through estimator: the step is treated as the identity backward.

    .. math:: \sigma(x) = x, \qquad \sigma'(x) = 1

    Bengio, Léonard & Courville, arXiv:1308.3432, 2013. Same as
    ``snntorch.surrogate.straight_through_estimator()``.
    """

    name = "straight_through"

    def derivative(self, x: Tensor) -> Tensor:
        return torch.ones_like(x)

    def smooth_step(self, x: Tensor) -> Tensor:
        return x.clone()


_CLASSES: tuple[type[SurrogateSpike], ...] = (
    Heaviside,
    FastSigmoid,
    ArcTan,
    Sigmoid,
    Triangle,
    Boxcar,
    StraightThrough,
)

#: Names accepted by :func:`get_surrogate`, in gallery order.
SURROGATE_NAMES: tuple[str, ...] = tuple(cls.name for cls in _CLASSES)


def get_surrogate(name: str, **params: float) -> SurrogateSpike:
    """Build a spike function from its name and parameters (for configuration files).

    Args:
        name (str): one of :data:`SURROGATE_NAMES`, e.g. ``"fast_sigmoid"``.
        **params: the parameters of that class, e.g. ``slope=25``.

    Returns:
        SurrogateSpike: e.g. ``get_surrogate("fast_sigmoid", slope=25)`` equals
        ``FastSigmoid(slope=25.0)``.

    Raises:
        ValueError: unknown ``name``.
        TypeError: a parameter the chosen class does not have.
    """
    for cls in _CLASSES:
        if cls.name == name:
            fields = dataclasses.fields(cls)  # type: ignore[arg-type]
            allowed = tuple(field.name for field in fields)
            unknown = sorted(set(params) - set(allowed))
            if unknown:
                raise TypeError(
                    f"get_surrogate({name!r}): unknown parameter(s) {unknown}; "
                    f"{cls.__name__} takes {list(allowed) or 'no parameters'}"
                )
            return cls(**params)
    raise ValueError(f"unknown surrogate {name!r}; expected one of {list(SURROGATE_NAMES)}")

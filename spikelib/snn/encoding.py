r"""Turn images into spike trains ``[T, B, ...]``, and spike trains back into images.

Three codes for an intensity :math:`x \in [0, 1]` over :math:`T` steps:

* **rate**: at every step, spike with probability :math:`x` (Bernoulli). Information
  is in the spike count; :func:`rate_decode` takes the mean over time.
* **latency** (time to first spike): one spike at most, brighter fires earlier, pixels
  below a threshold never fire. Information is in the spike time; :func:`latency_decode`
  inverts the time map.
* **direct**: the analog value itself is fed as input current at every step; the first
  spiking layer does the encoding.

All encoders map ``[B, ...]`` to ``[T, B, ...]`` (time first). Randomness takes a
``torch.Generator``, never the global seed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from spikelib.checks import check_number

__all__ = [
    "CODINGS",
    "rate_encode",
    "rate_decode",
    "latency_spike_time",
    "latency_intensity",
    "latency_encode",
    "latency_decode",
    "direct_encode",
]

#: The input codes of this module, by name: :func:`direct_encode`, :func:`rate_encode`,
#: :func:`latency_encode`.
CODINGS: tuple[str, ...] = ("direct", "rate", "latency")

#: Added to intensities at the latency threshold so that the log code stays finite
#: (the value snnTorch uses).
_EPSILON = 1e-7


def _check_tensor(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor in [0, 1], got dtype {x.dtype} "
            "(for 8-bit images use x.float() / 255)"
        )


def _check_unit_interval(x: Tensor) -> None:
    _check_tensor(x)
    if x.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
        raise ValueError(
            f"x must lie in [0, 1], got values in [{lo:g}, {hi:g}]; "
            "rescale it, e.g. (x - x.min()) / (x.max() - x.min())"
        )


def rate_encode(x: Tensor, num_steps: int, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    r"""Rate code: independent Bernoulli spikes with probability :math:`\min(g x, 1)`.

    .. math:: S[t] \sim \mathrm{Bernoulli}(\min(g\,x, 1)), \quad t = 0, \dots, T-1

    The number of spikes of a pixel is Binomial(:math:`T`, :math:`gx`): mean :math:`Tgx`,
    standard deviation :math:`\sqrt{T gx(1-gx)}`. Same as ``snntorch.spikegen.rate(x,
    num_steps, gain)``, which draws from the global generator.

    Args:
        x (Tensor[B, ...]): intensities in [0, 1].
        num_steps (int): number of steps :math:`T \ge 1`.
        gain (float): :math:`g \ge 0`, scales the probability (clipped at 1). Default 1.
        generator (torch.Generator, optional): source of randomness, on the device of
            ``x``; the same seed gives the same spikes. ``None`` uses torch's global
            generator.

    Returns:
        Tensor[T, B, ...]: spikes in {0, 1}, dtype of ``x``.

    Raises:
        ValueError: ``x`` outside [0, 1], ``num_steps < 1`` or ``gain < 0``.
    """
    _check_unit_interval(x)
    check_number("num_steps", num_steps, 1, integer=True)
    check_number("gain", gain, 0.0)
    prob = (gain * x.detach()).clamp(0.0, 1.0)
    return torch.bernoulli(prob.expand(num_steps, *x.shape), generator=generator)


def rate_decode(spk_seq: Tensor) -> Tensor:
    """Estimate intensities from a rate code: the spike count divided by ``T``.

    Args:
        spk_seq (Tensor[T, B, ...]): spikes, time first.

    Returns:
        Tensor[B, ...]: mean over time, the rate per step (floating point).
    """
    _check_seq(spk_seq)
    if not spk_seq.is_floating_point():
        spk_seq = spk_seq.to(torch.get_default_dtype())
    return spk_seq.mean(0)


def _check_seq(spk_seq: Tensor) -> None:
    if not isinstance(spk_seq, Tensor):
        raise TypeError(f"spk_seq must be a Tensor [T, B, ...], got {type(spk_seq).__name__}")
    if spk_seq.ndim < 1 or spk_seq.shape[0] < 1:
        raise ValueError(f"spk_seq must be [T, B, ...] with T >= 1, got {tuple(spk_seq.shape)}")


def _latency_tau(num_steps: int, tau: float | None, linear: bool, normalize: bool) -> float:
    """The time constant the latency code uses (``num_steps - 1`` when normalized)."""
    if not normalize:
        tau = 1.0 if tau is None else tau
        check_number("tau", tau, 0.0, low_open=True)
        return float(tau)
    if not linear:
        raise ValueError(
            "normalize=True needs linear=True: the log code has no finite latest spike "
            "time to stretch over the window (snnTorch divides by the largest spike time "
            "in the batch, which makes one image's code depend on the others); "
            "choose tau instead"
        )
    if tau is not None:
        raise ValueError(f"normalize=True sets tau = num_steps - 1; do not pass tau (got {tau!r})")
    if num_steps < 2:
        raise ValueError(f"normalize=True needs num_steps >= 2, got {num_steps}")
    return float(num_steps - 1)


def latency_spike_time(x: Tensor, tau: float = 1.0, threshold: float = 0.01, linear: bool = False) -> Tensor:
    r"""Time of the (only) spike of each pixel, before rounding to a step.

    Log code (``linear=False``): the time an RC circuit charged by current :math:`x`
    takes to reach the threshold :math:`\vartheta`,

    .. math:: t(x) = \tau \ln \frac{x}{x - \vartheta}, \qquad x > \vartheta

    Linear code (``linear=True``): :math:`t(x) = \tau (1 - x)`, for :math:`x \ge
    \vartheta`. Pixels with :math:`x < \vartheta` never fire: :math:`t = +\infty`.
    For :math:`x \ge \vartheta` both equal ``snntorch.spikegen.latency_code`` (which
    likewise raises :math:`x = \vartheta` to :math:`\vartheta + 10^{-7}` in the log code).

    Args:
        x (Tensor[B, ...]): intensities in [0, 1].
        tau (float): time constant :math:`\tau > 0`, in steps. Default 1.
        threshold (float): :math:`\vartheta \in [0, 1)`. Default 0.01.
        linear (bool): linear instead of log code. Default False.

    Returns:
        Tensor[B, ...]: spike times (float, ``inf`` for pixels that never fire).
    """
    _check_unit_interval(x)
    check_number("tau", tau, 0.0, low_open=True)
    check_number("threshold", threshold, 0.0, 1.0, high_open=True)
    if linear:
        time = tau * (1 - x)
    else:
        x_safe = x.clamp(min=threshold + _EPSILON)
        time = tau * torch.log(x_safe / (x_safe - threshold))
    return torch.where(x < threshold, torch.full_like(time, math.inf), time)


def latency_intensity(time: Tensor, tau: float = 1.0, threshold: float = 0.01, linear: bool = False) -> Tensor:
    r"""Inverse of :func:`latency_spike_time`: the intensity that fires at ``time``.

    .. math::

        x(t) = \frac{\vartheta}{1 - e^{-t/\tau}} \ \text{(log)}, \qquad
        x(t) = 1 - t / \tau \ \text{(linear)}

    clipped to :math:`[\vartheta, 1]`; :math:`t = \infty` gives 0 (never fired).

    Args:
        time (Tensor[B, ...]): spike times (steps, float), ``inf`` for no spike.
        tau, threshold, linear: as in :func:`latency_spike_time`.

    Returns:
        Tensor[B, ...]: intensities in [0, 1].
    """
    _check_tensor(time, "time")
    check_number("tau", tau, 0.0, low_open=True)
    if linear:
        value = 1 - time / tau
    else:
        value = threshold / -torch.expm1(-time / tau)  # x(0) = inf, clipped to 1 below
    value = value.clamp(threshold, 1.0)
    return torch.where(torch.isinf(time), torch.zeros_like(value), value)


def latency_encode(
    x: Tensor,
    num_steps: int,
    tau: float | None = None,
    threshold: float = 0.01,
    linear: bool = False,
    normalize: bool = False,
) -> Tensor:
    r"""Latency code: each pixel spikes once, at step :math:`\mathrm{round}(t(x))`.

    :math:`t(x)` is :func:`latency_spike_time`. Brighter pixels fire earlier; pixels
    below ``threshold``, and pixels whose spike would come after step :math:`T - 1`,
    never fire. Equal to ``snntorch.spikegen.latency(x, num_steps, threshold, tau,
    linear=linear, normalize=normalize, clip=True)`` whenever snnTorch accepts the
    arguments (it raises instead of dropping late spikes).

    Args:
        x (Tensor[B, ...]): intensities in [0, 1].
        num_steps (int): number of steps :math:`T \ge 1`.
        tau (float, optional): time constant in steps; default 1 (snnTorch's).
        threshold (float): intensities below it never fire. Default 0.01.
        linear (bool): linear code :math:`t = \tau(1 - x)` instead of the log code.
        normalize (bool): stretch the linear code over the window, :math:`\tau = T - 1`,
            so that :math:`x = 1` fires at step 0 and :math:`x = \vartheta` near the end.
            Needs ``linear=True`` and no ``tau``.

    Returns:
        Tensor[T, B, ...]: spikes in {0, 1}, at most one per pixel, dtype of ``x``.

    Raises:
        ValueError: ``x`` outside [0, 1], bad ``num_steps``, ``tau`` or ``threshold``,
            or ``normalize`` with the log code.
    """
    check_number("num_steps", num_steps, 1, integer=True)
    tau = _latency_tau(num_steps, tau, linear, normalize)
    step = torch.round(latency_spike_time(x, tau, threshold, linear))
    steps = torch.arange(num_steps, dtype=step.dtype, device=x.device)
    return (steps.view(-1, *([1] * x.ndim)) == step).to(x.dtype)


def latency_decode(
    spk_seq: Tensor,
    tau: float | None = None,
    threshold: float = 0.01,
    linear: bool = False,
    normalize: bool = False,
) -> Tensor:
    """Rebuild intensities from a latency code (pass the options used to encode).

    Reads the first spike time of each pixel and maps it back with
    :func:`latency_intensity`; pixels that never spiked get 0. Spike times are whole
    steps, so the result is the input up to that rounding.

    Args:
        spk_seq (Tensor[T, B, ...]): spikes, time first.
        tau, threshold, linear, normalize: as given to :func:`latency_encode`.

    Returns:
        Tensor[B, ...]: intensities in [0, 1] (float).
    """
    _check_seq(spk_seq)
    num_steps = spk_seq.shape[0]
    tau = _latency_tau(num_steps, tau, linear, normalize)
    fired = spk_seq > 0
    first = fired.to(torch.uint8).argmax(0).to(torch.get_default_dtype())  # first True
    time = torch.where(fired.any(0), first, torch.full_like(first, math.inf))
    return latency_intensity(time, tau, threshold, linear)


def direct_encode(x: Tensor, num_steps: int) -> Tensor:
    """Direct code: the same analog input at every step.

    No range check: the values are input currents, so normalized images (with negative
    values) are fine. The result is a broadcast view of ``x`` (no copy); writing into it
    raises, call ``.clone()`` first if you need to.

    Args:
        x (Tensor[B, ...]): analog input.
        num_steps (int): number of steps :math:`T \\ge 1`.

    Returns:
        Tensor[T, B, ...]: ``x`` repeated along a new leading time axis.
    """
    _check_tensor(x)
    check_number("num_steps", num_steps, 1, integer=True)
    return x.expand(num_steps, *x.shape)

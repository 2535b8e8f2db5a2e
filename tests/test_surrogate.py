"""Spike functions: Heaviside forward, surrogate backward, checked against snnTorch."""

import dataclasses
import math

import pytest
import torch
from snntorch import surrogate as snn_surrogate

from spikelib.snn.surrogate import (
    SURROGATE_NAMES,
    ArcTan,
    Boxcar,
    FastSigmoid,
    Heaviside,
    Sigmoid,
    StraightThrough,
    Triangle,
    get_surrogate,
    heaviside,
)

ALL = [
    Heaviside(),
    FastSigmoid(),
    FastSigmoid(slope=3),
    ArcTan(),
    ArcTan(alpha=0.5),
    Sigmoid(),
    Sigmoid(slope=4),
    Triangle(),
    Triangle(width=0.3),
    Boxcar(),
    Boxcar(width=0.2),
    StraightThrough(),
]

# (ours, snnTorch's) pairs with the same definition.
SAME_AS_SNNTORCH = [
    (FastSigmoid(slope=25), snn_surrogate.fast_sigmoid(slope=25)),
    (FastSigmoid(slope=3), snn_surrogate.fast_sigmoid(slope=3)),
    (ArcTan(alpha=2.0), snn_surrogate.atan(alpha=2.0)),
    (ArcTan(alpha=0.7), snn_surrogate.atan(alpha=0.7)),
    (Sigmoid(slope=25), snn_surrogate.sigmoid(slope=25)),
    (Sigmoid(slope=5), snn_surrogate.sigmoid(slope=5)),
    (StraightThrough(), snn_surrogate.straight_through_estimator()),
]


def _shifted_inputs(n: int = 2001, dtype=torch.float32) -> torch.Tensor:
    """U - theta on [-3, 3], including exactly 0."""
    return torch.linspace(-3, 3, n, dtype=dtype)


@pytest.mark.parametrize("spike_fn", ALL, ids=repr)
def test_forward_is_heaviside_and_silent_at_threshold(spike_fn):
    x = torch.tensor([-2.0, -1e-6, 0.0, 1e-6, 2.0], dtype=torch.float64)
    spk = spike_fn(x)
    assert spk.dtype == torch.float64
    assert spk.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert torch.equal(heaviside(x), spk)


@pytest.mark.parametrize("spike_fn", ALL, ids=repr)
def test_backward_is_exactly_derivative_times_grad_out(spike_fn):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 11, generator=gen, dtype=torch.float64).requires_grad_()
    grad_out = torch.randn(7, 11, generator=gen, dtype=torch.float64)
    spike_fn(x).backward(grad_out)
    assert torch.equal(x.grad, spike_fn.derivative(x.detach()) * grad_out)


@pytest.mark.parametrize("spike_fn", ALL, ids=repr)
def test_derivative_is_the_slope_of_smooth_step(spike_fn):
    """Numerical check: central differences of smooth_step equal derivative (float64)."""
    x = _shifted_inputs(601, torch.float64)
    width = getattr(spike_fn, "width", 0.0)
    kinks = torch.tensor([0.0, width, -width, width / 2, -width / 2], dtype=torch.float64)
    x = x[(x[:, None] - kinks[None, :]).abs().min(1).values > 1e-3]
    h = 1e-6
    numeric = (spike_fn.smooth_step(x + h) - spike_fn.smooth_step(x - h)) / (2 * h)
    torch.testing.assert_close(numeric, spike_fn.derivative(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spike_fn", [s for s in ALL if not isinstance(s, Heaviside)], ids=repr)
def test_smooth_step_passes_gradcheck_away_from_kinks(spike_fn):
    x = torch.tensor([-2.3, -0.37, 0.41, 1.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(spike_fn.smooth_step, (x,))


@pytest.mark.parametrize(("ours", "theirs"), SAME_AS_SNNTORCH, ids=lambda p: repr(p)[:40])
def test_matches_snntorch_forward_and_gradient(ours, theirs):
    x = _shifted_inputs()
    grad_out = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    spk_ours, spk_theirs = ours(x_ours), theirs(x_theirs)
    spk_ours.backward(grad_out)
    spk_theirs.backward(grad_out)
    assert torch.equal(spk_ours, spk_theirs)
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-6, atol=1e-6)


def test_plain_heaviside_passes_no_gradient_so_nothing_learns():
    gen = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(5, 3)
    inputs = torch.randn(8, 5, generator=gen)
    for spike_fn, learns in [(Heaviside(), False), (FastSigmoid(), True)]:
        layer.zero_grad()
        spike_fn(layer(inputs) - 0.1).sum().backward()
        assert (layer.weight.grad.abs().sum() > 0) == learns, spike_fn
    assert torch.count_nonzero(layer.weight.grad) > 0  # fast sigmoid: real gradient


def test_sigmoid_stays_finite_where_snntorch_overflows():
    x = torch.tensor([-6.0, -4.0, 4.0, 6.0], requires_grad=True)
    ours = Sigmoid(slope=25).derivative(x.detach())
    assert torch.isfinite(ours).all() and (ours >= 0).all()
    snn_surrogate.sigmoid(slope=25)(x).sum().backward()
    assert torch.isnan(x.grad[:2]).all()  # documents the snnTorch behaviour we avoid


def test_snntorch_triangular_is_not_a_triangle_so_it_is_not_compared():
    x = torch.tensor([-0.5, 0.5, 3.0], requires_grad=True)
    snn_surrogate.triangular()(x).sum().backward()
    assert x.grad.tolist() == [1.0, -1.0, -1.0]  # +theta below, -theta above: a sign flip
    assert Triangle().derivative(x.detach()).tolist() == [0.5, 0.5, 0.0]


_L = 50.0  # integrate over [-L, L]; closed forms for that interval


@pytest.mark.parametrize(
    ("spike_fn", "area"),
    [
        (ArcTan(alpha=2.0), 2 / math.pi * math.atan(math.pi * 2.0 * _L / 2)),
        (Sigmoid(slope=7.0), 1 - 2 / (1 + math.exp(7.0 * _L))),
        (Boxcar(width=0.5), 1.0),
        (Triangle(width=0.4), 0.4),
        (FastSigmoid(slope=25.0), 2 / 25 * (1 - 1 / (1 + 25 * _L))),
    ],
    ids=repr,
)
def test_area_under_the_surrogate_derivative(spike_fn, area):
    x = torch.linspace(-_L, _L, 1_000_001, dtype=torch.float64)
    integral = torch.trapezoid(spike_fn.derivative(x), x).item()
    assert integral == pytest.approx(area, rel=1e-3)


def test_peak_values_at_threshold():
    zero = torch.zeros(1)
    assert FastSigmoid(slope=25).derivative(zero).item() == 1.0
    assert ArcTan(alpha=3.0).derivative(zero).item() == 1.5
    assert Sigmoid(slope=8.0).derivative(zero).item() == 2.0
    assert Triangle(width=0.5).derivative(zero).item() == 1.0
    assert Boxcar(width=0.5).derivative(zero).item() == 2.0
    assert StraightThrough().derivative(zero).item() == 1.0
    assert Heaviside().derivative(zero).item() == 0.0


def test_get_surrogate_builds_each_by_name_and_reprs_show_parameters():
    assert get_surrogate("fast_sigmoid", slope=25) == FastSigmoid(slope=25.0)
    assert repr(get_surrogate("fast_sigmoid", slope=25)) == "FastSigmoid(slope=25.0)"
    assert repr(get_surrogate("arctan")) == "ArcTan(alpha=2.0)"
    assert repr(get_surrogate("straight_through")) == "StraightThrough()"
    assert [type(get_surrogate(n)).name for n in SURROGATE_NAMES] == list(SURROGATE_NAMES)
    assert set(SURROGATE_NAMES) == {
        "heaviside",
        "fast_sigmoid",
        "arctan",
        "sigmoid",
        "triangle",
        "boxcar",
        "straight_through",
    }


def test_get_surrogate_rejects_unknown_name_and_parameter():
    with pytest.raises(ValueError, match=r"'atan'.*fast_sigmoid"):
        get_surrogate("atan")
    with pytest.raises(TypeError, match=r"\['alpha'\].*\['slope'\]"):
        get_surrogate("fast_sigmoid", alpha=2)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan")])
def test_parameters_must_be_positive_finite(bad):
    with pytest.raises(ValueError, match="slope must be a finite number > 0"):
        FastSigmoid(slope=bad)


def test_parameters_must_be_numbers():
    with pytest.raises(TypeError, match="width must be a number, got str '1'"):
        Boxcar(width="1")
    with pytest.raises(TypeError):
        Sigmoid(slope=True)


def test_spike_functions_are_immutable_values_safe_to_share():
    spike_fn = FastSigmoid(slope=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spike_fn.slope = 3.0
    assert spike_fn == FastSigmoid(slope=10.0) and hash(spike_fn) == hash(FastSigmoid(10.0))
    assert FastSigmoid(slope=10) != Sigmoid(slope=10)

"""Rate, latency and direct codes: statistics, snnTorch cross-checks, decoders."""

import math

import pytest
import torch
from snntorch import spikegen

from spikelib.snn.encoding import (
    direct_encode,
    latency_decode,
    latency_encode,
    latency_intensity,
    latency_spike_time,
    rate_decode,
    rate_encode,
)


def _image(seed=0, shape=(4, 1, 6, 6)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


# --- rate ----------------------------------------------------------------------


def test_rate_spike_frequency_tracks_intensity_within_three_sigma():
    num_steps, pixels = 2000, 50
    levels = torch.tensor([0.0, 0.25, 0.5, 1.0])
    x = levels.repeat_interleave(pixels).view(4, pixels)  # [B=4 levels, 50 pixels]
    spk_seq = rate_encode(x, num_steps, generator=torch.Generator().manual_seed(0))
    assert spk_seq.shape == (num_steps, 4, pixels)
    rate = spk_seq.mean(dim=(0, 2))  # over time and the pixels of one level
    sigma = torch.sqrt(levels * (1 - levels) / (num_steps * pixels))
    assert rate[0] == 0.0 and rate[3] == 1.0  # certain at the ends
    assert ((rate - levels).abs() <= 3 * sigma).all(), (rate, levels, sigma)
    per_pixel = spk_seq[:, 2].mean(0)  # x = 0.5, each pixel alone
    assert ((per_pixel - 0.5).abs() <= 4 * math.sqrt(0.25 / num_steps)).all()  # 50 pixels: 4 sigma


def test_rate_same_generator_seed_same_spikes():
    x = _image()
    first = rate_encode(x, 30, generator=torch.Generator().manual_seed(7))
    again = rate_encode(x, 30, generator=torch.Generator().manual_seed(7))
    other = rate_encode(x, 30, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert set(first.unique().tolist()) <= {0.0, 1.0}


def test_rate_matches_snntorch_spikegen_rate_with_same_seed():
    x = _image()
    ours = rate_encode(x, 25, gain=0.7, generator=torch.Generator().manual_seed(3))
    with torch.random.fork_rng():
        torch.manual_seed(3)
        theirs = spikegen.rate(x, num_steps=25, gain=0.7)
    assert torch.equal(ours, theirs)


def test_rate_gain_scales_probability_and_clips_at_one():
    x = torch.full((1, 1000), 0.2)
    spk_seq = rate_encode(x, 500, gain=2.5, generator=torch.Generator().manual_seed(0))
    assert spk_seq.mean().item() == pytest.approx(0.5, abs=3 * math.sqrt(0.25 / 500_000))
    assert rate_encode(x, 20, gain=10.0).eq(1).all()


def test_rate_decode_recovers_intensity():
    x = _image(1)
    spk_seq = rate_encode(x, 4000, generator=torch.Generator().manual_seed(2))
    sigma = torch.sqrt(x * (1 - x) / 4000)
    assert ((rate_decode(spk_seq) - x).abs() <= 4 * sigma + 1e-6).all()
    assert rate_decode(torch.tensor([[1], [0], [1], [1]], dtype=torch.uint8)).item() == 0.75


# --- latency -------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"linear": True}, {"linear": True, "normalize": True}, {"tau": 5.0}], ids=str)
def test_latency_at_most_one_spike_brighter_fires_earlier_dark_never(options):
    num_steps = 40
    x = torch.cat([torch.tensor([0.0, 0.005]), torch.linspace(0.02, 1.0, 50)]).view(1, -1)
    spk_seq = latency_encode(x, num_steps, **options)
    assert spk_seq.shape == (num_steps, 1, 52)
    count = spk_seq.sum(0)[0]
    assert count.le(1).all()
    assert count[:2].eq(0).all()  # 0 and 0.005 are below the 0.01 threshold
    fired = count == 1
    first = spk_seq[:, 0].argmax(0).float()[fired]
    brightness = x[0][fired]
    assert fired.sum() >= 10
    assert (first[1:] <= first[:-1]).all()  # brightness rises along the row: times fall
    assert brightness[-1] == 1.0 and first[-1] == 0  # x = 1 fires at the first step
    assert first[0] > first[-1]
    if options.get("linear"):
        assert fired[2:].all()  # the linear code reaches every pixel above threshold


@pytest.mark.parametrize(
    "options",
    [
        {"tau": 1.0},
        {"tau": 2.0, "threshold": 0.05},
        {"tau": 10.0, "linear": True},
        {"tau": 30.0, "threshold": 0.2, "linear": True},
        {"linear": True, "normalize": True},
        {"linear": True, "normalize": True, "threshold": 0.3},
    ],
    ids=str,
)
def test_latency_matches_snntorch_spikegen_latency_with_clip(options):
    num_steps = 40
    x = _image(3, (8, 3, 5, 5))
    x[0, 0, 0, :3] = torch.tensor([0.0, 1.0, options.get("threshold", 0.01) / 2])
    ours = latency_encode(x, num_steps, **options)
    theirs = spikegen.latency(x, num_steps=num_steps, clip=True, **options)
    assert torch.equal(ours, theirs)
    assert ours.sum() > 0


def test_latency_spike_time_formulas_hand_worked():
    x = torch.tensor([0.0, 0.02, 0.5, 1.0], dtype=torch.float64)
    log_time = latency_spike_time(x, tau=2.0, threshold=0.01)
    assert math.isinf(log_time[0])
    expected = [2 * math.log(2.0), 2 * math.log(0.5 / 0.49), 2 * math.log(1 / 0.99)]
    assert log_time[1:].tolist() == pytest.approx(expected)
    lin_time = latency_spike_time(x, tau=10.0, threshold=0.01, linear=True)
    assert math.isinf(lin_time[0])
    assert lin_time[1:].tolist() == pytest.approx([9.8, 5.0, 0.0])


def test_latency_spikes_after_the_window_are_dropped():
    x = torch.tensor([[0.011, 0.9]])  # log time with tau=10: 23.98 and 0.11
    spk_seq = latency_encode(x, 10, tau=10.0)
    assert spk_seq.sum(0).tolist() == [[0.0, 1.0]]


@pytest.mark.parametrize(
    "options", [{"tau": 3.0}, {"tau": 0.5, "threshold": 0.2}, {"tau": 7.0, "linear": True}], ids=str
)
def test_latency_intensity_inverts_spike_time(options):
    x = torch.linspace(0.02, 1.0, 99, dtype=torch.float64)
    if options.get("threshold", 0.01) > 0.01:
        x = x[x > options["threshold"] + 1e-3]
    back = latency_intensity(latency_spike_time(x, **options), **options)
    torch.testing.assert_close(back, x)
    assert latency_intensity(torch.tensor([math.inf]), **options).item() == 0.0


def test_latency_decode_rebuilds_image_up_to_rounding():
    num_steps = 51
    x = _image(4)
    x[0, 0, 0, 0] = 0.0
    spk_seq = latency_encode(x, num_steps, linear=True, normalize=True)
    rebuilt = latency_decode(spk_seq, linear=True, normalize=True)
    assert rebuilt[0, 0, 0, 0] == 0.0
    above = x >= 0.01
    # times are rounded to whole steps of tau = T - 1: error at most half a step
    assert ((rebuilt - x).abs()[above] <= 0.5 / (num_steps - 1) + 1e-6).all()


def test_latency_options_that_cannot_work_raise():
    x = _image()
    with pytest.raises(ValueError, match="normalize=True needs linear=True"):
        latency_encode(x, 10, normalize=True)
    with pytest.raises(ValueError, match=r"do not pass tau \(got 5.0\)"):
        latency_encode(x, 10, tau=5.0, linear=True, normalize=True)
    with pytest.raises(ValueError, match="tau must be a number > 0, got -1.0"):
        latency_encode(x, 10, tau=-1.0)
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\), got 1.0"):
        latency_encode(x, 10, threshold=1.0)


# --- direct --------------------------------------------------------------------


def test_direct_repeats_the_input_every_step_and_passes_gradient():
    x = (torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))).requires_grad_()
    cur_seq = direct_encode(x, 7)
    assert cur_seq.shape == (7, 2, 3, 4)
    for cur in cur_seq:
        assert torch.equal(cur, x)
    cur_seq.sum().backward()
    assert x.grad.eq(7).all()  # each step contributes once


# --- validation ----------------------------------------------------------------


@pytest.mark.parametrize("encode", [rate_encode, latency_encode])
def test_out_of_range_intensity_error_names_observed_min_and_max(encode):
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\], got values in \[-0.5, 1.5\]"):
        encode(torch.tensor([[-0.5, 0.2, 1.5]]), 5)
    with pytest.raises(ValueError, match=r"got values in \[nan, nan\]"):
        encode(torch.tensor([[0.2, float("nan")]]), 5)
    with pytest.raises(TypeError, match=r"x.float\(\) / 255"):
        encode(torch.tensor([[0, 255]], dtype=torch.uint8), 5)


@pytest.mark.parametrize("encode", [rate_encode, latency_encode, direct_encode])
@pytest.mark.parametrize("num_steps", [0, -3, 2.5, True])
def test_num_steps_must_be_a_positive_int(encode, num_steps):
    with pytest.raises(ValueError, match="num_steps must be an int >= 1"):
        encode(torch.zeros(2, 2), num_steps)


def test_rate_rejects_negative_gain():
    with pytest.raises(ValueError, match="gain must be a number >= 0, got -1.0"):
        rate_encode(torch.zeros(2), 5, gain=-1.0)

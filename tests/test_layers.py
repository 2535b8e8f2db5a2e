"""spikelib.snn.layers: shapes, the residual equations worked by hand, twins, stacks, spike rates."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikelib.eval.activity import SpikeCounter
from spikelib.snn.layers import (
    CONNECT_FUNCTIONS,
    RESIDUAL_KINDS,
    ConvBlock,
    GlobalPoolLinear,
    ResidualBlock,
    SpikingConvBlock,
    SpikingResidualBlock,
    TimeDistributed,
    lif_layers,
    make_resnet_stack,
    sew_connect,
)
from spikelib.snn.neurons import LIF, LIFParams, lif_seq

T, B = 4, 2


pytestmark = pytest.mark.usefixtures("one_thread")


def _spikes(channels=4, size=8, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, channels, size, size, generator=gen) < 0.4).to(dtype)


def _zero_conv(conv: nn.Conv2d) -> None:
    with torch.no_grad():
        conv.weight.zero_()
        if conv.bias is not None:
            conv.bias.zero_()


def test_sew_connect_functions_truth_tables():
    spk = torch.tensor([0.0, 0.0, 1.0, 1.0])
    skip = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert sew_connect(spk, skip, "add").tolist() == [0, 1, 1, 2]
    assert sew_connect(spk, skip, "and").tolist() == [0, 0, 0, 1]
    assert sew_connect(spk, skip, "iand").tolist() == [0, 1, 0, 0]  # (not A) and S
    with pytest.raises(ValueError, match="'or'"):
        sew_connect(spk, skip, "or")


def test_spiking_conv_block_is_conv_then_reference_lif_with_same_gradients():
    x_seq = _spikes(dtype=torch.float64)
    block = SpikingConvBlock(4, 6, 3, bias=True, reset="zero").double()
    with torch.no_grad():
        block.conv.weight.mul_(4.0)
    spk_seq = block(x_seq)
    cur_seq = torch.stack([block.conv(x) for x in x_seq])
    reference, _ = lif_seq(cur_seq, LIFParams(0.5, 1.0, "zero"))
    assert spk_seq.shape == (T, B, 6, 8, 8) and 0.05 < float(reference.detach().mean()) < 0.95
    assert torch.equal(spk_seq, reference)
    grad = torch.autograd.grad(spk_seq.sum(), block.conv.weight)[0]
    grad_ref = torch.autograd.grad(reference.sum(), block.conv.weight)[0]
    torch.testing.assert_close(grad, grad_ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("fold_time", [True, False])
def test_fold_time_gives_the_same_spikes(fold_time):
    x_seq = _spikes(dtype=torch.float64)
    torch.manual_seed(0)
    block = SpikingResidualBlock(4, 4, kind="membrane", batch_norm=False, fold_time=fold_time).double()
    torch.manual_seed(0)
    other = SpikingResidualBlock(4, 4, kind="membrane", batch_norm=False, fold_time=not fold_time).double()
    assert torch.equal(block(x_seq), other(x_seq))


def test_batch_norm_uses_statistics_over_all_steps_and_samples():
    x_seq = _spikes()
    block = SpikingConvBlock(4, 3, 3, batch_norm=True)
    block.train()
    block(x_seq)
    cur_seq = torch.stack([block.conv(x) for x in x_seq]).detach()
    expected = 0.1 * cur_seq.mean(dim=(0, 1, 3, 4))  # momentum 0.1 from a running mean of 0
    torch.testing.assert_close(block.bn.running_mean, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", RESIDUAL_KINDS)
@pytest.mark.parametrize(("in_channels", "out_channels", "stride", "size_out"), [(4, 4, 1, 8), (4, 8, 2, 4)])
def test_residual_block_shapes_and_projection(kind, in_channels, out_channels, stride, size_out):
    x_seq = _spikes(in_channels)
    block = SpikingResidualBlock(in_channels, out_channels, stride, kind=kind)
    twin = ResidualBlock(in_channels, out_channels, stride, kind=kind)
    assert block(x_seq).shape == (T, B, out_channels, size_out, size_out)
    assert twin(x_seq[0]).shape == (B, out_channels, size_out, size_out)
    projects = kind != "plain" and stride == 2
    assert (block.shortcut is not None) == projects and (twin.shortcut is not None) == projects
    if projects:
        assert block.shortcut["conv"].kernel_size == (1, 1) and block.shortcut["conv"].stride == (2, 2)
        assert ("lif" in block.shortcut) == (kind == "sew")
    assert len(block.lifs) == 2 + (kind == "sew" and projects)


@pytest.mark.parametrize("connect", CONNECT_FUNCTIONS)
def test_sew_block_with_silent_branch_passes_its_input_for_add_and_iand(connect):
    # A silent residual branch (A = 0): ADD and IAND give S (the identity), AND gives 0.
    x_seq = _spikes()
    block = SpikingResidualBlock(4, 4, kind="sew", connect=connect, batch_norm=False)
    _zero_conv(block.conv2)
    out = block(x_seq)
    assert torch.equal(out, torch.zeros_like(x_seq) if connect == "and" else x_seq)


def test_membrane_block_adds_the_input_to_the_current_before_the_neuron():
    x_seq = _spikes(dtype=torch.float64)
    block = SpikingResidualBlock(4, 4, kind="membrane", batch_norm=False).double()
    _zero_conv(block.conv2)  # F(x) = 0: the last neuron sees the input spikes as its current
    reference = LIF()(x_seq.double())
    assert torch.equal(block(x_seq), reference)
    assert 0 < float(reference.mean()) < float(x_seq.mean())  # 1 per step alone is not enough to fire


def test_plain_block_with_silent_branch_is_silent():
    block = SpikingResidualBlock(4, 4, kind="plain", batch_norm=False)
    _zero_conv(block.conv2)
    assert block(_spikes()).sum() == 0


def test_twin_membrane_block_is_a_standard_resnet_basic_block():
    x = torch.randn(B, 4, 8, 8)
    twin = ResidualBlock(4, 4, kind="membrane").eval()
    h = F.relu(twin.bn1(twin.conv1(x)))
    expected = F.relu(twin.bn2(twin.conv2(h)) + x)
    torch.testing.assert_close(twin(x), expected)
    sew = ResidualBlock(4, 4, kind="sew").eval()
    h = F.relu(sew.bn1(sew.conv1(x)))
    torch.testing.assert_close(sew(x), F.relu(sew.bn2(sew.conv2(h))) + x)


def test_invalid_block_arguments_raise_naming_the_value():
    with pytest.raises(ValueError, match="'dense'"):
        SpikingResidualBlock(4, 4, kind="dense")
    with pytest.raises(ValueError, match="only applies to kind='sew'"):
        SpikingResidualBlock(4, 4, kind="membrane", connect="and")
    with pytest.raises(ValueError, match="only 'add'"):
        ResidualBlock(4, 4, kind="sew", connect="iand")
    with pytest.raises(ValueError, match="odd"):
        SpikingConvBlock(4, 4, kernel_size=4)
    with pytest.raises(ValueError, match="fold_time"):
        SpikingConvBlock(4, 4, fold_time="maybe")
    with pytest.raises(ValueError, match=r"C=4 input channels, got shape \(4, 2, 3, 8, 8\)"):
        SpikingConvBlock(4, 4)(_spikes(3))
    with pytest.raises(ValueError, match=r"\[T, B, C, H, W\]"):
        SpikingConvBlock(4, 4)(torch.zeros(2, 4, 8, 8))


@pytest.mark.parametrize("kind", RESIDUAL_KINDS)
def test_stack_and_its_twin_have_the_same_convolutions(kind):
    depth, widths = 2, (4, 8)
    snn = make_resnet_stack(kind, depth, widths, spiking=True, in_channels=1, num_outputs=3)
    ann = make_resnet_stack(kind, depth, widths, spiking=False, in_channels=1, num_outputs=3)

    def convs(model):
        return [tuple(m.weight.shape) for m in model.modules() if isinstance(m, nn.Conv2d)]

    projections = 0 if kind == "plain" else 1  # the first block of stage 2 changes width and stride
    assert convs(snn) == convs(ann)
    assert len(convs(snn)) == 1 + 2 * depth * len(widths) + projections
    x_seq = _spikes(1, size=8)
    assert snn(x_seq).shape == (T, B, 3)  # per-step scores
    assert ann(x_seq[0]).shape == (B, 3)


def test_stack_spike_rates_per_layer_are_recorded():
    stack = make_resnet_stack("sew", 2, 4, in_channels=1)
    layers = lif_layers(stack)
    assert list(layers) == ["0.lif", "1.lif1", "1.lif2", "2.lif1", "2.lif2"]
    assert all(isinstance(m, LIF) for m in layers.values())
    with SpikeCounter(stack) as counter:
        stack(_spikes(1))
    rates = counter.layer_rates()
    assert list(rates) == list(layers)
    assert all(0 < rate < 1 for rate in rates.values())  # BatchNorm keeps every layer alive


def test_deep_sew_stack_trains_its_first_layer():
    torch.manual_seed(0)
    stack = make_resnet_stack("sew", 6, 4, in_channels=1, num_outputs=2)
    scores = stack(_spikes(1)).mean(0)
    F.cross_entropy(scores, torch.tensor([0, 1])).backward()
    assert stack[0].conv.weight.grad.abs().sum() > 0


def test_time_distributed_pool_and_head():
    x_seq = _spikes()
    pooled = TimeDistributed(nn.MaxPool2d(2))(x_seq)
    assert torch.equal(pooled, torch.stack([F.max_pool2d(x, 2) for x in x_seq]))
    head = GlobalPoolLinear(4, 3)
    torch.testing.assert_close(head(x_seq)[1], head(x_seq[1]))
    with pytest.raises(ValueError, match="in_features"):
        GlobalPoolLinear(0, 3)


def test_conv_block_twin_is_conv_relu():
    x = torch.randn(B, 4, 8, 8)
    block = ConvBlock(4, 5, 3)
    torch.testing.assert_close(block(x), F.relu(block.conv(x)))
    assert block.conv.bias is not None and ConvBlock(4, 5, batch_norm=True).conv.bias is None


def test_spiking_conv_block_current_seq_is_conv_then_bn_over_all_steps_and_feeds_the_lif():
    torch.manual_seed(0)
    block = SpikingConvBlock(4, 3, 3, batch_norm=True).double()
    x_seq = (torch.rand(5, 2, 4, 8, 8, dtype=torch.float64) < 0.3).double()
    block.train()
    cur_seq = block.current_seq(x_seq)
    conv_seq = torch.stack([block.conv(x) for x in x_seq])
    mean = conv_seq.mean((0, 1, 3, 4), keepdim=True)
    var = conv_seq.var((0, 1, 3, 4), unbiased=False, keepdim=True)
    torch.testing.assert_close(cur_seq, (conv_seq - mean[0]) / torch.sqrt(var[0] + block.bn.eps))
    block.eval()
    expected, _ = lif_seq(block.current_seq(x_seq), block.lif.params, block.lif.spike_fn)
    torch.testing.assert_close(block(x_seq), expected)
    # one step in eval mode uses the same running statistics as the whole sequence
    torch.testing.assert_close(block.current(x_seq[2]), block.current_seq(x_seq)[2])


def test_module_apply_still_reaches_every_submodule_of_a_localizer_like_stack():
    # nn.Module.apply(fn) recurses into children: no block may shadow it with a method of its own
    model = torch.nn.Sequential(TimeDistributed(torch.nn.MaxPool2d(2)), SpikingConvBlock(1, 2, 3))
    seen = []
    model.apply(lambda m: seen.append(type(m).__name__))
    assert {"TimeDistributed", "MaxPool2d", "SpikingConvBlock", "Conv2d", "FusedLIF"} <= set(seen)

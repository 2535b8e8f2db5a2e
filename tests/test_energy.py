"""Energy per image against hand-counted tiny networks (spikes x fan-out), spike rates per step."""

import doctest

import pytest
import torch
from torch import nn

import spikelib.eval.energy
from spikelib.eval.counting import E_AC_45NM, E_AC_INT8_45NM, E_MAC_45NM, E_MAC_INT8_45NM
from spikelib.eval.energy import energy_per_image, energy_ratio, is_spiking, spike_rates_per_step
from spikelib.snn.neurons import LIF

# The hand-counted input: T = 3 steps, one image, 2 analog features.
X_SEQ = torch.tensor([[[0.5, 0.0]], [[0.25, 0.25]], [[0.5, 0.5]]])


def _hand_net(spiking: bool = True) -> nn.Sequential:
    r"""fc1 (2->3) -> LIF -> fc2 (3->2) -> LIF -> fc3 (2->1), no bias, beta = 0, threshold 1, reset to zero.

    With beta = 0 and reset to zero a neuron spikes at step t iff its current > 1.
    fc1 currents (W1 rows [3, 0], [0, 3], [2.5, 2.5]):
        t0 [1.5, 0, 1.25] -> spikes [1, 0, 1];  t1 [0.75, 0.75, 1.25] -> [0, 0, 1];
        t2 [1.5, 1.5, 2.5] -> [1, 1, 1]                                   6 spikes
    fc2 currents (W2 rows [0.6, 0.6, 0], [0, 0, 1.5]):
        t0 [0.6, 1.5] -> [0, 1];  t1 [0, 1.5] -> [0, 1];  t2 [1.2, 1.5] -> [1, 1]   4 spikes
    """
    fc1, fc2, fc3 = nn.Linear(2, 3, bias=False), nn.Linear(3, 2, bias=False), nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 3.0], [2.5, 2.5]]))
        fc2.weight.copy_(torch.tensor([[0.6, 0.6, 0.0], [0.0, 0.0, 1.5]]))
        fc3.weight.fill_(1.0)
    if not spiking:
        return nn.Sequential(fc1, nn.ReLU(), fc2, nn.ReLU(), fc3)
    return nn.Sequential(
        fc1, LIF(beta=0.0, threshold=1.0, reset="zero"), fc2, LIF(beta=0.0, threshold=1.0, reset="zero"), fc3
    )


def test_doctests_pass():
    assert doctest.testmod(spikelib.eval.energy).failed == 0


def test_snn_energy_is_the_hand_count_analog_macs_plus_spikes_times_fan_out():
    report = energy_per_image(_hand_net(), X_SEQ)
    # fc1: analog input, 3 steps x 2 inputs x 3 outputs = 18 MACs
    # fc2: 6 spikes x fan-out 2 = 12 SynOps;  fc3: 4 spikes x fan-out 1 = 4 SynOps
    assert report.spiking and report.num_steps == 3 and report.num_images == 1
    assert report.macs == 18.0
    assert report.synops == 16.0
    assert [(r.name, r.macs, r.synops) for r in report.layers] == [("0", 18.0, 0.0), ("2", 0.0, 12.0), ("4", 0.0, 4.0)]
    assert report.energy == pytest.approx(18 * 4.6e-12 + 16 * 0.9e-12)  # 97.2 pJ
    assert report.energy_uj == pytest.approx(97.2e-6)


def test_ann_energy_is_every_mac_at_4_6_pj():
    ann = energy_per_image(_hand_net(spiking=False), X_SEQ[0])
    assert not ann.spiking and ann.num_steps == 1
    assert ann.macs == 2 * 3 + 3 * 2 + 2 * 1 and ann.synops == 0.0
    assert ann.energy == pytest.approx(14 * E_MAC_45NM)
    snn = energy_per_image(_hand_net(), X_SEQ)
    assert energy_ratio(ann, snn) == pytest.approx(14 * 4.6 / 97.2)


def test_counts_are_per_image_averaged_over_batches():
    silent = torch.zeros(3, 1, 2)  # no current: no spike, fc1 input is whole numbers but listed analog
    both = torch.cat([X_SEQ, silent], dim=1)  # [T=3, B=2, 2]
    one_batch = energy_per_image(_hand_net(), both, analog_layers=["0"])
    two_batches = energy_per_image(_hand_net(), [X_SEQ, silent], analog_layers=["0"])
    for report in (one_batch, two_batches):
        assert report.num_images == 2
        assert report.synops == pytest.approx(16 / 2)  # the silent image adds none
        assert report.macs == pytest.approx(18.0)  # dense for both images
    limited = energy_per_image(_hand_net(), [X_SEQ, silent], analog_layers=["0"], max_images=1)
    assert limited.num_images == 1 and limited.synops == 16.0


def test_a_whole_number_input_counts_as_spikes_unless_listed_as_analog():
    x_seq = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]], [[1.0, 1.0]]])
    as_spikes = energy_per_image(_hand_net(), x_seq)
    assert as_spikes.layers[0].synops == 3 * 3 and as_spikes.layers[0].macs == 0  # 3 input spikes x fan-out 3
    as_analog = energy_per_image(_hand_net(), x_seq, analog_layers=["0"])
    assert as_analog.layers[0].macs == 18.0 and as_analog.layers[0].synops == 0


class _SelfCodingSNN(nn.Module):
    """Takes images [B, 1, 3, 3], codes them directly over T steps: conv -> LIF -> conv 1->2 -> LIF."""

    def __init__(self, num_steps: int = 2) -> None:
        super().__init__()
        self.config = type("Config", (), {"coding": "direct", "num_steps": num_steps})()
        self.conv1 = nn.Conv2d(1, 1, 1, bias=False)
        self.lif1 = LIF(beta=0.0, threshold=0.5, reset="zero")
        self.conv2 = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.lif2 = LIF(beta=0.0, threshold=0.5, reset="zero")

    def encode(self, images):
        return images.expand(self.config.num_steps, *images.shape)

    def forward(self, images):
        x_seq = self.encode(images)
        steps, batch = x_seq.shape[:2]
        spk = self.lif1(self.conv1(x_seq.flatten(0, 1)).unflatten(0, (steps, batch)))
        return self.lif2(self.conv2(spk.flatten(0, 1)).unflatten(0, (steps, batch)))


def test_self_coding_model_counts_its_first_layer_as_macs_and_border_spikes_reach_fewer_synapses():
    model = _SelfCodingSNN(num_steps=2)
    with torch.no_grad():
        model.conv1.weight.fill_(1.0)
    image = torch.zeros(1, 1, 3, 3)
    image[0, 0, 0, 0] = 1.0  # one bright corner pixel: conv1 passes it, lif1 spikes there at every step
    report = energy_per_image(model, image)
    assert report.num_steps == 2 and report.spiking
    # conv1 (1x1, 1->1) on a 3x3 map: 9 MACs per step, the first layer of a direct code, analog by default
    assert report.layers[0].name == "conv1" and report.macs == 2 * 9
    # a corner spike reaches 2x2 of the 3x3 output positions (padding) x 2 channels = 8 synapses per step
    assert report.synops == 2 * 8
    assert report.dense_macs == 2 * 9 + 2 * (9 * 2 * 9)


def test_is_spiking_finds_nested_lif_and_snntorch_neurons():
    import snntorch

    assert is_spiking(nn.Sequential(nn.Linear(2, 2), nn.Sequential(LIF())))
    assert is_spiking(nn.Sequential(nn.Linear(2, 2), snntorch.Leaky(beta=0.5)))
    assert not is_spiking(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))


def test_energy_rejects_empty_inputs_and_unknown_analog_layers():
    with pytest.raises(ValueError, match="no batch"):
        energy_per_image(_hand_net(), [])
    with pytest.raises(ValueError, match="analog_layers names layers not in the model"):
        energy_per_image(_hand_net(), X_SEQ, analog_layers=["fc9"])


def test_spike_rates_per_step_are_the_hand_counted_spikes():
    rates = spike_rates_per_step(_hand_net(), X_SEQ, names={"1": "hidden", "3": "output"})
    # hidden spikes per step [2, 1, 3] of 3 neurons; output [1, 1, 2] of 2 neurons
    torch.testing.assert_close(rates["hidden"], torch.tensor([2 / 3, 1 / 3, 1.0]))
    torch.testing.assert_close(rates["output"], torch.tensor([0.5, 0.5, 1.0]))
    twice = spike_rates_per_step(_hand_net(), [X_SEQ, torch.zeros(3, 1, 2)], names={"1": "hidden"})
    torch.testing.assert_close(twice["hidden"], torch.tensor([1 / 3, 1 / 6, 0.5]))


def test_spike_rates_need_a_lif_layer():
    with pytest.raises(ValueError, match="no spikelib.snn.neurons.LIF layer"):
        spike_rates_per_step(nn.Linear(2, 2), torch.zeros(1, 2))


def test_default_energies_are_horowitz_45nm():
    assert (E_MAC_45NM, E_AC_45NM) == (4.6e-12, 0.9e-12)


def test_int8_energies_are_horowitz_45nm_multiply_plus_add():
    assert E_MAC_INT8_45NM == pytest.approx(0.2e-12 + E_AC_INT8_45NM) and E_AC_INT8_45NM == 0.03e-12
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))  # 3*4 + 4*2 = 20 MACs per image
    report = energy_per_image(net, torch.zeros(5, 3), e_mac=E_MAC_INT8_45NM)
    assert report.macs == 20 and report.energy == pytest.approx(20 * 0.23e-12)


class _ConvBnSNN(nn.Module):
    r"""Images [B, 1, 3, 3], coded directly over T = 2 steps:
    conv1 (1->2, 3x3, pad 1) -> BN -> LIF -> conv2 (2->4, 3x3, pad 1) -> LIF -> flatten -> fc (36->2).

    ``spiking=False`` gives the ANN twin (ReLU for LIF, run once on the image).
    """

    def __init__(self, spiking: bool = True) -> None:
        super().__init__()
        self.config = type("Config", (), {"coding": "direct", "num_steps": 2})()
        self.spiking = spiking
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(2)  # eval mode, mean 0, var 1: identity, folds into conv1
        self.conv2 = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(36, 2, bias=False)
        self.act1 = LIF(beta=0.0, threshold=0.5, reset="zero") if spiking else nn.ReLU()
        self.act2 = LIF(beta=0.0, threshold=1.5, reset="zero") if spiking else nn.ReLU()
        with torch.no_grad():
            self.conv1.weight.zero_()
            self.conv1.weight[0, 0, 1, 1] = 1.0  # channel 0 copies the image, channel 1 stays silent
            self.conv2.weight.fill_(1.0)  # each output sums the spikes in its 3x3 window, both channels
            self.fc.weight.fill_(1.0)

    def forward(self, images):
        if not self.spiking:
            return self.fc(self.act2(self.conv2(self.act1(self.bn1(self.conv1(images))))).flatten(1))
        x_seq = images.expand(2, *images.shape)  # [T=2, B, 1, 3, 3]

        def per_step(layer, seq):
            return layer(seq.flatten(0, 1)).unflatten(0, seq.shape[:2])

        spk1 = self.act1(per_step(lambda x: self.bn1(self.conv1(x)), x_seq))
        spk2 = self.act2(per_step(self.conv2, spk1))
        return per_step(self.fc, spk2.flatten(2))

    def encode(self, images):  # only its presence matters: the model takes images, not sequences
        return images


# The image: two bright corners, 1.0 at (0, 0) and 0.8 at (2, 2), zeros elsewhere.
CORNERS = torch.zeros(1, 1, 3, 3)
CORNERS[0, 0, 0, 0], CORNERS[0, 0, 2, 2] = 1.0, 0.8


def test_conv_bn_snn_energy_is_the_hand_count_and_bn_adds_no_operation():
    r"""Every spike counted by hand, at each of the T = 2 identical steps (beta = 0, reset to zero):

    conv1, analog pixels (first layer of a direct code): 2 x 3 x 3 outputs x 1 input channel x 9 taps
        = 162 MACs per step (positions on the padding count in full), 324 for T = 2.
    BN: eval mode, folds into conv1: no MAC, no SynOp.
    LIF1 (theta 0.5): channel 0 = the image -> 2 spikes per step, at the corners (0, 0) and (2, 2).
    conv2, spikes: a corner spike reaches the 2 x 2 output positions around it (the rest of the
        kernel falls on padding) x 4 output channels = 16 synapses; 2 spikes x 16 = 32 per step, 64.
    LIF2 (theta 1.5): conv2 weights all 1, so an output's current = spikes in its 3x3 window:
        centre (1, 1) sees both corners -> 2 > 1.5 fires; the other positions see 0 or 1 -> silent.
        4 channels x 1 position = 4 spikes per step, 8 in all.
    fc (36 -> 2), spikes: 8 spikes x fan-out 2 = 16 SynOps.
    Energy: 324 x 4.6 pJ + (64 + 16) x 0.9 pJ = 1490.4 + 72 = 1562.4 pJ.
    """
    report = energy_per_image(_ConvBnSNN().eval(), CORNERS)
    rows = {r.name: r for r in report.layers}
    assert (rows["conv1"].macs, rows["conv1"].synops) == (324.0, 0.0)
    assert (rows["bn1"].macs, rows["bn1"].synops) == (0.0, 0.0)
    assert (rows["conv2"].macs, rows["conv2"].synops) == (0.0, 64.0)
    assert (rows["fc"].macs, rows["fc"].synops) == (0.0, 16.0)
    assert (report.macs, report.synops) == (324.0, 80.0)
    assert report.energy == pytest.approx(1562.4e-12)
    rates = spike_rates_per_step(_ConvBnSNN().eval(), CORNERS, names={"act1": "lif1", "act2": "lif2"})
    torch.testing.assert_close(rates["lif1"], torch.tensor([2 / 18, 2 / 18]))  # 2 of 2 x 9 neurons
    torch.testing.assert_close(rates["lif2"], torch.tensor([4 / 36, 4 / 36]))  # 4 of 4 x 9 neurons


def test_conv_bn_ann_twin_energy_is_every_mac_counted_by_hand():
    r"""The twin, once on the image: conv1 2 x 9 outputs x 1 x 9 taps = 162; conv2 4 x 9 outputs x
    2 channels x 9 taps = 648; fc 36 x 2 = 72; BN not in the total. 882 MACs x 4.6 pJ = 4057.2 pJ,
    2.6 times the SNN's 1562.4 pJ."""
    ann = energy_per_image(_ConvBnSNN(spiking=False).eval(), CORNERS)
    assert (ann.macs, ann.synops) == (882.0, 0.0)
    assert ann.energy == pytest.approx(4057.2e-12)
    assert energy_ratio(ann, energy_per_image(_ConvBnSNN().eval(), CORNERS)) == pytest.approx(4057.2 / 1562.4)

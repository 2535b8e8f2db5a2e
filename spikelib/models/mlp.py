r"""The two-layer spiking perceptron of notebook 03 (8x8 digits): Linear -> LIF -> Linear -> LIF."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from spikelib.checks import check_number
from spikelib.snn.neurons import LIF, PAPER_SPIKE_FN
from spikelib.snn.surrogate import SurrogateSpike

__all__ = ["MLPRecord", "SpikingMLP"]


class MLPRecord(NamedTuple):
    """Everything one run of a :class:`SpikingMLP` produced, for plots and spike counts.

    Attributes:
        hidden_spk_seq (Tensor[T, B, num_hidden]): spikes of the hidden layer.
        output_spk_seq (Tensor[T, B, num_outputs]): spikes of the output layer (what
            :meth:`SpikingMLP.forward` returns).
        output_mem_seq (Tensor[T, B, num_outputs]): membrane potential of the output
            layer, before its reset.
    """

    hidden_spk_seq: Tensor
    output_spk_seq: Tensor
    output_mem_seq: Tensor


class SpikingMLP(nn.Module):
    r"""A two-layer spiking perceptron: Linear -> LIF -> Linear -> LIF.

    For each step :math:`t` of the input sequence :math:`x[t]` (flattened to ``num_inputs``
    features), with :math:`\mathrm{LIF}` the neuron of :func:`spikelib.snn.neurons.lif_step`:

    .. math::

        S_1[t] &= \mathrm{LIF}_1\big(W_1\, x[t] + b_1\big) \\
        S_2[t] &= \mathrm{LIF}_2\big(W_2\, S_1[t] + b_2\big)

    The number of steps :math:`T` is taken from the input. Both LIF layers share
    ``beta``, ``threshold``, ``reset`` and the spike function. The output is a spike train;
    how it is read out as class scores is the training code's choice (e.g.
    :func:`spikelib.learning.bptt.spike_count`, the spike count of each output neuron).

    Args:
        num_inputs (int): input features per step (64 for 8x8 digits).
        num_hidden (int): hidden LIF neurons.
        num_outputs (int): output LIF neurons, one per class.
        beta (float): membrane decay per step, in [0, 1]. Default 0.5 (the paper's).
        threshold (float): firing threshold, > 0. Default 1.
        reset (str): ``"subtract"`` (default), ``"zero"`` or ``"none"``.
        spike_fn (SurrogateSpike): spike function of both LIF layers; its surrogate
            derivative is what backpropagation sees. Default ``FastSigmoid(slope=25)``.

    Shapes:
        ``x_seq`` (Tensor[T, B, ...]) whose trailing axes hold ``num_inputs`` values in
        all (e.g. ``[T, B, 1, 8, 8]`` or ``[T, B, 64]``) -> ``spk_seq`` (Tensor[T, B,
        num_outputs]).
    """

    def __init__(
        self,
        num_inputs: int,
        num_hidden: int,
        num_outputs: int,
        beta: float = 0.5,
        threshold: float = 1.0,
        reset: str = "subtract",
        spike_fn: SurrogateSpike = PAPER_SPIKE_FN,
    ) -> None:
        super().__init__()
        self.num_inputs = check_number("num_inputs", num_inputs, 1, integer=True)
        check_number("num_hidden", num_hidden, 1, integer=True)
        check_number("num_outputs", num_outputs, 1, integer=True)
        self.fc1 = nn.Linear(num_inputs, num_hidden)
        self.lif1 = LIF(beta, threshold, reset, spike_fn)
        self.fc2 = nn.Linear(num_hidden, num_outputs)
        self.lif2 = LIF(beta, threshold, reset, spike_fn)

    def _flatten(self, x_seq: Tensor) -> Tensor:
        """``[T, B, ...] -> [T, B, num_inputs]``, or raise with the shape received."""
        if not isinstance(x_seq, Tensor) or x_seq.ndim < 3:
            shape = tuple(x_seq.shape) if isinstance(x_seq, Tensor) else type(x_seq).__name__
            raise ValueError(f"x_seq must be a Tensor [T, B, ...] with at least 3 axes, got {shape}")
        x_seq = x_seq.flatten(2)
        if x_seq.shape[2] != self.num_inputs:
            raise ValueError(
                f"x_seq has {x_seq.shape[2]} features per step and sample, the model expects "
                f"num_inputs={self.num_inputs} (input shape [T, B, ...] = {tuple(x_seq.shape)})"
            )
        return x_seq

    def forward(self, x_seq: Tensor) -> Tensor:
        """Output spikes: ``x_seq [T, B, ...] -> spk_seq [T, B, num_outputs]``."""
        hidden_spk_seq = self.lif1(self.fc1(self._flatten(x_seq)))
        return self.lif2(self.fc2(hidden_spk_seq))

    def record(self, x_seq: Tensor) -> MLPRecord:
        """Run like :meth:`forward`, keeping the hidden spikes and output membrane.

        Args:
            x_seq (Tensor[T, B, ...]): input sequence, as for :meth:`forward`.

        Returns:
            MLPRecord: ``hidden_spk_seq`` [T, B, num_hidden], ``output_spk_seq`` and
            ``output_mem_seq`` [T, B, num_outputs]. ``output_spk_seq`` equals
            ``forward(x_seq)``.
        """
        hidden_spk_seq = self.lif1(self.fc1(self._flatten(x_seq)))
        output_spk_seq, output_mem_seq = self.lif2.forward_with_mem(self.fc2(hidden_spk_seq))
        return MLPRecord(hidden_spk_seq, output_spk_seq, output_mem_seq)

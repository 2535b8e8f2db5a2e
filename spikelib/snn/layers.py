r"""Spiking convolutional and residual blocks, and their non-spiking twins.

Spiking blocks take and return sequences ``[T, B, C, H, W]`` (time first) of spikes;
each twin has the same layers with ReLU in place of the LIF neuron and no time,
``[B, C, H, W] -> [B, C, H, W]``, so a spiking network and its ANN twin differ in the
neuron only. Every block is a plain ``nn.Module``; the spiking ones run on the engine
(:mod:`spikelib.snn.fused`: the LIF recurrence of a sequence as one autograd node;
:mod:`spikelib.snn.saved`: spike inputs kept as ``int8`` for the backward pass), which
changes how fast they run and how much memory they need, never the result.

Blocks (``kind`` of a residual block, with :math:`\mathrm{SN}` a layer of LIF neurons,
:math:`F(x) = \mathrm{BN}(\mathrm{conv}(\mathrm{SN}(\mathrm{BN}(\mathrm{conv}(x)))))`
the residual branch and :math:`P(x)` the shortcut, identity or a 1x1 projection):

.. math::

    \text{plain:}\quad & O = \mathrm{SN}(F(x)) \\
    \text{membrane:}\quad & O = \mathrm{SN}(F(x) + P(x)) \\
    \text{sew:}\quad & O = g\big(\mathrm{SN}(F(x)),\ P(x)\big), \quad
        g \in \{\mathrm{ADD}: A + S,\ \mathrm{AND}: A S,\ \mathrm{IAND}: (1 - A) S\}

"membrane" adds the shortcut to the current before the last neuron (the "Spiking
ResNet" of Zheng et al., AAAI 2021, and Hu et al.); "sew" adds (or combines) spikes
after it: spike-element-wise ResNet, Fang et al., "Deep residual learning in spiking
neural networks", NeurIPS 2021, whose ADD lets a block compute the identity, so a deep
stack does not degrade. With a projection, :math:`P` is conv 1x1 (stride 2) -> BN, and
for "sew" also -> SN, so both inputs of :math:`g` are spikes (as in Fang et al.).

Batch normalization in a spiking block normalizes each channel with statistics taken
over all time steps and samples together (``[T*B, C, H, W]``), with one set of affine
parameters for all steps: threshold-dependent BN (tdBN) of Zheng et al. 2021 without
its threshold scaling. Its running statistics are therefore those of the whole
sequence, and in training mode a block with BN needs the whole sequence at once: the
statistics of step 0 depend on step ``T-1``, so a run chunk by chunk
(:meth:`SpikingConvBlock.run`) would normalize each chunk with its own statistics and
compute something else. In eval mode BN uses its running statistics, step by step, and
chunks are exact.

Spike rates per layer: every spiking block lists its neurons in ``.lifs``; they are
:class:`spikelib.snn.neurons.LIF` layers, so :class:`spikelib.eval.activity.SpikeCounter` finds
them (dead or saturated layers are how a deep spiking stack fails).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikelib.checks import check_choice, check_int_tuple, check_number
from spikelib.snn.fused import FusedLIF
from spikelib.snn.neurons import LIF, PAPER_SPIKE_FN, LIFState
from spikelib.snn.saved import SavedArena, apply_seq_packed
from spikelib.snn.sequence import FOLD_TIME_CHOICES
from spikelib.snn.surrogate import SurrogateSpike

__all__ = [
    "RESIDUAL_KINDS",
    "CONNECT_FUNCTIONS",
    "sew_connect",
    "TimeDistributed",
    "SpikingConvBlock",
    "ConvBlock",
    "SpikingResidualBlock",
    "ResidualBlock",
    "GlobalPoolLinear",
    "make_resnet_stack",
    "lif_layers",
]

#: Residual styles: no shortcut, shortcut added to the membrane input, spikes combined (SEW).
RESIDUAL_KINDS: tuple[str, ...] = ("plain", "sew", "membrane")

#: SEW connect functions g(A, S), A the residual branch's spikes, S the shortcut's.
CONNECT_FUNCTIONS: tuple[str, ...] = ("add", "and", "iand")


def _check_seq(x_seq: Tensor, channels: int, who: str) -> None:
    if not isinstance(x_seq, Tensor) or x_seq.ndim != 5:
        shape = tuple(x_seq.shape) if isinstance(x_seq, Tensor) else type(x_seq).__name__
        raise ValueError(f"{who} expects a sequence [T, B, C, H, W], got {shape}")
    if x_seq.shape[2] != channels:
        raise ValueError(f"{who} expects C={channels} input channels, got shape {tuple(x_seq.shape)}")


def sew_connect(spk: Tensor, skip: Tensor, connect: str = "add") -> Tensor:
    r"""Combine a residual branch's spikes :math:`A` with the shortcut's :math:`S` (SEW).

    .. math::

        \mathrm{ADD}(A, S) = A + S, \quad \mathrm{AND}(A, S) = A\,S, \quad
        \mathrm{IAND}(A, S) = (1 - A)\,S

    Fang et al., NeurIPS 2021, eq. 5 and Table 1. ADD gives counts in {0, 1, 2}; AND and
    IAND keep spikes binary. Differentiable in both inputs.

    Args:
        spk (Tensor[T, B, ...]): :math:`A`, spikes of the residual branch.
        skip (Tensor[T, B, ...]): :math:`S`, spikes of the shortcut (same shape).
        connect (str): one of :data:`CONNECT_FUNCTIONS`.

    Returns:
        Tensor[T, B, ...]: :math:`g(A, S)`.
    """
    if connect == "add":
        return spk + skip
    if connect == "and":
        return spk * skip
    if connect == "iand":
        return (1.0 - spk) * skip
    raise ValueError(f"connect must be one of {list(CONNECT_FUNCTIONS)}, got {connect!r}")


def _batch_norm_seq(bn: nn.Module | None, cur_seq: Tensor) -> Tensor:
    """BatchNorm over ``[T*B, C, H, W]``: one set of statistics for all steps (tdBN-like)."""
    if bn is None:
        return cur_seq
    return bn(cur_seq.flatten(0, 1)).unflatten(0, cur_seq.shape[:2])


class TimeDistributed(nn.Module):
    """A stateless layer applied to every step of a sequence ``[T, B, ...]``.

    For pooling and upsampling between spiking blocks (e.g. ``TimeDistributed(nn.MaxPool2d(2))``).
    When the input is a spike train its copy for the backward pass is kept as ``int8``.

    Args:
        module (nn.Module): a layer ``[B, ...] -> [B, ...]`` with no state between calls.
        fold_time (bool or "auto"): fold time into the batch or loop over steps
            (:func:`spikelib.snn.sequence.resolve_fold_time`).
    """

    def __init__(self, module: nn.Module, fold_time: bool | str = "auto") -> None:
        super().__init__()
        check_choice("fold_time", fold_time, FOLD_TIME_CHOICES)
        self.module = module
        self.fold_time = fold_time

    def forward(self, x_seq: Tensor) -> Tensor:
        """``x_seq [T, B, ...] -> [T, B, ...]`` (a spike input, told by its values, is kept as int8)."""
        return apply_seq_packed(self.module, x_seq, self.fold_time)

    def forward_packed(self, x_seq: Tensor, *, spikes: bool | None = None, arena: SavedArena | None = None) -> Tensor:
        """:meth:`forward` for a caller that knows whether ``x_seq`` is a spike train and where to
        keep the packed copy (:func:`spikelib.snn.saved.apply_seq_packed`)."""
        return apply_seq_packed(self.module, x_seq, self.fold_time, spikes=spikes, arena=arena)

    def extra_repr(self) -> str:
        return f"fold_time={self.fold_time!r}"


class _SpikingBase(nn.Module):
    """Shared LIF settings and the ``lifs`` listing."""

    def __init__(
        self, beta: float, threshold: float, reset: str, spike_fn: SurrogateSpike, fold_time: bool | str
    ) -> None:
        super().__init__()
        check_choice("fold_time", fold_time, FOLD_TIME_CHOICES)
        self.fold_time = fold_time
        self._lif_args = (beta, threshold, reset, spike_fn)

    def _new_lif(self) -> FusedLIF:
        return FusedLIF(*self._lif_args)

    @property
    def lifs(self) -> list[LIF]:
        """The block's LIF layers, in the order the input reaches them."""
        return [m for m in self.modules() if isinstance(m, LIF)]


class SpikingConvBlock(_SpikingBase):
    r"""Convolution -> (BatchNorm) -> LIF over a sequence.

    .. math:: S[t] = \mathrm{LIF}\big(\mathrm{BN}(W * x[t] + b)\big)

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels (one LIF neuron per channel and position).
        kernel_size (int): odd kernel size; padding ``kernel_size // 2`` keeps H, W at stride 1.
        stride (int): convolution stride. Default 1.
        batch_norm (bool): add BatchNorm2d over ``[T*B, ...]`` (tdBN-like). Default False.
        bias (bool or None): convolution bias; default: only without BatchNorm.
        beta, threshold, reset, spike_fn: the LIF neuron (:class:`spikelib.snn.neurons.LIF`);
            defaults are the paper's (0.5, 1.0, "subtract", fast sigmoid slope 25).
        fold_time (bool or "auto"): how the convolution sees time
            (:func:`spikelib.snn.sequence.resolve_fold_time`).

    Shapes:
        ``x_seq`` (Tensor[T, B, in_channels, H, W]) -> ``spk_seq`` (Tensor[T, B,
        out_channels, H', W']) with :math:`H' = \lceil H / \text{stride} \rceil`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        batch_norm: bool = False,
        bias: bool | None = None,
        beta: float = 0.5,
        threshold: float = 1.0,
        reset: str = "subtract",
        spike_fn: SurrogateSpike = PAPER_SPIKE_FN,
        fold_time: bool | str = "auto",
    ) -> None:
        super().__init__(beta, threshold, reset, spike_fn, fold_time)
        self.conv, self.bn = _conv_bn(in_channels, out_channels, kernel_size, stride, batch_norm, bias)
        self.lif = self._new_lif()

    def current_seq(self, x_seq: Tensor, *, spikes: bool | None = None, arena: SavedArena | None = None) -> Tensor:
        """The LIF input: ``x_seq [T, B, C_in, H, W] -> cur_seq [T, B, C_out, H', W']`` (conv, BN).

        Args:
            x_seq (Tensor[T, B, C_in, H, W]): the input sequence.
            spikes (bool, optional): whether ``x_seq`` is a spike train, so the convolution
                keeps it as ``int8`` for backward; ``None``: told by its values
                (:func:`spikelib.snn.saved.apply_seq_packed`).
            arena (SavedArena, optional): where that copy goes (chunked runs).
        """
        _check_seq(x_seq, self.conv.in_channels, type(self).__name__)
        cur_seq = apply_seq_packed(self.conv, x_seq, self.fold_time, spikes=spikes, arena=arena)
        return _batch_norm_seq(self.bn, cur_seq)

    def current(self, x: Tensor) -> Tensor:
        """One step of :meth:`current_seq`: ``x [B, C_in, H, W] -> cur [B, C_out, H', W']``.

        In training mode, BatchNorm here normalizes with the statistics of this one step's
        batch (and updates its running statistics once per step), not of the whole sequence
        as :meth:`current_seq` does; in eval mode both use the same running statistics.
        """
        cur = self.conv(x)
        return self.bn(cur) if self.bn is not None else cur

    def forward(self, x_seq: Tensor) -> Tensor:
        """``x_seq [T, B, C_in, H, W] -> spk_seq [T, B, C_out, H', W']``, from rest."""
        return self.lif(self.current_seq(x_seq))

    def run(
        self,
        x_seq: Tensor,
        state: LIFState | None = None,
        *,
        spikes: bool | None = None,
        arena: SavedArena | None = None,
    ) -> tuple[Tensor, LIFState]:
        """:meth:`forward` continuing from ``state``; returns the spikes and the state it ends in.

        For running a sequence in chunks (:func:`spikelib.snn.chunked.run_chunked`): the
        neurons' state goes in and comes out, nothing is kept on the block. With BatchNorm
        in training mode a chunk is normalized with its own statistics, which differ from
        the whole sequence's: run the whole sequence at once there (``state=None``).

        Args:
            x_seq (Tensor[T, B, C_in, H, W]): this chunk of the input sequence.
            state (LIFState, optional): the neurons' state before its first step; ``None``: rest.
            spikes, arena: as in :meth:`current_seq`; the arena also holds the membrane trace.

        Returns:
            tuple[Tensor[T, B, C_out, H', W'], LIFState]: spikes and the state after the last step.
        """
        cur_seq = self.current_seq(x_seq, spikes=spikes, arena=arena)
        mem_out = None
        if arena is not None and torch.is_grad_enabled():
            mem_out = arena.empty(cur_seq.shape, cur_seq.dtype, cur_seq.device)
        return self.lif.run(cur_seq, state, mem_out)


def _conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, stride: int, batch_norm: bool, bias: bool | None
) -> tuple[nn.Conv2d, nn.BatchNorm2d | None]:
    """A padded conv and its BatchNorm (or None), with arguments checked."""
    check_number("in_channels", in_channels, 1, integer=True)
    check_number("out_channels", out_channels, 1, integer=True)
    check_number("stride", stride, 1, integer=True)
    if check_number("kernel_size", kernel_size, 1, integer=True) % 2 == 0:
        raise ValueError(f"kernel_size must be odd (padding kernel_size // 2), got {kernel_size}")
    if bias is None:
        bias = not batch_norm
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=bias)
    return conv, nn.BatchNorm2d(out_channels) if batch_norm else None


class ConvBlock(nn.Module):
    """The non-spiking twin of :class:`SpikingConvBlock`: conv -> (BatchNorm) -> ReLU.

    Same arguments as :class:`SpikingConvBlock` without the neuron's.

    Shapes:
        ``x`` (Tensor[B, in_channels, H, W]) -> Tensor[B, out_channels, H', W'].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        batch_norm: bool = False,
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        self.conv, self.bn = _conv_bn(in_channels, out_channels, kernel_size, stride, batch_norm, bias)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, C_in, H, W] -> [B, C_out, H', W']``."""
        cur = self.conv(x)
        return F.relu(self.bn(cur) if self.bn is not None else cur)


def _check_residual(kind: str, connect: str, in_channels: int, out_channels: int, stride: int) -> bool:
    """Validate; return True if the shortcut needs a 1x1 projection."""
    check_choice("kind", kind, RESIDUAL_KINDS)
    check_choice("connect", connect, CONNECT_FUNCTIONS)
    if kind != "sew" and connect != "add":
        raise ValueError(f"connect={connect!r} only applies to kind='sew', got kind={kind!r}")
    return kind != "plain" and (stride != 1 or in_channels != out_channels)


class SpikingResidualBlock(_SpikingBase):
    r"""Two 3x3 spiking convolutions with a shortcut: plain, membrane-style or SEW.

    See the module docstring for the three equations. The first convolution carries
    the stride; when the stride is not 1 or the channel count changes, the shortcut is a
    1x1 convolution with that stride, then BatchNorm (if ``batch_norm``), then (for
    "sew") a LIF layer.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels.
        stride (int): 1, or 2 to halve H and W (downsampling block). Default 1.
        kind (str): one of :data:`RESIDUAL_KINDS`. Default "sew".
        connect (str): SEW connect function, one of :data:`CONNECT_FUNCTIONS` (only with
            ``kind="sew"``). Default "add".
        batch_norm (bool): BatchNorm after every convolution (tdBN-like). Default True.
        beta, threshold, reset, spike_fn: the LIF neurons (defaults: the paper's).
        fold_time (bool or "auto"): see :class:`SpikingConvBlock`.

    Attributes:
        conv1, bn1, lif1, conv2, bn2, lif2: the residual branch (``bn*`` None without BN).
        shortcut (nn.Sequential or None): the projection, None for an identity shortcut
            or a plain block.

    Shapes:
        ``x_seq`` (Tensor[T, B, in_channels, H, W]) -> Tensor[T, B, out_channels, H', W'];
        spikes in {0, 1}, or counts in {0, 1, 2} for "sew" with "add".
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        kind: str = "sew",
        connect: str = "add",
        batch_norm: bool = True,
        beta: float = 0.5,
        threshold: float = 1.0,
        reset: str = "subtract",
        spike_fn: SurrogateSpike = PAPER_SPIKE_FN,
        fold_time: bool | str = "auto",
    ) -> None:
        super().__init__(beta, threshold, reset, spike_fn, fold_time)
        project = _check_residual(kind, connect, in_channels, out_channels, stride)
        self.kind, self.connect = kind, connect
        self.conv1, self.bn1 = _conv_bn(in_channels, out_channels, 3, stride, batch_norm, None)
        self.lif1 = self._new_lif()
        self.conv2, self.bn2 = _conv_bn(out_channels, out_channels, 3, 1, batch_norm, None)
        self.lif2 = self._new_lif()
        self.shortcut: nn.ModuleDict | None = None
        if project:
            conv, bn = _conv_bn(in_channels, out_channels, 1, stride, batch_norm, None)
            self.shortcut = nn.ModuleDict({"conv": conv} | ({"bn": bn} if bn is not None else {}))
            if kind == "sew":
                self.shortcut["lif"] = self._new_lif()

    def _skip(self, x_seq: Tensor) -> Tensor:
        """:math:`P(x)`: the input itself, or conv1x1 -> BN (-> LIF for SEW)."""
        if self.shortcut is None:
            return x_seq
        skip = _batch_norm_seq(
            self.shortcut["bn"] if "bn" in self.shortcut else None,
            apply_seq_packed(self.shortcut["conv"], x_seq, self.fold_time),
        )
        return self.shortcut["lif"](skip) if "lif" in self.shortcut else skip

    def forward(self, x_seq: Tensor) -> Tensor:
        """``x_seq [T, B, C_in, H, W] -> [T, B, C_out, H', W']``."""
        _check_seq(x_seq, self.conv1.in_channels, type(self).__name__)
        spk1 = self.lif1(_batch_norm_seq(self.bn1, apply_seq_packed(self.conv1, x_seq, self.fold_time)))
        cur2 = _batch_norm_seq(self.bn2, apply_seq_packed(self.conv2, spk1, self.fold_time, spikes=True))
        if self.kind == "membrane":
            cur2 = cur2 + self._skip(x_seq)
        spk2 = self.lif2(cur2)
        if self.kind == "sew":
            return sew_connect(spk2, self._skip(x_seq), self.connect)
        return spk2

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, connect={self.connect!r}, fold_time={self.fold_time!r}"


class ResidualBlock(nn.Module):
    r"""The non-spiking twin of :class:`SpikingResidualBlock` (ReLU for the neuron, no time).

    .. math::

        \text{plain: } & \mathrm{ReLU}(F(x)) \qquad
        \text{membrane: } \mathrm{ReLU}(F(x) + P(x)) \ \text{(He et al. 2016)} \\
        \text{sew: } & \mathrm{ReLU}(F(x)) + P(x)

    with :math:`F(x) = \mathrm{BN}(\mathrm{conv}(\mathrm{ReLU}(\mathrm{BN}(\mathrm{conv}(x)))))`
    and :math:`P` the identity or conv 1x1 -> BN (-> ReLU for "sew"). Only the "add"
    connect function has an analogue for real-valued activations.

    Args:
        in_channels, out_channels, stride, kind, batch_norm: as in :class:`SpikingResidualBlock`.
        connect (str): must be "add" (the argument exists so twins are built from the same
            configuration).

    Shapes:
        ``x`` (Tensor[B, in_channels, H, W]) -> Tensor[B, out_channels, H', W'].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        kind: str = "sew",
        connect: str = "add",
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        project = _check_residual(kind, connect, in_channels, out_channels, stride)
        if connect != "add":
            raise ValueError(f"the non-spiking twin has no {connect!r} connect function; only 'add'")
        self.kind = kind
        self.conv1, self.bn1 = _conv_bn(in_channels, out_channels, 3, stride, batch_norm, None)
        self.conv2, self.bn2 = _conv_bn(out_channels, out_channels, 3, 1, batch_norm, None)
        self.shortcut: nn.ModuleDict | None = None
        if project:
            conv, bn = _conv_bn(in_channels, out_channels, 1, stride, batch_norm, None)
            self.shortcut = nn.ModuleDict({"conv": conv} | ({"bn": bn} if bn is not None else {}))

    def _skip(self, x: Tensor) -> Tensor:
        if self.shortcut is None:
            return x
        skip = self.shortcut["conv"](x)
        skip = self.shortcut["bn"](skip) if "bn" in self.shortcut else skip
        return F.relu(skip) if self.kind == "sew" else skip

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, C_in, H, W] -> [B, C_out, H', W']``."""
        h = self.conv1(x)
        h = F.relu(self.bn1(h) if self.bn1 is not None else h)
        h = self.conv2(h)
        h = self.bn2(h) if self.bn2 is not None else h
        if self.kind == "membrane":
            return F.relu(h + self._skip(x))
        if self.kind == "sew":
            return F.relu(h) + self._skip(x)
        return F.relu(h)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


class GlobalPoolLinear(nn.Module):
    """Average over the spatial axes, then a linear layer: ``[..., C, H, W] -> [..., out]``.

    A classification head for both a spiking stack (``[T, B, C, H, W] -> [T, B, out]``,
    per step, no neuron: average it over time for scores) and its twin
    (``[B, C, H, W] -> [B, out]``).

    Args:
        in_features (int): channels C.
        out_features (int): outputs, e.g. classes.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(
            check_number("in_features", in_features, 1, integer=True),
            check_number("out_features", out_features, 1, integer=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x [..., C, H, W] -> [..., out_features]``."""
        return self.linear(x.mean((-2, -1)))


class _LIFKwargs(TypedDict):
    """The neuron settings :func:`make_resnet_stack` passes to every spiking block."""

    beta: float
    threshold: float
    reset: str
    spike_fn: SurrogateSpike
    fold_time: bool | str


def make_resnet_stack(
    kind: str,
    depth: int,
    channels: int | Sequence[int],
    *,
    spiking: bool = True,
    in_channels: int = 1,
    num_outputs: int | None = None,
    batch_norm: bool = True,
    connect: str = "add",
    stem_kernel_size: int = 3,
    beta: float = 0.5,
    threshold: float = 1.0,
    reset: str = "subtract",
    spike_fn: SurrogateSpike = PAPER_SPIKE_FN,
    fold_time: bool | str = "auto",
) -> nn.Sequential:
    """A deep ResNet-like stack: a conv stem, then ``depth`` residual blocks per stage.

    For degradation experiments (does a deeper network train worse?): the same call with
    ``kind="plain"`` and ``kind="sew"`` or ``"membrane"`` gives networks with identical
    convolutions that differ in their shortcuts only, and ``spiking=False`` gives the
    non-spiking twin of each. ``channels`` may list several stages; the first block of
    every stage after the first halves H and W (stride 2, 1x1 projection shortcut).

    The stack has ``1 + 2 * depth * len(channels)`` convolutions on its main path (the
    stem, two per block), plus one 1x1 convolution per projection shortcut.

    Args:
        kind (str): one of :data:`RESIDUAL_KINDS`.
        depth (int): residual blocks per stage (>= 1).
        channels (int or sequence of int): width of each stage; an int is one stage.
        spiking (bool): spiking blocks (``[T, B, C, H, W]``) or their twins (``[B, C, H, W]``).
        in_channels (int): channels of the input. Default 1 (grayscale).
        num_outputs (int, optional): if given, end with :class:`GlobalPoolLinear` to this
            many outputs (per step for a spiking stack).
        batch_norm (bool): BatchNorm after every convolution. Default True.
        connect (str): SEW connect function (spiking "sew" only). Default "add".
        stem_kernel_size (int): kernel of the first convolution. Default 3.
        beta, threshold, reset, spike_fn, fold_time: of every spiking block.

    Returns:
        nn.Sequential: ``stem, block1, block2, ... [, head]``.
    """
    check_choice("kind", kind, RESIDUAL_KINDS)
    check_number("depth", depth, 1, integer=True)
    widths = list(check_int_tuple("channels", channels if isinstance(channels, int) else list(channels)))
    lif_kwargs = _LIFKwargs(beta=beta, threshold=threshold, reset=reset, spike_fn=spike_fn, fold_time=fold_time)
    if spiking:
        layers: list[nn.Module] = [
            SpikingConvBlock(in_channels, widths[0], stem_kernel_size, batch_norm=batch_norm, **lif_kwargs)
        ]
    else:
        layers = [ConvBlock(in_channels, widths[0], stem_kernel_size, batch_norm=batch_norm)]
    previous = widths[0]
    for stage, width in enumerate(widths):
        for index in range(depth):
            stride = 2 if stage > 0 and index == 0 else 1
            if spiking:
                block: nn.Module = SpikingResidualBlock(
                    previous, width, stride, kind=kind, connect=connect, batch_norm=batch_norm, **lif_kwargs
                )
            else:
                block = ResidualBlock(previous, width, stride, kind=kind, connect=connect, batch_norm=batch_norm)
            layers.append(block)
            previous = width
    if num_outputs is not None:
        layers.append(GlobalPoolLinear(previous, num_outputs))
    return nn.Sequential(*layers)


def lif_layers(model: nn.Module) -> dict[str, LIF]:
    """Every LIF layer of ``model``, however nested, by qualified name (for spike-rate plots).

    Args:
        model (nn.Module): the network.

    Returns:
        dict[str, LIF]: e.g. ``{"0.lif": ..., "1.lif1": ..., "1.lif2": ...}`` in forward order
        of registration.
    """
    return {name: m for name, m in model.named_modules() if isinstance(m, LIF)}

r"""DECOLLE: deep continuous local learning (Kaiser, Mostafa & Neftci, Front. Neurosci. 2020).

Backpropagation through time (:class:`spikelib.learning.bptt.BPTT`) sends the error of the
final prediction back through every layer and every time step; it must keep the graph
of all :math:`T` steps until the backward pass, so its memory grows with :math:`T`.
DECOLLE makes every spiking layer learn on its own, at every step:

* each layer :math:`l` gets a **readout** :math:`G_l` with fixed random weights, drawn
  once, uniform in :math:`\pm a / \sqrt{\text{fan-in}}`, and never trained, that maps the
  layer's spikes :math:`S_l[t]` to a prediction of the target (here: class logits and a
  box, decoded as the model's head decodes its own);
* each layer minimizes its own **local loss** :math:`L_l[t] = L(G_l S_l[t], y)`, with the
  gradient stopped at the layer's input (no error flows from layer :math:`l` into layer
  :math:`l-1`) and through time (the neuron state is detached at every step), so

  .. math::

      \frac{\partial L_l[t]}{\partial W_l} = \frac{\partial L_l[t]}{\partial S_l[t]}\,
          \sigma'(U_l[t] - \theta)\, \frac{\partial I_l[t]}{\partial W_l},
      \qquad I_l[t] = W_l * X_l[t] + b_l

  needs only quantities of step :math:`t`: weights can change online, step by step, and
  memory does not grow with :math:`T`;
* a layer that falls nearly silent is pushed back up by an activity floor
  (:func:`rate_floor_penalty`; DECOLLE's code regularizes activity too);
* the model's own head (trained weights) learns on the detached output of the last
  decoder layer, read as the model reads it (its running spike rate for
  ``readout="mean"``, its current spikes for ``readout="last"``), and makes the final
  prediction.

The model runs one time step at a time (:meth:`spikelib.models.localizer.SpikingLocalizer.step`),
and each step's graph is freed by its backward pass before the next step is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikelib.checks import check_number
from spikelib.learning.base import LocalizationTargets, Updater, check_finite_loss
from spikelib.learning.bptt import check_loss_kwargs
from spikelib.learning.losses import localization_loss
from spikelib.models.localizer import Prediction, SpikingLocalizer, decode_boxes
from spikelib.snn.neurons import LIFState

__all__ = ["RandomReadout", "rate_floor_penalty", "DECOLLE"]


class RandomReadout(nn.Module):
    r"""A fixed random linear readout: spikes of one layer -> class logits and a box.

    .. math::

        y = G\, \mathrm{pool}(S), \qquad G_{ij} \sim \mathcal{U}\Big(-\frac{a}{\sqrt{n}},
            \frac{a}{\sqrt{n}}\Big)

    with :math:`n` the number of inputs after an optional average pool to ``pool`` x
    ``pool`` (the pooled map keeps where things are, and makes :math:`G` small). The
    weights are a buffer, not a parameter: no optimizer sees them.

    Args:
        in_shape (tuple[int, int, int]): ``(C, H, W)`` of the layer's spike map.
        num_classes (int): class logits to predict (plus 4 box outputs).
        box_param (str): how the 4 box outputs are decoded (:func:`spikelib.models.localizer.decode_boxes`).
        scale (float): :math:`a > 0`.
        pool (int): pooled size (0: no pooling); must divide ``H`` and ``W`` when smaller.
        generator (torch.Generator, optional): source of the random weights.
    """

    weight: Tensor

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        box_param: str = "cxcywh",
        scale: float = 1.0,
        pool: int = 16,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        channels, height, width = (int(v) for v in in_shape)
        self.pool = pool if pool and pool < min(height, width) else 0
        side_h, side_w = (self.pool, self.pool) if self.pool else (height, width)
        fan_in = channels * side_h * side_w
        bound = scale / math.sqrt(fan_in)
        weight = (torch.rand(num_classes + 4, fan_in, generator=generator) * 2 - 1) * bound
        self.register_buffer("weight", weight)
        self.num_classes, self.box_param, self.scale = num_classes, box_param, scale
        self.in_shape = (channels, height, width)

    def raw(self, spk: Tensor) -> Tensor:
        """``spk [B, C, H, W] -> [B, num_classes + 4]`` (linear, differentiable in ``spk``)."""
        if self.pool:
            spk = F.adaptive_avg_pool2d(spk, self.pool)
        return F.linear(spk.flatten(1), self.weight)

    def forward(self, spk: Tensor) -> Prediction:
        raw = self.raw(spk)
        return Prediction(raw[:, : self.num_classes], decode_boxes(raw[:, self.num_classes :], self.box_param))

    def extra_repr(self) -> str:
        return (
            f"in_shape={self.in_shape}, outputs={self.num_classes}+4, scale={self.scale}, "
            f"pool={self.pool}, box_param={self.box_param!r} (fixed)"
        )


def rate_floor_penalty(spk: Tensor, mem: Tensor, threshold: float, floor: float) -> Tensor:
    r"""Activity floor of one layer: while it fires too little, raise its membrane potentials.

    .. math::

        R_l = \big[\bar S_l < f\big]\; \big\langle \mathrm{ReLU}(\theta - U_l) \big\rangle

    with :math:`\bar S_l` the layer's mean spike rate at this step (no gradient) and the
    mean taken over its neurons. A layer whose random readout is best served by silence
    (a silent layer makes its readout predict the centred box and uniform class scores)
    would otherwise fall silent, and a silent last layer leaves the head nothing to read;
    measured: without it, the last decoder layer of the narrow model of notebook 05 fired
    0.1 % of the time after 150 DECOLLE batches. DECOLLE's own code has an activity
    regularizer for the same reason (on the membrane, as here).

    Args:
        spk (Tensor[B, ...]): the layer's spikes at this step.
        mem (Tensor[B, ...]): its membrane potential, differentiable.
        threshold (float): :math:`\theta`.
        floor (float): :math:`f`, spikes per neuron per step.

    Returns:
        Tensor[]: :math:`R_l`, zero when the layer fires at least ``floor``.
    """
    if float(spk.detach().mean()) >= floor:
        return mem.new_zeros(())
    return F.relu(threshold - mem).mean()


def _spiking_localizer(model: nn.Module) -> SpikingLocalizer:
    """``model``, if it is a :class:`SpikingLocalizer` (the only model DECOLLE can run step by step)."""
    if not isinstance(model, SpikingLocalizer):
        raise TypeError(
            f"DECOLLE trains a SpikingLocalizer (it runs the model step by step), got "
            f"{type(model).__name__}; train the ANN twin with BPTT"
        )
    return model


class DECOLLE:
    r"""The DECOLLE learning rule for a :class:`~spikelib.models.localizer.SpikingLocalizer`.

    One :meth:`train_step` presents the batch for the model's ``T`` steps, one step at a
    time; at each step :math:`t \ge` ``burn_in`` it backpropagates

    .. math:: \sum_l \big( L(G_l S_l[t], y) + \lambda R_l[t] \big) + L(\mathrm{head}(F[t]), y)

    where :math:`R_l` is an activity floor (:func:`rate_floor_penalty`, weight
    :math:`\lambda`), :math:`F[t]` the head's input (the running mean of the last layer's spikes,
    or its current spikes, per the model's ``readout``), with every layer's input and every
    neuron state detached. Each weight therefore receives the gradient of its own layer's
    local loss only. With ``online=True`` (default, as in the paper) the weights are updated
    after every learning step (``T - burn_in`` updates per batch, and as many steps of the
    learning-rate schedule); with ``online=False`` once per batch.

    The trainer does not wrap the model in ``DistributedDataParallel`` for it
    (``through_forward = False``: the model runs step by step, not through ``forward``); in
    a multi-process run it averages the gradients before every update instead.

    Args:
        readout_scale (float): :math:`a`, the bound of the random readout weights is
            :math:`a/\sqrt{\text{fan-in}}`. Default 1.
        readout_pool (int): average-pool each layer's map to this size before its readout
            (0: none). Default 16.
        burn_in (int): steps at the start of each sequence with no loss (the neurons
            settle first). Default 0.
        online (bool): update the weights after every time step. Default True.
        seed (int): seed of the random readout weights.
        rate_floor (float): activity floor in spikes per neuron per step
            (:func:`rate_floor_penalty`, added to each layer's local loss); 0 turns it
            off. Default 0.02.
        rate_weight (float): weight of that penalty. Default 1.
        **loss_kwargs: passed to :func:`spikelib.learning.losses.localization_loss`.

    Attributes:
        readouts (nn.ModuleDict): layer name -> :class:`RandomReadout`, built for the model
            at the first step (:meth:`readouts_for`).
    """

    name = "decolle"
    through_forward = False

    def __init__(
        self,
        readout_scale: float = 1.0,
        readout_pool: int = 16,
        burn_in: int = 0,
        online: bool = True,
        seed: int = 0,
        rate_floor: float = 0.02,
        rate_weight: float = 1.0,
        **loss_kwargs: Any,
    ) -> None:
        check_number("readout_scale", readout_scale, 0.0, low_open=True)
        for name, value in (("readout_pool", readout_pool), ("burn_in", burn_in)):
            check_number(name, value, 0, integer=True)
        self.readout_scale, self.readout_pool, self.burn_in = float(readout_scale), readout_pool, burn_in
        self.online, self.seed = bool(online), seed
        for name, rate in (("rate_floor", rate_floor), ("rate_weight", rate_weight)):
            check_number(name, rate, 0.0)
        self.rate_floor, self.rate_weight = float(rate_floor), float(rate_weight)
        self.loss_kwargs = check_loss_kwargs(loss_kwargs)
        self.readouts = nn.ModuleDict()
        self._built_for: tuple | None = None

    def readouts_for(self, model: SpikingLocalizer) -> nn.ModuleDict:
        """The fixed random readouts of ``model``'s layers (built once, same seed, same weights).

        Raises:
            TypeError: ``model`` is not a :class:`~spikelib.models.localizer.SpikingLocalizer`.
        """
        cfg = _spiking_localizer(model).config
        device = next(model.parameters()).device
        key = (tuple(cfg.feature_shapes().items()), cfg.num_classes, cfg.box_param, device)
        if key != self._built_for:
            generator = torch.Generator().manual_seed(self.seed)
            self.readouts = nn.ModuleDict(
                {
                    name: RandomReadout(
                        shape, cfg.num_classes, cfg.box_param, self.readout_scale, self.readout_pool, generator
                    )
                    for name, shape in cfg.feature_shapes().items()
                }
            ).to(device)
            self._built_for = key
        return self.readouts

    def updates_per_batch(self, model: nn.Module) -> int:
        """``T - burn_in`` weight updates per batch when ``online``, else 1.

        Raises:
            TypeError: ``model`` is not a :class:`~spikelib.models.localizer.SpikingLocalizer`.
        """
        num_steps = _spiking_localizer(model).config.num_steps
        return max(1, num_steps - self.burn_in) if self.online else 1

    def train_step(
        self, model: nn.Module, images: Tensor, targets: LocalizationTargets, update: Updater
    ) -> dict[str, float]:
        """One batch, presented for ``T`` steps, learning locally at each.

        Args:
            model (SpikingLocalizer): the network (its head is trained too).
            images (Tensor[B, C, H, W]): the batch.
            targets (LocalizationTargets): ``{"box": Tensor[B, 4], "label": Tensor[B]}``.
            update: from the trainer: every step's forward pass and losses run inside
                ``update.autocast()``, each backward outside it; ``update.step()`` after
                every learning step (``online``) or once at the end.

        Returns:
            dict[str, float]: of the head's prediction at the last step, as :class:`BPTT`
            reports it: ``loss``, ``box_loss``, ``class_loss``, ``iou``, ``accuracy``;
            plus ``local_loss`` (the layers' local losses summed over layers, averaged over
            the learning steps) and ``local_loss_<layer>`` for each layer.

        Raises:
            ValueError: ``burn_in >= T``, or a model whose ``readout`` is neither ``"mean"``
                nor ``"last"`` (the head learns online from spikes here).
            TypeError: ``model`` is not a :class:`~spikelib.models.localizer.SpikingLocalizer`
                (the ANN twin has no time steps: train it with :class:`~spikelib.learning.bptt.BPTT`).
            TrainingDiverged: NaN or infinite loss.
        """
        model = _spiking_localizer(model)  # first: refuses the twin, whose config has no readout
        readouts = self.readouts_for(model)
        cfg = model.config
        if cfg.readout not in ("mean", "last"):
            raise ValueError(
                f"DECOLLE trains the head on the last layer's spikes, so the model's readout "
                f"must be 'mean' or 'last', got readout={cfg.readout!r}"
            )
        if self.burn_in >= cfg.num_steps:
            raise ValueError(f"burn_in={self.burn_in} leaves no step to learn from at num_steps={cfg.num_steps}")
        model.train()
        names = cfg.layer_names()
        local_sums = dict.fromkeys(names, 0.0)
        states: list[LIFState] | None = None
        last_sum: Tensor | None = None
        head_info: dict[str, float] = {}
        for t, x in enumerate(model.encode(images).unbind(0)):
            learn = t >= self.burn_in
            with torch.set_grad_enabled(learn), update.autocast():
                spks, states_with_grad = model.step(x, states, detach_inputs=True)
            states = [LIFState(state.mem.detach()) for state in states_with_grad]  # no gradient through time
            last = spks[-1].detach()
            last_sum = last if last_sum is None else last_sum + last
            if not learn:
                continue
            with update.autocast():
                total = spks[-1].new_zeros(())
                for index, (name, spk) in enumerate(zip(names, spks)):
                    local, info = localization_loss(readouts[name](spk), targets, **self.loss_kwargs)
                    total = total + local
                    local_sums[name] += info["loss"]
                    if self.rate_floor > 0:
                        penalty = rate_floor_penalty(spk, states_with_grad[index].mem, cfg.threshold, self.rate_floor)
                        total = total + self.rate_weight * penalty
                features = last_sum / (t + 1) if cfg.readout == "mean" else last
                head_loss, head_info = localization_loss(model.head(features), targets, **self.loss_kwargs)
                total = total + head_loss
            check_finite_loss(total, f"DECOLLE step t={t}")
            total.backward()  # frees this step's graph
            if self.online:
                update.step()
        if not self.online:
            update.step()
        num_learning_steps = cfg.num_steps - self.burn_in
        result = dict(head_info)
        result["local_loss"] = sum(local_sums.values()) / num_learning_steps
        result.update({f"local_loss_{name}": value / num_learning_steps for name, value in local_sums.items()})
        return result

    def state_dict(self) -> dict[str, Any]:
        """Nothing to keep: the readouts' fixed random weights are drawn from ``seed``.

        :meth:`readouts_for` rebuilds them from a generator seeded with ``seed`` (never the
        global random state), so a resumed run that builds the rule with the same options
        gets the same readouts bit for bit.
        """
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore (see :meth:`state_dict`)."""

    @torch.no_grad()
    def layer_predictions(self, model: SpikingLocalizer, images: Tensor) -> dict[str, Prediction]:
        """What every layer's readout predicts, from its spike rate over the ``T`` steps.

        Since a readout is linear, reading the mean spikes equals averaging the readout's
        outputs over time (before box decoding).

        Returns:
            dict[str, Prediction]: layer name -> its readout's prediction, and ``"head"``
            -> the model's own prediction.
        """
        readouts = self.readouts_for(model)
        model.eval()
        record = model.record(images)
        predictions = {name: readouts[name](spk_seq.mean(0)) for name, spk_seq in record.outputs.items()}
        predictions["head"] = record.prediction
        return predictions

    def __repr__(self) -> str:
        options = [
            f"readout_scale={self.readout_scale}",
            f"readout_pool={self.readout_pool}",
            f"burn_in={self.burn_in}",
            f"online={self.online}",
            f"seed={self.seed}",
            f"rate_floor={self.rate_floor}",
            f"rate_weight={self.rate_weight}",
        ]
        options += [f"{k}={v!r}" for k, v in self.loss_kwargs.items()]
        return f"DECOLLE({', '.join(options)})"

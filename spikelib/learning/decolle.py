r"""DECOLLE: deep continuous local learning (Kaiser, Mostafa & Neftci, Front. Neurosci. 2020).

Backpropagation through time (:class:`spikelib.learning.bptt.BPTT`) sends the error of the
final prediction back through every layer and every time step; it must keep the graph
of all :math:`T` steps until the backward pass, so its memory grows with :math:`T`.
DECOLLE makes every spiking layer learn on its own, at every step:

* each layer :math:`l` gets a **readout** :math:`G_l` with fixed random weights, drawn
  once, uniform in :math:`\pm a / \sqrt{\text{fan-in}}`, and never trained, that maps the
  layer's activity to a prediction of the target (class logits and a box, decoded as the
  model's head decodes its own). The activity read is :math:`\sigma(U_l[t] - \theta)`, the
  logistic sigmoid of the membrane (as Barchid et al.'s localizer reads its layers), by
  default, or the spikes :math:`S_l[t]`;
* each layer minimizes its own **local loss** :math:`L_l[t] = L(G_l\,\sigma(U_l[t]-\theta), y)`,
  with the gradient stopped at the layer's input (no error flows from layer :math:`l` into
  layer :math:`l-1`) and through time (the neuron state is detached at every step), so

  .. math::

      \frac{\partial L_l[t]}{\partial W_l} = \frac{\partial L_l[t]}{\partial U_l[t]}\,
          \frac{\partial U_l[t]}{\partial W_l}, \qquad
      \frac{\partial U_l[t]}{\partial W_l} \approx E_l[t] = \beta\, E_l[t-1] + X_l[t]

  where :math:`E_l` is the **input eligibility trace** (:class:`InputTraces`): with
  :math:`U_l[t] = \beta U_l[t-1] + W_l X_l[t] + \dots`, the membrane holds
  :math:`W_l \sum_k \beta^k X_l[t-k]`, so its derivative is the filtered input, not the
  input of this step alone (exact but for the reset term). Only quantities of step
  :math:`t` are needed: weights can change online, and memory does not grow with :math:`T`;
* a layer's rate is kept between a floor and a ceiling (:func:`rate_floor_penalty`,
  :func:`rate_ceiling_penalty`; DECOLLE's code regularizes activity too);
* the model's own head (trained weights) is **fit** once per batch on the detached
  features of the frozen layers, through the model's own ``forward`` in eval mode (the
  features it will read at test time), so it fits whatever head the model has and is
  never dragged by the layers' local updates.

The model runs one time step at a time (:meth:`spikelib.models.localizer.SpikingLocalizer.step`),
and each step's graph is freed by its backward pass before the next step is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from spikelib.checks import check_choice, check_number
from spikelib.learning.base import LocalizationTargets, Updater, check_finite_loss
from spikelib.learning.bptt import check_loss_kwargs
from spikelib.learning.local import (
    READOUT_INPUTS,
    READOUTS,
    InputTraces,
    MomentReadout,
    RandomReadout,
    rate_ceiling_penalty,
    rate_floor_penalty,
)
from spikelib.learning.losses import localization_loss
from spikelib.models.localizer import Prediction, SpikingLocalizer
from spikelib.snn.neurons import LIFState

__all__ = [
    "READOUTS",
    "READOUT_INPUTS",
    "RandomReadout",
    "MomentReadout",
    "rate_floor_penalty",
    "rate_ceiling_penalty",
    "InputTraces",
    "DECOLLE",
]


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

    One :meth:`train_step` has two phases.

    **Local phase.** The batch is presented for the model's ``T`` steps, one step at a
    time; at each step :math:`t \ge` ``burn_in`` it backpropagates

    .. math:: \sum_l \Big( L\big(G_l\, \sigma(U_l[t] - \theta), y\big)
        + \lambda \big(R_l[t] + C_l[t]\big) \Big)

    with the readouts :math:`G_l` fixed and random (:class:`RandomReadout`), :math:`R_l`
    and :math:`C_l` the rate floor and ceiling (:func:`rate_floor_penalty`,
    :func:`rate_ceiling_penalty`, weight :math:`\lambda`), every layer's input and every
    neuron state detached, and, with ``input_trace``, the weights' gradient taken through
    the input eligibility trace (:class:`InputTraces`). Each weight therefore receives the
    gradient of its own layer's local loss only. With ``online=True`` (default, as in the
    paper) the weights are updated after every learning step; with ``online=False`` once
    per batch. The head gets no gradient in this phase.

    **Head phase.** The layers are frozen (no gradient) and the model runs its own
    ``forward`` in eval mode on the batch; the head's loss is backpropagated into the head
    alone and ``head_steps`` updates are made (one forward pass each). The head is thus
    fit on the detached features it will read at test time, whatever its inputs are.

    Every update goes through the trainer's optimizer and schedule (parameters without a
    gradient are left alone by it), so ``updates_per_batch`` counts both phases.

    Args:
        readout_scale (float): :math:`a`, the bound of the random readout weights is
            :math:`a/\sqrt{\text{fan-in}}`. Default 1.
        readout_pool (int): average-pool each layer's map to this size before its readout
            (0: none). Default 16.
        readout_input (str): what the readouts read: ``"sigmoid"`` (default,
            :math:`\sigma(U - \theta)`) or ``"spikes"``.
        input_trace (bool): gradient through the input eligibility trace. Default True.
        burn_in (int): steps at the start of each sequence with no local loss. Default 0.
        online (bool): update the layers after every time step. Default True.
        seed (int): seed of the random readout weights.
        rate_floor (float): lowest spike rate per layer (0: off). Default 0.02.
        rate_ceiling (float): highest spike rate per layer (1: off). Default 0.5.
        rate_weight (float): :math:`\lambda`. Default 1.
        head_steps (int): head updates per batch (0: the head is not trained). Default 1.
        **loss_kwargs: passed to :func:`spikelib.learning.losses.localization_loss`.

    Attributes:
        readouts (nn.ModuleDict): layer name -> :class:`RandomReadout`, built for the model
            at the first step (:meth:`readouts_for`).
    """

    name = "decolle"
    through_forward = False

    def __init__(
        self,
        readout: str = "random",
        readout_scale: float = 1.0,
        readout_pool: int = 16,
        readout_input: str = "sigmoid",
        input_trace: bool = True,
        burn_in: int = 0,
        online: bool = True,
        seed: int = 0,
        rate_floor: float = 0.02,
        rate_ceiling: float = 0.5,
        rate_weight: float = 1.0,
        head_steps: int = 1,
        head_lr: float | None = None,
        **loss_kwargs: Any,
    ) -> None:
        check_number("readout_scale", readout_scale, 0.0, low_open=True)
        for name, value in (("readout_pool", readout_pool), ("burn_in", burn_in), ("head_steps", head_steps)):
            check_number(name, value, 0, integer=True)
        self.readout_scale, self.readout_pool, self.burn_in = float(readout_scale), readout_pool, burn_in
        self.readout = check_choice("readout", readout, READOUTS)
        self.readout_input = check_choice("readout_input", readout_input, READOUT_INPUTS)
        self.input_trace, self.online, self.seed, self.head_steps = bool(input_trace), bool(online), seed, head_steps
        for name, rate in (("rate_floor", rate_floor), ("rate_weight", rate_weight)):
            check_number(name, rate, 0.0)
        check_number("rate_ceiling", rate_ceiling, 0.0, 1.0, low_open=True)
        if rate_ceiling <= rate_floor:
            raise ValueError(f"rate_ceiling={rate_ceiling} must be above rate_floor={rate_floor}")
        self.rate_floor, self.rate_ceiling, self.rate_weight = (
            float(rate_floor),
            float(rate_ceiling),
            float(rate_weight),
        )
        if head_lr is not None:
            check_number("head_lr", head_lr, 0.0, low_open=True)
        self.head_lr = head_lr
        self.head_optimizer: torch.optim.Optimizer | None = None
        self.head_optimizer_state: dict[str, Any] | None = None
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
        key = (tuple(cfg.feature_shapes().items()), cfg.num_classes, cfg.box_param, device, self.readout)
        if key != self._built_for:
            generator = torch.Generator().manual_seed(self.seed)
            readouts: dict[str, nn.Module] = {}
            for name, shape in cfg.feature_shapes().items():
                if self.readout == "moments":
                    readouts[name] = MomentReadout(shape, cfg.num_classes, self.readout_scale, generator)
                else:
                    readouts[name] = RandomReadout(
                        shape, cfg.num_classes, cfg.box_param, self.readout_scale, self.readout_pool, generator
                    )
            self.readouts = nn.ModuleDict(readouts).to(device)
            self._built_for = key
        return self.readouts

    def local_updates_per_batch(self, model: nn.Module) -> int:
        """Updates of the local phase: ``T - burn_in`` when ``online``, else 1."""
        num_steps = _spiking_localizer(model).config.num_steps
        return max(1, num_steps - self.burn_in) if self.online else 1

    def updates_per_batch(self, model: nn.Module) -> int:
        """Local updates (:meth:`local_updates_per_batch`) plus ``head_steps``.

        Raises:
            TypeError: ``model`` is not a :class:`~spikelib.models.localizer.SpikingLocalizer`.
        """
        return self.local_updates_per_batch(model) + (self.head_steps if self.head_lr is None else 0)

    def head_optimizer_for(self, model: SpikingLocalizer) -> torch.optim.Optimizer:
        """The head's own Adam (``head_lr``), built for ``model``'s head at first use."""
        if self.head_lr is None:
            raise ValueError("the head has its own optimizer only with head_lr set; got head_lr=None")
        params = list(model.head.parameters())
        if self.head_optimizer is None or self.head_optimizer.param_groups[0]["params"] != params:
            self.head_optimizer = torch.optim.Adam(params, lr=self.head_lr)
            if self.head_optimizer_state is not None:  # resumed: continue the saved moments
                self.head_optimizer.load_state_dict(self.head_optimizer_state)
                self.head_optimizer_state = None
        return self.head_optimizer

    def layer_input(self, spk: Tensor, mem: Tensor, threshold: float) -> Tensor:
        r"""What a layer's readout reads: :math:`\sigma(U - \theta)` or the spikes ``spk``."""
        return torch.sigmoid(mem - threshold) if self.readout_input == "sigmoid" else spk

    def train_step(
        self, model: nn.Module, images: Tensor, targets: LocalizationTargets, update: Updater
    ) -> dict[str, float]:
        """One batch: the local phase over ``T`` steps, then the head phase.

        Args:
            model (SpikingLocalizer): the network (its head is trained too).
            images (Tensor[B, C, H, W]): the batch.
            targets (LocalizationTargets): ``{"box": Tensor[B, 4], "label": Tensor[B]}``.
            update: from the trainer: forward passes run inside ``update.autocast()``,
                each backward outside it; ``update.step()`` after every local learning
                step (``online``) or once after them, then once per head step.

        Returns:
            dict[str, float]: of the head's prediction (its last fit step), as
            :class:`BPTT` reports it: ``loss``, ``box_loss``, ``class_loss``, ``iou``,
            ``accuracy``; plus ``local_loss`` (the layers' local losses summed over
            layers, averaged over the learning steps), ``local_loss_<layer>`` and
            ``rate_<layer>`` (spikes per neuron per step) for each layer.

        Raises:
            ValueError: ``burn_in >= T``.
            TypeError: ``model`` is not a :class:`~spikelib.models.localizer.SpikingLocalizer`
                (the ANN twin has no time steps: train it with :class:`~spikelib.learning.bptt.BPTT`).
            TrainingDiverged: NaN or infinite loss.
        """
        model = _spiking_localizer(model)
        readouts = self.readouts_for(model)
        cfg = model.config
        if self.burn_in >= cfg.num_steps:
            raise ValueError(f"burn_in={self.burn_in} leaves no step to learn from at num_steps={cfg.num_steps}")
        model.train()
        names = cfg.layer_names()
        local_sums = dict.fromkeys(names, 0.0)
        rate_sums = dict.fromkeys(names, 0.0)
        states: list[LIFState] | None = None
        traces = InputTraces(cfg.beta) if self.input_trace else None
        for t, x in enumerate(model.encode(images).unbind(0)):
            learn = t >= self.burn_in
            with torch.set_grad_enabled(learn), update.autocast():
                spks, states_with_grad = model.step(x, states, detach_inputs=True, current_fn=traces)
            states = [LIFState(state.mem.detach()) for state in states_with_grad]  # no gradient through time
            for name, spk in zip(names, spks):
                rate_sums[name] += float(spk.detach().mean())
            if not learn:
                continue
            with update.autocast():
                total = spks[-1].new_zeros(())
                for name, spk, state in zip(names, spks, states_with_grad):
                    readout_in = self.layer_input(spk, state.mem, cfg.threshold)
                    local, info = localization_loss(readouts[name](readout_in), targets, **self.loss_kwargs)
                    total = total + local
                    local_sums[name] += info["loss"]
                    if self.rate_floor > 0:
                        total = total + self.rate_weight * rate_floor_penalty(
                            spk, state.mem, cfg.threshold, self.rate_floor
                        )
                    if self.rate_ceiling < 1:
                        total = total + self.rate_weight * rate_ceiling_penalty(
                            spk, state.mem, cfg.threshold, self.rate_ceiling
                        )
            check_finite_loss(total, f"DECOLLE step t={t}")
            total.backward()  # frees this step's graph
            if self.online:
                update.step()
        if not self.online:
            update.step()
        result: dict[str, float] = {}
        for _ in range(self.head_steps):
            result = self.fit_head(model, images, targets, update)
        if not self.head_steps:  # the head is not trained: report its loss all the same
            model.eval()
            with torch.no_grad(), update.autocast():
                result = localization_loss(model(images), targets, **self.loss_kwargs)[1]
            model.train()
        num_learning_steps = cfg.num_steps - self.burn_in
        result["local_loss"] = sum(local_sums.values()) / num_learning_steps
        result.update({f"local_loss_{name}": value / num_learning_steps for name, value in local_sums.items()})
        result.update({f"rate_{name}": value / cfg.num_steps for name, value in rate_sums.items()})
        return result

    def fit_head(
        self, model: SpikingLocalizer, images: Tensor, targets: LocalizationTargets, update: Updater
    ) -> dict[str, float]:
        """One update of the model's head on the frozen layers' detached features.

        The layers' parameters stop requiring gradients for the duration (they are restored
        after, also on error), the model runs its own ``forward`` in eval mode (BatchNorm
        with running statistics: the features of test time), and only the head's
        parameters get a gradient.

        Returns:
            dict[str, float]: the head's ``loss``, ``box_loss``, ``class_loss``, ``iou``,
            ``accuracy`` on the batch (before the update).
        """
        head_params = {id(p) for p in model.head.parameters()}
        frozen = [p for p in model.parameters() if id(p) not in head_params and p.requires_grad]
        was_training = model.training
        model.eval()
        for param in frozen:
            param.requires_grad_(False)
        try:
            with update.autocast():
                loss, info = localization_loss(model(images), targets, **self.loss_kwargs)
            check_finite_loss(loss, "DECOLLE head")
            loss.backward()
        finally:
            for param in frozen:
                param.requires_grad_(True)
            model.train(was_training)
        if self.head_lr is None:
            update.step()
        else:
            optimizer = self.head_optimizer_for(model)
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                for param in model.head.parameters():  # the trainer averages only what its optimizer steps
                    if param.grad is not None:
                        dist.all_reduce(param.grad)
                        param.grad /= dist.get_world_size()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return info

    def state_dict(self) -> dict[str, Any]:
        """The head's own optimizer state (with ``head_lr``, once built); nothing else.

        The readouts' fixed random weights are not saved: :meth:`readouts_for` rebuilds them
        from a generator seeded with ``seed`` (never the global random state), so a resumed
        run that builds the rule with the same options gets the same readouts bit for bit.
        """
        return {} if self.head_optimizer is None else {"head_optimizer": self.head_optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the head's optimizer state (applied when :meth:`head_optimizer_for` builds it)."""
        self.head_optimizer_state = state.get("head_optimizer")
        self.head_optimizer = None

    @torch.no_grad()
    def layer_predictions(self, model: SpikingLocalizer, images: Tensor) -> dict[str, Prediction]:
        """What every layer's readout predicts at the last step, and what the head predicts.

        Each layer is read as in training (:meth:`layer_input`) at step ``T - 1``, the
        evaluation of Barchid et al.'s localizer, with the model in eval mode.

        Returns:
            dict[str, Prediction]: layer name -> its readout's prediction, and ``"head"``
            -> the model's own prediction.
        """
        readouts = self.readouts_for(model)
        cfg = model.config
        model.eval()
        states: list[LIFState] | None = None
        spks: list[Tensor] = []
        for x in model.encode(images).unbind(0):
            spks, states = model.step(x, states)
        predictions = {
            name: readouts[name](self.layer_input(spk, state.mem, cfg.threshold))
            for name, spk, state in zip(cfg.layer_names(), spks, states or [])
        }
        predictions["head"] = model(images)
        return predictions

    def __repr__(self) -> str:
        options = [
            f"readout={self.readout!r}",
            f"readout_scale={self.readout_scale}",
            f"readout_pool={self.readout_pool}",
            f"readout_input={self.readout_input!r}",
            f"input_trace={self.input_trace}",
            f"burn_in={self.burn_in}",
            f"online={self.online}",
            f"seed={self.seed}",
            f"rate_floor={self.rate_floor}",
            f"rate_ceiling={self.rate_ceiling}",
            f"rate_weight={self.rate_weight}",
            f"head_steps={self.head_steps}",
        ]
        options += [f"{k}={v!r}" for k, v in self.loss_kwargs.items()]
        return f"DECOLLE({', '.join(options)})"

"""spikelib.models.localizer localizer: config, shapes, box decoding, step = sequence, ANN twin, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from spikelib.eval.activity import SpikeCounter
from spikelib.models.config import PRESETS, LocalizerConfig, preset
from spikelib.models.localizer import (
    AnnLocalizer,
    Prediction,
    SpikingLocalizer,
    build_ann_twin,
    build_localizer,
    decode_boxes,
)
from spikelib.snn.neurons import leaky_integrate_seq, lif_seq

BATCH = 3


def _images(config: LocalizerConfig, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(BATCH, config.in_channels, config.image_size, config.image_size, generator=generator)


def _tiny(**overrides) -> LocalizerConfig:
    return preset("tiny", **overrides)


def test_default_config_is_the_barchid_2021_topology():
    shapes = LocalizerConfig().feature_shapes()
    assert shapes == {
        "enc1": (32, 64, 64),
        "enc2": (64, 32, 32),
        "enc3": (128, 16, 16),
        "dec1": (64, 16, 16),
        "dec2": (32, 32, 32),
        "dec3": (16, 64, 64),
    }
    model = build_localizer()
    kernels = [block.conv.kernel_size for block in [*model.encoder, *model.decoder]]
    assert kernels == [(5, 5), (3, 3), (3, 3), (3, 3), (3, 3), (3, 3)]
    assert model.config.beta == 0.5 and model.config.surrogate == "fast_sigmoid"
    assert model.config.surrogate_slope == 25.0


@pytest.mark.parametrize("encoder_depth", [1, 2])
def test_record_gives_every_layer_as_t_b_c_h_w_matching_the_config(encoder_depth):
    config = _tiny(num_steps=5, encoder_depth=encoder_depth)
    record = build_localizer(config).record(_images(config))
    assert list(record.outputs) == list(config.layer_names())
    for name, (channels, height, width) in config.feature_shapes().items():
        assert record.outputs[name].shape == (5, BATCH, channels, height, width), name
        assert set(record.outputs[name].unique().tolist()) <= {0.0, 1.0}


def test_forward_returns_logits_and_ordered_boxes_in_the_unit_square():
    config = _tiny()
    pred = build_localizer(config)(_images(config))
    assert isinstance(pred, Prediction)
    assert pred.logits.shape == (BATCH, config.num_classes) and pred.boxes.shape == (BATCH, 4)
    assert bool((pred.boxes >= 0).all() and (pred.boxes <= 1).all())
    assert bool((pred.boxes[:, 2:] >= pred.boxes[:, :2]).all())


def test_every_layer_fires_at_initialisation():
    """init_gain keeps deep layers out of silence (a silent layer passes no gradient)."""
    config = LocalizerConfig(num_steps=4)
    torch.manual_seed(0)
    images = 0.3 + 0.4 * torch.rand(4, 1, 64, 64)  # mid-grey with texture, like the data
    with torch.no_grad():
        record = build_localizer(config).record(images)
    rates = {name: float(spk.mean()) for name, spk in record.outputs.items()}
    assert all(0.02 < rate < 0.6 for rate in rates.values()), rates


@pytest.mark.parametrize("box_param", ["cxcywh", "xyxy"])
def test_decoded_boxes_are_ordered_for_any_raw_output(box_param):
    raw = 5 * torch.randn(200, 4, generator=torch.Generator().manual_seed(1))
    boxes = decode_boxes(raw, box_param)
    assert bool((boxes[:, 2:] >= boxes[:, :2]).all()) and bool(((boxes >= 0) & (boxes <= 1)).all())


def test_decoding_is_hand_worked():
    zero = torch.zeros(1, 4)
    torch.testing.assert_close(decode_boxes(zero, "cxcywh"), torch.tensor([[0.25, 0.25, 0.75, 0.75]]))
    torch.testing.assert_close(decode_boxes(zero, "xyxy"), torch.full((1, 4), 0.5))
    logit = torch.logit(torch.tensor([[0.8, 0.1, 0.2, 0.4]]))
    torch.testing.assert_close(decode_boxes(logit, "xyxy"), torch.tensor([[0.2, 0.1, 0.8, 0.4]]))


@pytest.mark.parametrize("encoder_depth", [1, 2])
def test_step_by_step_gives_the_same_spikes_as_the_whole_sequence(encoder_depth):
    config = _tiny(num_steps=6, encoder_depth=encoder_depth)
    model, images = build_localizer(config), _images(config)
    with torch.no_grad():
        whole = model.record(images).outputs
        states = None
        steps = {name: [] for name in config.layer_names()}
        for x in model.encode(images).unbind(0):
            spks, states = model.step(x, states)
            for name, spk in zip(config.layer_names(), spks):
                steps[name].append(spk)
    for name in config.layer_names():
        torch.testing.assert_close(torch.stack(steps[name]), whole[name], rtol=0, atol=0)


def test_first_layer_is_a_conv_then_the_reference_lif():
    config = _tiny(num_steps=4)
    model, images = build_localizer(config), _images(config)
    x_seq = model.encode(images)
    cur_seq = torch.stack([model.encoder[0].conv(x) for x in x_seq])
    expected, _ = lif_seq(cur_seq, model.encoder[0].lif.params, model.encoder[0].lif.spike_fn)
    torch.testing.assert_close(model.record(images).outputs["enc1"], expected)


def test_readout_last_uses_only_the_last_step():
    config = _tiny(readout="last")
    model, images = build_localizer(config), _images(config)
    record = model.record(images)
    expected = model.head(record.outputs["dec3"][-1])
    torch.testing.assert_close(record.prediction.boxes, expected.boxes)
    mean_model = build_localizer(config.replace(readout="mean"))
    mean_model.load_state_dict(model.state_dict())
    expected_mean = mean_model.head(record.outputs["dec3"].mean(0))
    torch.testing.assert_close(mean_model(images).logits, expected_mean.logits)


def test_skips_add_encoder_spikes_to_the_decoder():
    config = _tiny()
    model, images = build_localizer(config), _images(config)
    with_skip, without = model.record(images).outputs, model.record(images, skip=False).outputs
    for name in ("enc1", "enc2", "enc3", "dec1"):  # before the first skip nothing changes
        torch.testing.assert_close(with_skip[name], without[name])
    assert not torch.equal(with_skip["dec3"], without["dec3"])


def test_ann_twin_has_the_same_layers_and_no_time():
    config = _tiny()
    snn, ann = build_localizer(config), build_ann_twin(config)
    assert isinstance(snn, SpikingLocalizer) and isinstance(ann, AnnLocalizer)
    assert [p.shape for p in snn.parameters()] == [p.shape for p in ann.parameters()]
    assert [n for n, _ in snn.named_parameters()] == [n for n, _ in ann.named_parameters()]
    record = ann.record(_images(config))
    for name, (channels, height, width) in config.feature_shapes().items():
        assert record.outputs[name].shape == (BATCH, channels, height, width)
    assert bool((record.outputs["enc1"] >= 0).all())  # ReLU
    assert ann(_images(config)).boxes.shape == (BATCH, 4)


def test_a_twin_with_copied_weights_and_its_snn_load_each_others_state():
    config = _tiny()
    snn, ann = build_localizer(config), build_ann_twin(config)
    ann.load_state_dict(snn.state_dict())
    torch.testing.assert_close(ann.encoder[0].conv.weight, snn.encoder[0].conv.weight)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_and_run(name):
    config = preset(name, num_steps=2)
    pred = build_localizer(config)(_images(config)[:1])
    assert pred.boxes.shape == (1, 4)


def test_pyramid_preset_doubles_then_halves_channels():
    config = PRESETS["pyramid"]
    enc, dec = config.encoder_channels, config.decoder_channels
    assert all(b == 2 * a for a, b in zip(enc, enc[1:]))
    assert all(a == 2 * b for a, b in zip(dec, dec[1:]))


def test_rgb_and_other_codings_run():
    for coding in ("rate", "latency"):
        config = _tiny(in_channels=3, coding=coding, num_steps=4)
        model = build_localizer(config)
        x_seq = model.encode(_images(config))
        assert x_seq.shape == (4, BATCH, 3, 32, 32) and set(x_seq.unique().tolist()) <= {0.0, 1.0}
        assert model(_images(config)).boxes.shape == (BATCH, 4)


def test_config_round_trips_and_rejects_unknown_keys():
    config = _tiny(num_steps=7)
    assert LocalizerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="num_step"):
        LocalizerConfig.from_dict({"num_step": 4})


@pytest.mark.parametrize(
    "changes,parameter",
    [
        ({"num_steps": 0}, "num_steps"),
        ({"image_size": 60}, "image_size"),  # 60 is not divisible by 2**2
        ({"decoder_channels": (32, 32, 16)}, "decoder_channels"),  # skip would add 64 + 32 channels
        ({"encoder_kernels": (4, 3, 3)}, "encoder_kernels"),
        ({"encoder_kernels": (5, 3)}, "encoder_kernels"),
        ({"beta": 1.5}, "beta"),
        ({"coding": "poisson"}, "coding"),
        ({"readout": "max"}, "readout"),
        ({"norm": "layer"}, "norm"),
        ({"box_param": "xywh"}, "box_param"),
        ({"surrogate": "sigmoidal"}, "sigmoidal"),
        ({"head_pool": 7}, "head_pool"),
        ({"encoder_depth": 0}, "encoder_depth"),
        ({"encoder_depth": 5}, "encoder_depth"),
        ({"encoder_depth": 1.5}, "encoder_depth"),
    ],
)
def test_configurations_that_do_not_fit_raise_naming_the_parameter(changes, parameter):
    with pytest.raises(ValueError, match=parameter):
        LocalizerConfig(**changes)


def test_skip_false_lifts_the_channel_constraint():
    config = LocalizerConfig(decoder_channels=(32, 32, 16), skip=False, num_steps=1)
    assert build_localizer(config).config.skip is False


def test_wrong_input_raises_naming_the_parameter():
    config = _tiny()
    snn, ann = build_localizer(config), build_ann_twin(config)
    for model in (snn, ann):
        with pytest.raises(ValueError, match="in_channels=1"):
            model(torch.rand(2, 3, 32, 32))
        with pytest.raises(ValueError, match="image_size=32"):
            model(torch.rand(2, 1, 64, 64))
        with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
            model(torch.rand(1, 32, 32))
    with pytest.raises(TypeError, match="LocalizerConfig"):
        SpikingLocalizer({"num_steps": 4})


# -- readout "membrane" and norm "batch" --------------------------------------------------


def test_leaky_integrator_is_hand_worked():
    cur_seq = torch.tensor([1.0, 0.0, 2.0, -1.0]).view(4, 1, 1)
    mem_seq = leaky_integrate_seq(cur_seq, beta=0.5)
    torch.testing.assert_close(mem_seq.flatten(), torch.tensor([1.0, 0.5, 2.25, 0.125]))
    with pytest.raises(ValueError, match="beta"):
        leaky_integrate_seq(cur_seq, beta=1.5)


def test_readout_membrane_reads_the_integrated_current_of_the_last_layer():
    config = _tiny(readout="membrane", num_steps=5)
    model, images = build_localizer(config), _images(config)
    record = model.record(images)
    last = model.decoder[-1]
    # the last layer's input current, rebuilt from the recorded spikes below it
    dec_in = model.upsample(record.outputs["dec2"]) + record.outputs["enc1"]
    cur_seq = torch.stack([last.conv(x) for x in dec_in])
    mem_seq = torch.zeros_like(cur_seq)
    mem = torch.zeros_like(cur_seq[0])
    for t in range(config.num_steps):
        mem = config.beta * mem + cur_seq[t]
        mem_seq[t] = mem
    expected = model.head(mem_seq.mean(0))
    torch.testing.assert_close(record.prediction.boxes, expected.boxes)
    torch.testing.assert_close(record.prediction.logits, expected.logits)
    # the neurons of that layer still fire as with a spike readout
    spike_model = build_localizer(config.replace(readout="mean"))
    spike_model.load_state_dict(model.state_dict())
    torch.testing.assert_close(spike_model.record(images).outputs["dec3"], record.outputs["dec3"])
    # the head sees graded values, not T + 1 levels of a rate
    assert mem_seq.mean(0).unique().numel() > 10 * (config.num_steps + 1)


@pytest.mark.parametrize("readout", ["mean", "last", "membrane"])
def test_readout_seq_ends_with_what_the_head_reads(readout):
    config = _tiny(readout=readout, num_steps=4)
    model, images = build_localizer(config), _images(config)
    with torch.no_grad():
        record = model.record(images)
    assert record.readout_seq.shape == (4, BATCH, *config.feature_shapes()["dec3"])
    torch.testing.assert_close(model.head(record.readout_seq[-1]).boxes, record.prediction.boxes)
    shorter = build_localizer(config.replace(num_steps=2))
    shorter.load_state_dict(model.state_dict())
    with torch.no_grad():  # entry t = a run of t + 1 steps (direct coding is causal)
        torch.testing.assert_close(shorter(images).boxes, model.head(record.readout_seq[1]).boxes)


@pytest.mark.parametrize("readout", ["mean", "membrane"])
@pytest.mark.parametrize("norm", ["none", "batch"])
def test_bptt_gradient_reaches_every_weight_with_each_readout_and_norm(readout, norm):
    config = _tiny(readout=readout, norm=norm, init_gain=2.0)
    model, images = build_localizer(config), _images(config)
    pred = model(images)
    (pred.boxes.sum() + pred.logits.square().sum()).backward()
    for name, parameter in model.named_parameters():
        if name.endswith("weight"):
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_norm_batch_puts_batchnorm_in_every_block_of_both_twins():
    config = _tiny(norm="batch")
    snn, ann = build_localizer(config), build_ann_twin(config)
    for model in (snn, ann):
        blocks = [*model.encoder, *model.decoder]
        assert all(isinstance(b.bn, torch.nn.BatchNorm2d) and b.conv.bias is None for b in blocks)
    assert [n for n, _ in snn.named_parameters()] == [n for n, _ in ann.named_parameters()]
    assert [n for n, _ in snn.named_buffers()] == [n for n, _ in ann.named_buffers()]
    plain = build_localizer(_tiny())  # the default: no BN, biased convolutions
    assert all(b.bn is None and b.conv.bias is not None for b in [*plain.encoder, *plain.decoder])
    ann.load_state_dict(snn.state_dict())  # same topology, same state


def test_norm_batch_normalises_the_current_over_time_and_batch():
    config = _tiny(norm="batch", num_steps=3)
    model, images = build_localizer(config), _images(config)
    model.train()
    x_seq = model.encode(images)
    cur_seq = model.encoder[0].current_seq(x_seq)  # [T, B, C, H, W]
    mean = cur_seq.mean((0, 1, 3, 4))
    var = cur_seq.var((0, 1, 3, 4), unbiased=False)
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-5, rtol=0)
    torch.testing.assert_close(var, torch.ones_like(var), atol=1e-3, rtol=0)


def test_norm_batch_every_layer_fires_and_the_ann_twin_trains_a_step():
    config = _tiny(norm="batch")
    model, images = build_localizer(config), _images(config)
    with torch.no_grad():
        rates = {name: float(spk.mean()) for name, spk in model.record(images).outputs.items()}
    assert all(rate > 0.01 for rate in rates.values()), rates
    ann = build_ann_twin(config)
    pred = ann(images)
    pred.boxes.sum().backward()
    assert all(p.grad is not None for n, p in ann.named_parameters() if n.endswith("weight"))


def test_norm_batch_in_eval_mode_step_by_step_equals_the_whole_sequence():
    config = _tiny(norm="batch", num_steps=4)
    model, images = build_localizer(config), _images(config)
    model.train()
    model(images)  # some running statistics
    model.eval()
    with torch.no_grad():
        whole = model.record(images).outputs
        states, steps = None, []
        for x in model.encode(images).unbind(0):
            spks, states = model.step(x, states)
            steps.append(spks[-1])
    torch.testing.assert_close(torch.stack(steps), whole["dec3"], rtol=0, atol=0)


def test_norm_batch_step_uses_the_batch_statistics_of_one_step_in_training():
    config = _tiny(norm="batch", num_steps=2)
    model, images = build_localizer(config), _images(config)
    model.train()
    x = model.encode(images)[0]
    cur = model.encoder[0].current(x)
    torch.testing.assert_close(cur.mean((0, 2, 3)), torch.zeros(cur.shape[1]), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- the engine path


def _plain_prediction(model: SpikingLocalizer, images: torch.Tensor) -> Prediction:
    """The localizer written out plainly over whole sequences: the reference LIF (``lif_seq``), one
    convolution over ``[T*B, ...]``, BN over ``[T*B, ...]``, no int8 saving, no chunks, no arena."""
    config = model.config
    x_seq = model.encode(images)
    num_steps = x_seq.shape[0]

    def layer(block, inp_seq):
        cur = torch.nn.functional.conv2d(
            inp_seq.flatten(0, 1), block.conv.weight, block.conv.bias, padding=block.conv.padding
        )
        cur = block.bn(cur) if block.bn is not None else cur
        spk_seq, _ = lif_seq(cur.unflatten(0, (num_steps, -1)), block.lif.params, block.lif.spike_fn)
        return spk_seq

    def per_step(fn, seq):
        return fn(seq.flatten(0, 1)).unflatten(0, seq.shape[:2])

    outputs, x = [], x_seq
    for i, block in enumerate(model.encoder):
        x = layer(block, x if i == 0 else per_step(lambda t: torch.nn.functional.max_pool2d(t, 2), x))
        outputs.append(x)
    for j, block in enumerate(model.decoder):
        if j > 0:
            x = per_step(lambda t: torch.nn.functional.interpolate(t, scale_factor=2.0), x) + outputs[-1 - 2 * j]
        x = layer(block, x)
        outputs.append(x)
    features = x.mean(0) if config.readout == "mean" else x[-1]
    return model.head(features)


def _prediction_and_grads(model, images, run):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)  # the same rate code for every run
    pred = run(model, images)
    (pred.logits.square().sum() + (pred.boxes * torch.linspace(1, 2, 4, dtype=pred.boxes.dtype)).sum()).backward()
    return pred, {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize(
    ("norm", "coding", "readout"),
    [("none", "direct", "mean"), ("none", "rate", "last"), ("batch", "direct", "mean"), ("batch", "rate", "mean")],
)
def test_engine_path_equals_the_plain_whole_sequence_path_outputs_and_every_gradient(norm, coding, readout):
    config = _tiny(norm=norm, coding=coding, readout=readout, num_steps=5, init_gain=2.0)
    torch.manual_seed(0)
    model = build_localizer(config).double()
    images = _images(config).double()
    assert model.runs_chunked() == (norm == "none")  # BN in training: the whole sequence
    with torch.no_grad():
        torch.manual_seed(7)
        rates = [float(spk.mean()) for spk in model.record(images).outputs.values()]
    assert min(rates) > 0.01  # every layer spikes: the comparison means something
    engine_pred, engine_grads = _prediction_and_grads(model, images, lambda m, x: m(x))
    plain_pred, plain_grads = _prediction_and_grads(model, images, _plain_prediction)
    torch.testing.assert_close(engine_pred.logits, plain_pred.logits, rtol=0, atol=1e-12)
    torch.testing.assert_close(engine_pred.boxes, plain_pred.boxes, rtol=0, atol=1e-12)
    assert engine_grads.keys() == plain_grads.keys()
    for name, grad in engine_grads.items():
        assert plain_grads[name].abs().max() > 0, name
        torch.testing.assert_close(grad, plain_grads[name], rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("norm", ["none", "batch"])
@pytest.mark.parametrize("chunk_size", [1, 2])
def test_forward_chunked_is_bit_for_bit_the_whole_sequence_in_float32(norm, chunk_size):
    config = _tiny(norm=norm, num_steps=5, init_gain=2.0)
    torch.manual_seed(0)
    model, images = build_localizer(config), _images(config)
    if norm == "batch":
        model(images)  # running statistics, then eval mode: BN is chunkable
        model.eval()
    whole = SpikingLocalizer(config, chunk_size=None)
    whole.load_state_dict(model.state_dict())
    whole.train(model.training)
    model.chunk_size = chunk_size
    assert model.runs_chunked() and not whole.runs_chunked()
    chunked_pred, chunked_grads = _prediction_and_grads(model, images, lambda m, x: m(x))
    whole_pred, whole_grads = _prediction_and_grads(whole, images, lambda m, x: m(x))
    assert torch.equal(chunked_pred.logits, whole_pred.logits) and torch.equal(chunked_pred.boxes, whole_pred.boxes)
    assert torch.equal(whole_pred.logits, whole.record(images).prediction.logits)
    for name, grad in chunked_grads.items():
        torch.testing.assert_close(grad, whole_grads[name], rtol=1e-6, atol=1e-9, msg=name)


def test_forward_with_batch_norm_in_training_runs_the_whole_sequence_as_before():
    config = _tiny(norm="batch", num_steps=4)
    model, images = build_localizer(config), _images(config)
    model.train()
    assert not model.runs_chunked()
    reference = SpikingLocalizer(config, chunk_size=None)
    reference.load_state_dict(model.state_dict())
    assert torch.equal(model(images).boxes, reference.record(images).prediction.boxes)
    for module, ref in zip(model.modules(), reference.modules()):  # the same statistics were taken
        if isinstance(module, torch.nn.BatchNorm2d):
            assert torch.equal(module.running_mean, ref.running_mean)
    with pytest.raises(ValueError, match="chunk_size"):
        SpikingLocalizer(config, chunk_size=0)


def test_chunked_forward_is_seen_by_spike_counters_and_no_grad_runs_the_whole_sequence():
    config = _tiny(num_steps=4, init_gain=2.0)
    model, images = build_localizer(config), _images(config)
    assert model.runs_chunked()
    with torch.no_grad():
        assert not model.runs_chunked()  # evaluation tools hook LIF layers and read [T, B, ...] per call
        whole_rates = [float(spk.mean()) for spk in model.record(images).outputs.values()]
    with SpikeCounter(model) as counter:  # forward hooks fire once per chunk, on the chunk's spikes
        model(images)
    assert counter.neuron_steps == {
        name: 4 * BATCH * math.prod(shape)
        for name, shape in zip(counter.neuron_steps, config.feature_shapes().values())
    }
    assert list(counter.layer_rates().values()) == pytest.approx(whole_rates, rel=1e-6)


# -- class evidence from the deepest encoder level (class_source="encoder") -------------------


def test_class_source_encoder_reads_the_class_from_the_deepest_encoder_rate_and_the_box_from_the_decoder():
    config = _tiny(class_source="encoder", num_steps=4)
    torch.manual_seed(0)
    model, images = build_localizer(config), _images(config)
    record = model.record(images)
    deepest, last = record.outputs["enc3"], record.outputs["dec3"]
    expected = model.head(last.mean(0), deepest.mean(0))
    torch.testing.assert_close(record.prediction.logits, expected.logits)
    torch.testing.assert_close(record.prediction.logits, model.head.class_logits(deepest.mean(0)))
    torch.testing.assert_close(record.prediction.boxes, decode_boxes(model.head.raw(last.mean(0))))
    assert model.head.mlp[-1].out_features == 4  # the decoder head gives only the box
    with pytest.raises(ValueError, match="class_source='encoder': pass class_features"):
        model.head(last.mean(0))


def test_class_source_decoder_is_the_paper_head_and_refuses_class_features():
    config = _tiny(num_steps=3)
    model = build_localizer(config)
    assert config.class_source == "decoder" and model.head.classifier is None
    features = torch.rand(BATCH, *config.feature_shapes()["dec3"])
    with pytest.raises(ValueError, match="class_source='decoder'"):
        model.head(features, torch.rand(BATCH, *config.feature_shapes()["enc3"]))
    with pytest.raises(ValueError, match="class_source='decoder'"):
        model.head.class_logits(features)


@pytest.mark.parametrize("class_pool, class_hidden", [(1, ()), (2, (16,))])
def test_class_layers_take_channels_times_pool_squared_inputs(class_pool, class_hidden):
    config = _tiny(class_source="encoder", class_pool=class_pool, class_hidden=class_hidden)
    head = build_localizer(config).head
    assert head.classifier[0].in_features == config.encoder_channels[-1] * class_pool**2 == config.class_features()
    assert head.classifier[-1].out_features == config.num_classes
    assert len(head.classifier) == 2 * len(class_hidden) + 1


def test_class_pool_must_divide_the_deepest_map():
    with pytest.raises(ValueError, match="class_pool must divide the deepest encoder map's size 8"):
        _tiny(class_source="encoder", class_pool=3)
    with pytest.raises(ValueError, match="class_source"):
        _tiny(class_source="bottleneck")


@pytest.mark.parametrize(("chunk_size", "encoder_depth"), [(1, 1), (3, 1), (2, 2)])
def test_class_source_encoder_chunked_forward_equals_the_whole_sequence(chunk_size, encoder_depth):
    config = _tiny(class_source="encoder", num_steps=4, init_gain=2.0, encoder_depth=encoder_depth)
    torch.manual_seed(0)
    model, images = build_localizer(config), _images(config)
    whole = SpikingLocalizer(config, chunk_size=None)
    whole.load_state_dict(model.state_dict())
    model.chunk_size = chunk_size
    assert model.runs_chunked()
    chunked_pred, chunked_grads = _prediction_and_grads(model, images, lambda m, x: m(x))
    whole_pred, whole_grads = _prediction_and_grads(whole, images, lambda m, x: m(x))
    assert torch.equal(chunked_pred.logits, whole_pred.logits) and torch.equal(chunked_pred.boxes, whole_pred.boxes)
    assert chunked_grads["head.classifier.0.weight"].abs().max() > 0
    assert chunked_grads["encoder.0.conv.weight"].abs().max() > 0
    for name, grad in chunked_grads.items():
        torch.testing.assert_close(grad, whole_grads[name], rtol=1e-6, atol=1e-9, msg=name)


@pytest.mark.parametrize("readout", ["mean", "last"])
def test_prediction_seq_ends_with_the_prediction_and_matches_shorter_runs(readout):
    config = _tiny(class_source="encoder", num_steps=4, readout=readout)
    torch.manual_seed(0)
    model, images = build_localizer(config), _images(config)
    model.eval()
    with torch.no_grad():
        record = model.record(images)
        steps = model.prediction_seq(record)
        shorter = SpikingLocalizer(config.replace(num_steps=2))
        shorter.load_state_dict(model.state_dict())
        shorter.eval()
        early = shorter(images)
    assert len(steps) == 4 and record.class_readout_seq.shape == (4, BATCH, *config.feature_shapes()["enc3"])
    torch.testing.assert_close(steps[-1].logits, record.prediction.logits)
    torch.testing.assert_close(steps[1].logits, early.logits)
    torch.testing.assert_close(steps[1].boxes, early.boxes)


def test_ann_twin_with_class_source_encoder_reads_its_deepest_relu_map():
    config = _tiny(class_source="encoder", class_pool=2)
    torch.manual_seed(0)
    twin, images = build_ann_twin(config), _images(config)
    record = twin.record(images)
    torch.testing.assert_close(record.prediction.logits, twin.head.class_logits(record.outputs["enc3"]))
    assert sum(p.numel() for p in twin.parameters()) == sum(p.numel() for p in build_localizer(config).parameters())


def test_encoder_depth_stacks_layers_within_a_level_and_the_level_output_keeps_its_name():
    config = _tiny(encoder_depth=2)
    levels = config.levels
    names = config.layer_names()
    assert len(names) == 3 * levels and config.encoder_layers == 2 * levels
    assert names[:4] == ("enc1_1", "enc1", "enc2_1", "enc2") and names[-levels:] == tuple(
        f"dec{j + 1}" for j in range(levels)
    )
    shapes = config.feature_shapes()
    for level in range(1, levels + 1):
        assert shapes[f"enc{level}_1"] == shapes[f"enc{level}"] == _tiny().feature_shapes()[f"enc{level}"]
    model = build_localizer(config)
    inner = model.encoder[1]  # enc1: enc1_1's channels in, the same channels out
    assert inner.conv.in_channels == inner.conv.out_channels == config.encoder_channels[0]
    assert model.encoder[2].conv.in_channels == config.encoder_channels[0]  # enc2_1 after the pool
    twin = build_ann_twin(config)
    assert sum(p.numel() for p in twin.parameters()) == sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in build_localizer(_tiny()).parameters())


def test_with_encoder_depth_the_skips_and_the_class_layers_read_each_level_s_last_layer():
    config = _tiny(encoder_depth=2, class_source="encoder", num_steps=3)
    torch.manual_seed(0)
    twin, images = build_ann_twin(config), _images(config)
    twin.eval()
    with torch.no_grad():
        record = twin.record(images)
        maps = record.outputs
        torch.testing.assert_close(record.prediction.logits, twin.head.class_logits(maps[f"enc{config.levels}"]))
        # decoder level 2 reads the upsampled dec1 plus enc{L-1}, the output of that level
        expected = twin.decoder[1](twin.upsample(maps["dec1"]) + maps[f"enc{config.levels - 1}"])
    torch.testing.assert_close(maps["dec2"], expected)

"""Corruptions (checked against torchvision), CorruptedDataset, RAD and mRAD (hand-worked)."""

import doctest
import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

import spikelib.eval.robustness
from spikelib.eval.robustness import (
    CORRUPTIONS,
    SEVERITY_LEVELS,
    CorruptedDataset,
    RobustnessReport,
    corrupt,
    mean_relative_accuracy_drop,
    relative_accuracy_drop,
    robustness_sweep,
)


def _scene(size: int = 64, batch: int = 2) -> torch.Tensor:
    """Gradient, a bright square and fine texture: edges for blur, detail for JPEG to lose.

    (Without the texture JPEG at quality 25 and 15 can land closer to a flat image than
    at 18: block artefacts are not monotone on smooth images.)
    """
    ramp = torch.linspace(0.2, 0.6, size)
    image = ramp[None, :].expand(size, size).clone()
    image[size // 4 : size // 2, size // 4 : size // 2] = 0.75
    image += 0.2 * torch.rand(size, size, generator=torch.Generator().manual_seed(0))
    return image.clamp(0, 1).expand(batch, 1, size, size).clone()


def test_doctests_pass():
    assert doctest.testmod(spikelib.eval.robustness).failed == 0


def test_every_corruption_has_five_severities_of_increasing_strength():
    assert set(SEVERITY_LEVELS) == set(CORRUPTIONS)
    for name, levels in SEVERITY_LEVELS.items():
        assert len(levels) == 5
        if name == "jpeg":  # lower quality is stronger
            assert list(levels) == sorted(levels, reverse=True)
        else:
            assert list(levels) == sorted(levels)


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_damage_grows_with_severity_and_severity_zero_is_clean(corruption):
    images = _scene()
    errors = [
        float((corrupt(images, corruption, s, torch.Generator().manual_seed(0)) - images).abs().mean())
        for s in range(6)
    ]
    assert errors[0] == 0.0
    assert all(b > a for a, b in zip(errors, errors[1:])), errors


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_output_keeps_shape_dtype_and_unit_range(corruption):
    images = torch.rand(3, 3, 32, 32)
    out = corrupt(images, corruption, 5, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_gaussian_noise_equals_torchvision_with_the_same_seed():
    images = torch.rand(2, 1, 16, 16)
    ours = corrupt(images, "gaussian_noise", 3, torch.Generator().manual_seed(5))
    torch.manual_seed(5)
    theirs = TF.gaussian_noise(images, mean=0.0, sigma=SEVERITY_LEVELS["gaussian_noise"][2], clip=True)
    torch.testing.assert_close(ours, theirs)


def test_noise_repeats_with_a_seed_and_leaves_the_global_generator_alone():
    images = torch.rand(1, 1, 16, 16)
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    a = corrupt(images, "salt_and_pepper", 2, torch.Generator().manual_seed(3))
    b = corrupt(images, "salt_and_pepper", 2, torch.Generator().manual_seed(3))
    c = corrupt(images, "salt_and_pepper", 2, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_salt_and_pepper_replaces_the_stated_share_half_black_half_white():
    images = torch.full((1, 200, 200), 0.5)
    amount = SEVERITY_LEVELS["salt_and_pepper"][4]  # 0.27
    out = corrupt(images, "salt_and_pepper", 5, torch.Generator().manual_seed(0))
    black, white = float((out == 0).float().mean()), float((out == 1).float().mean())
    assert black + white == pytest.approx(amount, abs=0.01)  # 40 000 draws: std ~ 0.002
    assert black == pytest.approx(white, abs=0.01)
    assert bool(((out == 0) | (out == 1) | (out == 0.5)).all())


def test_blur_is_torchvision_gaussian_blur_with_sigma_scaled_to_the_image_side():
    images = torch.rand(2, 1, 32, 32)
    sigma = SEVERITY_LEVELS["gaussian_blur"][3] * 32 / 64  # 2 px at 64 -> 1 px at 32
    expected = TF.gaussian_blur(images, kernel_size=[7, 7], sigma=[sigma, sigma])  # 2 * ceil(3) + 1
    torch.testing.assert_close(corrupt(images, "gaussian_blur", 4), expected)
    flat = torch.full((1, 32, 32), 0.3)
    torch.testing.assert_close(corrupt(flat, "gaussian_blur", 5), flat)  # blur keeps a flat image


@pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")
def test_jpeg_is_torchvision_jpeg_on_the_8_bit_image():
    images = torch.rand(2, 3, 24, 24)
    quality = SEVERITY_LEVELS["jpeg"][0]
    expected = TF.jpeg((images * 255).round().to(torch.uint8), quality=quality).float() / 255
    torch.testing.assert_close(corrupt(images, "jpeg", 1), expected)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"corruption": "fog", "severity": 1}, "corruption must be one of"),
        ({"corruption": "jpeg", "severity": 6}, r"severity must be an int in \[0, 5\] \(0: clean\), got 6"),
        ({"corruption": "jpeg", "severity": True}, "severity must be an int"),
    ],
)
def test_bad_arguments_name_the_value_and_the_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        corrupt(torch.rand(1, 8, 8), **kwargs)


def test_images_outside_the_unit_interval_or_integer_are_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt(torch.full((1, 8, 8), 2.0), "jpeg", 1)
    with pytest.raises(TypeError, match="floating-point"):
        corrupt(torch.zeros(1, 8, 8, dtype=torch.uint8), "jpeg", 1)


class _ListDataset(torch.utils.data.Dataset):
    classes = ("a", "b")

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], {"box": torch.tensor([0.1, 0.1, 0.5, 0.5]), "label": torch.tensor(i % 2), "index": i}

    def ground_truth(self, i):
        return {
            "boxes": torch.tensor([[0.1, 0.1, 0.5, 0.5]]),
            "labels": torch.tensor([i % 2]),
            "difficult": torch.tensor([False]),
        }


def test_corrupted_dataset_is_the_same_for_every_instance_and_image_specific():
    data = _ListDataset(torch.full((4, 1, 16, 16), 0.5))
    first, again = CorruptedDataset(data, "gaussian_noise", 2, seed=1), CorruptedDataset(data, "gaussian_noise", 2, 1)
    other_seed = CorruptedDataset(data, "gaussian_noise", 2, seed=2)
    assert len(first) == 4
    assert all(torch.equal(first[i][0], again[i][0]) for i in range(4))
    assert not torch.equal(first[0][0], other_seed[0][0])
    assert not torch.equal(first[0][0], first[1][0])  # same clean image, different noise per index
    assert first[3][1]["index"] == 3 and first.classes == ("a", "b")
    assert torch.equal(first.ground_truth(2)["labels"], torch.tensor([0]))


def test_corrupted_dataset_blur_matches_corrupting_each_image_alone():
    data = _ListDataset(torch.rand(5, 1, 16, 16))
    batched = CorruptedDataset(data, "gaussian_blur", 3, chunk_size=2)
    for i in range(5):
        torch.testing.assert_close(batched[i][0], corrupt(data[i][0], "gaussian_blur", 3))


def test_relative_drop_and_mrad_hand_worked():
    torch.testing.assert_close(relative_accuracy_drop(0.8, [0.6, 0.2]), torch.tensor([0.25, 0.75], dtype=torch.float64))
    # RADs: noise 0.1, 0.3; blur 0.0, -0.1 (blur helped) -> mean 0.075
    scores = {"noise": [0.45, 0.35], "blur": [0.5, 0.55]}
    assert mean_relative_accuracy_drop(0.5, scores) == pytest.approx(0.075)
    report = RobustnessReport("miou", 0.5, scores, (1, 2))
    assert report.mrad == pytest.approx(0.075)
    assert report.mean_corrupted == pytest.approx(0.4625)
    assert report.rad["noise"] == pytest.approx([0.1, 0.3])
    assert report.to_dict()["mrad"] == pytest.approx(0.075)


def test_mrad_needs_a_positive_clean_score_and_equal_severity_counts():
    with pytest.raises(ValueError, match="clean score must be a number > 0"):
        mean_relative_accuracy_drop(0.0, {"noise": [0.1]})
    with pytest.raises(ValueError, match="same non-zero number of severities"):
        mean_relative_accuracy_drop(0.5, {"noise": [0.1], "blur": [0.1, 0.2]})


def test_sweep_shows_every_model_the_same_corrupted_images():
    data = _ListDataset(torch.rand(6, 1, 16, 16))
    seen: dict[str, list[torch.Tensor]] = {"a": [], "b": []}

    def brightness(model, dataset, batch_size):  # a "metric" that records what each model saw
        images = torch.stack([dataset[i][0] for i in range(len(dataset))])
        seen[model.tag].append(images)
        return {"miou": float(images.mean())}

    models = {name: torch.nn.Identity() for name in seen}
    for name, model in models.items():
        model.tag = name
    reports = robustness_sweep(
        models, data, corruptions=("gaussian_noise", "jpeg"), severities=(1, 5), evaluate_fn=brightness
    )
    assert len(seen["a"]) == 1 + 2 * 2  # clean + 2 corruptions x 2 severities
    assert all(torch.equal(x, y) for x, y in zip(seen["a"], seen["b"]))
    assert reports["a"].clean == pytest.approx(float(data.images.mean()))
    assert list(reports["a"].scores) == ["gaussian_noise", "jpeg"] and len(reports["a"].scores["jpeg"]) == 2
    assert reports["a"].mrad == reports["b"].mrad
    with pytest.raises(ValueError, match="metric 'map50' is not in"):
        robustness_sweep(models, data, corruptions=("jpeg",), severities=(1,), metric="map50", evaluate_fn=brightness)


def test_sweep_on_generated_data_matches_evaluate_on_clean_images(synth_root, synth_config):
    from spikelib.data import VOCLocalization
    from spikelib.eval.evaluate import evaluate
    from spikelib.models.config import preset
    from spikelib.models.localizer import build_ann_twin

    test = VOCLocalization(
        synth_root, dataset=synth_config.name, image_set="test", policy="largest", image_size=32, cache=True
    )
    torch.manual_seed(0)
    model = build_ann_twin(preset("tiny", num_classes=len(test.classes)))
    reports = robustness_sweep({"ann": model}, test, corruptions=("gaussian_blur",), severities=(5,))
    assert reports["ann"].clean == pytest.approx(evaluate(model, test)["miou"])
    blurred = evaluate(model, CorruptedDataset(test, "gaussian_blur", 5))
    assert reports["ann"].scores["gaussian_blur"] == pytest.approx([blurred["miou"]])
    assert math.isfinite(reports["ann"].mrad)

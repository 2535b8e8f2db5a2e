"""VOCLocalization on the generated data, on real VOC files, and on broken trees."""

from __future__ import annotations

import urllib.error
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from spikelib.data.voc import VOC_CLASSES, VOCDataError, VOCLocalization


def _xml_objects(xml: Path) -> list[dict]:
    """Direct annotation/object children, read independently of the loader."""
    root = ET.parse(xml).getroot()
    size = [float(root.findtext(f"size/{k}")) for k in ("width", "height")]
    objects = []
    for obj in root.findall("object"):  # direct children only: <part> boxes are deeper
        box = [float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        objects.append(
            {
                "name": obj.findtext("name"),
                "difficult": obj.findtext("difficult") == "1",
                "box": [(box[0] - 1) / size[0], (box[1] - 1) / size[1], box[2] / size[0], box[3] / size[1]],
            }
        )
    return objects


def _split_ids(voc_dir: Path, split: str) -> list[str]:
    return (voc_dir / "ImageSets" / "Main" / f"{split}.txt").read_text().split()


def _edit_box(xml: Path, **coords: int) -> None:
    tree = ET.parse(xml)
    for key, value in coords.items():
        tree.getroot().find(f"object/bndbox/{key}").text = str(value)
    tree.write(xml)


# ---------------------------------------------------------------- generated data


def test_item_is_a_unit_range_image_and_a_collatable_target(synth_root, synth_config):
    ds = VOCLocalization(synth_root, dataset=synth_config.name, image_set="train", policy="largest")
    image, target = ds[0]
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32
    assert 0 <= image.min() < image.max() <= 1
    assert target["box"].dtype == torch.float32 and target["label"].dtype == torch.int64 and target["index"] == 0
    images, targets = next(iter(DataLoader(ds, batch_size=5)))
    assert images.shape == (5, 1, 64, 64) and targets["box"].shape == (5, 4) and targets["label"].shape == (5,)
    assert targets["index"].tolist() == [0, 1, 2, 3, 4]


def test_rgb_and_rectangular_image_size(synth_root, synth_config):
    ds = VOCLocalization(synth_root, dataset=synth_config.name, grayscale=False, image_size=(48, 80))
    assert ds[0][0].shape == (3, 48, 80)


def test_boxes_and_labels_follow_the_xml_with_one_based_inclusive_pixels(synth_root, synth_config):
    voc = synth_root / "VOCdevkit" / synth_config.name
    ds = VOCLocalization(synth_root, dataset=synth_config.name, image_set="val", policy="single")
    classes = (voc / "classes.txt").read_text().split()
    assert ds.classes == tuple(classes)
    for i, ann in enumerate(ds.annotations):
        (obj,) = [o for o in _xml_objects(voc / "Annotations" / f"{ann.image_id}.xml") if not o["difficult"]]
        _, target = ds[i]
        torch.testing.assert_close(target["box"], torch.tensor(obj["box"]))
        assert target["label"].item() == classes.index(obj["name"])


def test_whole_image_box_normalizes_to_unit_square(synth_copy, synth_config):
    voc = synth_copy / "VOCdevkit" / synth_config.name
    image_id = _split_ids(voc, "train")[0]
    (voc / "ImageSets/Main/train.txt").write_text(image_id + "\n")
    tree = ET.parse(voc / "Annotations" / f"{image_id}.xml")
    for obj in tree.getroot().findall("object")[1:]:
        tree.getroot().remove(obj)
    tree.write(voc / "Annotations" / f"{image_id}.xml")
    _edit_box(voc / "Annotations" / f"{image_id}.xml", xmin=1, ymin=1, xmax=128, ymax=128)
    ds = VOCLocalization(synth_copy, dataset=synth_config.name)
    assert ds[0][1]["box"].tolist() == [0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("policy", ["single", "largest"])
def test_policies_keep_the_images_an_independent_count_predicts(synth_root, synth_config, policy):
    voc = synth_root / "VOCdevkit" / synth_config.name
    ids = _split_ids(voc, "train")
    expected = {}
    for image_id in ids:
        easy = [o for o in _xml_objects(voc / "Annotations" / f"{image_id}.xml") if not o["difficult"]]
        if policy == "single" and len(easy) == 1 or policy == "largest" and easy:
            area = [(o["box"][2] - o["box"][0]) * (o["box"][3] - o["box"][1]) for o in easy]
            expected[image_id] = easy[area.index(max(area))]["box"]
    ds = VOCLocalization(synth_root, dataset=synth_config.name, policy=policy)
    assert [a.image_id for a in ds.annotations] == list(expected)
    assert ds.stats.listed == len(ids) and ds.stats.kept == len(expected) == len(ds)
    assert ds.stats.kept + sum(ds.stats.dropped.values()) == ds.stats.listed
    for i, image_id in enumerate(expected):
        torch.testing.assert_close(ds[i][1]["box"], torch.tensor(expected[image_id]))
    if policy == "single":  # the fixture has multi-object images (25 % of scenes)
        assert ds.stats.dropped["several non-difficult objects"] > 0


def test_ground_truth_lists_every_object_including_difficult_ones(synth_root, synth_config):
    voc = synth_root / "VOCdevkit" / synth_config.name
    ds = VOCLocalization(synth_root, dataset=synth_config.name, policy="largest")
    saw_difficult = False
    for i, ann in enumerate(ds.annotations):
        objects = _xml_objects(voc / "Annotations" / f"{ann.image_id}.xml")
        gt = ds.ground_truth(i)
        assert gt["image_id"] == ann.image_id and gt["boxes"].shape == (len(objects), 4)
        torch.testing.assert_close(gt["boxes"], torch.tensor([o["box"] for o in objects]))
        assert gt["difficult"].tolist() == [o["difficult"] for o in objects]
        assert gt["labels"].tolist() == [ds.classes.index(o["name"]) for o in objects]
        saw_difficult |= bool(gt["difficult"].any())
    assert saw_difficult


def test_classes_argument_sets_label_order_and_ignores_other_classes(synth_root, synth_config):
    ds = VOCLocalization(synth_root, dataset=synth_config.name, policy="largest", classes=("star", "ring"))
    assert ds.classes == ("star", "ring")
    assert all(
        {ds.classes[label] for label in ds.ground_truth(i)["labels"].tolist()} <= {"star", "ring"}
        for i in range(len(ds))
    )
    assert {ds[i][1]["label"].item() for i in range(len(ds))} == {0, 1}
    assert ds.stats.dropped["no non-difficult object"] > 0


def test_cache_gives_the_same_tensors_as_decoding_each_time(synth_root, synth_config):
    plain = VOCLocalization(synth_root, dataset=synth_config.name, image_set="test", policy="largest")
    cached = VOCLocalization(synth_root, dataset=synth_config.name, image_set="test", policy="largest", cache=True)
    for i in range(len(plain)):
        torch.testing.assert_close(cached[i][0], plain[i][0], rtol=0, atol=0)
        torch.testing.assert_close(cached[i][1]["box"], plain[i][1]["box"])


def test_flip_mirrors_image_and_box_together(synth_root, synth_config):
    kwargs = dict(root=synth_root, dataset=synth_config.name, policy="largest")
    plain = VOCLocalization(**kwargs)
    aug = VOCLocalization(**kwargs, augment=True, jitter=0.0, seed=1)
    flips = 0
    for i in range(20):
        (img, t), (img_a, t_a) = plain[i], aug[i]
        x0, y0, x1, y1 = t["box"].tolist()
        if torch.equal(img_a, img):
            torch.testing.assert_close(t_a["box"], t["box"])
        else:
            flips += 1
            torch.testing.assert_close(img_a, torch.flip(img, dims=[-1]), rtol=0, atol=0)
            torch.testing.assert_close(t_a["box"], torch.tensor([1 - x1, y0, 1 - x0, y1]))
    assert 3 <= flips <= 17


def test_augmentation_repeats_for_a_seed_and_epoch_and_keeps_boxes_valid(synth_root, synth_config):
    def draw(seed, epoch):
        ds = VOCLocalization(synth_root, dataset=synth_config.name, policy="largest", augment=True, seed=seed)
        ds.set_epoch(epoch)
        return [ds[i] for i in range(15)]

    first, again, next_epoch = draw(0, 0), draw(0, 0), draw(0, 1)
    for (img, t), (img2, t2) in zip(first, again):
        assert torch.equal(img, img2) and torch.equal(t["box"], t2["box"])
    assert any(not torch.equal(a[1]["box"], b[1]["box"]) for a, b in zip(first, next_epoch))
    boxes = torch.stack([t["box"] for _, t in first + next_epoch])
    assert (boxes >= 0).all() and (boxes <= 1).all() and (boxes[:, 2:] > boxes[:, :2]).all()


# ---------------------------------------------------------------- real VOC files


@pytest.mark.parametrize("year", ["2007", "2012"])
def test_real_voc_object_counts_exclude_parts_and_single_matches_an_independent_count(voc_sample, year):
    voc = voc_sample / "VOCdevkit" / f"VOC{year}"
    ids = _split_ids(voc, "trainval")
    counts = {i: _xml_objects(voc / "Annotations" / f"{i}.xml") for i in ids}
    largest = VOCLocalization(voc_sample, dataset=year, image_set="trainval", policy="largest")
    for k, ann in enumerate(largest.annotations):
        assert len(largest.ground_truth(k)["labels"]) == len(counts[ann.image_id])
    single = VOCLocalization(voc_sample, dataset=year, image_set="trainval", policy="single")
    expected = [i for i in ids if sum(not o["difficult"] for o in counts[i]) == 1]
    assert [a.image_id for a in single.annotations] == expected
    assert single.stats.listed == len(ids) and single.stats.kept == len(expected)
    for k, image_id in enumerate(expected):
        image, target = single[k]
        (obj,) = [o for o in counts[image_id] if not o["difficult"]]
        assert image.shape == (1, 64, 64) and VOC_CLASSES[target["label"]] == obj["name"]
        torch.testing.assert_close(target["box"], torch.tensor(obj["box"]))


def test_real_voc_person_with_parts_is_one_object(voc_sample):
    ds = VOCLocalization(voc_sample, dataset="2012", image_set="trainval", policy="largest")
    xml = voc_sample / "VOCdevkit/VOC2012/Annotations/2007_000027.xml"
    assert len(ET.parse(xml).getroot().findall(".//part")) > 0
    k = [a.image_id for a in ds.annotations].index("2007_000027")
    gt = ds.ground_truth(k)
    assert [VOC_CLASSES[i] for i in gt["labels"].tolist()] == ["person"]


def test_real_voc_action_annotation_with_float_coordinates_and_no_truncated_flag(voc_sample):
    ds = VOCLocalization(voc_sample, dataset="2012", image_set="trainval", policy="largest")
    k = [a.image_id for a in ds.annotations].index("2011_003353")
    _, target = ds[k]
    torch.testing.assert_close(target["box"], torch.tensor([129 / 375, 44.70000076293945 / 500, 1.0, 470 / 500]))
    assert ds.annotations[k].objects[0].truncated is False


# ---------------------------------------------------------------- bad input


def _first_id(root: Path, name: str) -> tuple[Path, str]:
    voc = root / "VOCdevkit" / name
    return voc, _split_ids(voc, "train")[0]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_undecodable_jpeg_raises_naming_the_file(synth_copy, synth_config, damage):
    voc, image_id = _first_id(synth_copy, synth_config.name)
    jpg = voc / "JPEGImages" / f"{image_id}.jpg"
    data = jpg.read_bytes()
    jpg.write_bytes(b"not a jpeg" * 50 if damage == "garbage" else data[: len(data) // 2])
    ds = VOCLocalization(synth_copy, dataset=synth_config.name, policy="largest")
    with pytest.raises(VOCDataError, match=f"{jpg}.*cannot decode"):
        ds[0]
    with pytest.warns(UserWarning, match="skipped 1 images that cannot be decoded"):
        cached = VOCLocalization(
            synth_copy, dataset=synth_config.name, policy="largest", cache=True, bad_samples="skip"
        )
    assert cached.stats.dropped == {"bad image": 1} and len(cached) == cached.stats.listed - 1


@pytest.mark.parametrize(
    "damage, message",
    [
        ("malformed", "malformed XML"),
        ("no_image", "does not exist"),
        ("no_xml", "does not exist"),
        ("zero_area", "zero or negative area"),
        ("far_outside", "outside the 128x128 image"),
        ("unknown_class", "class 'hexagon' is not one of"),
    ],
)
def test_bad_sample_raises_naming_the_file_or_is_skipped_with_a_warning(synth_copy, synth_config, damage, message):
    voc, image_id = _first_id(synth_copy, synth_config.name)
    xml, jpg = voc / "Annotations" / f"{image_id}.xml", voc / "JPEGImages" / f"{image_id}.jpg"
    if damage == "malformed":
        xml.write_text(xml.read_text()[:-30])
    elif damage == "no_image":
        jpg.unlink()
    elif damage == "no_xml":
        xml.unlink()
    elif damage == "zero_area":
        _edit_box(xml, xmin=50, xmax=49)
    elif damage == "far_outside":
        _edit_box(xml, xmin=10, xmax=140)
    else:
        tree = ET.parse(xml)
        tree.getroot().find("object/name").text = "hexagon"
        tree.write(xml)
    named = jpg if damage == "no_image" else xml
    with pytest.raises(VOCDataError, match=f"{named}.*{message}"):
        VOCLocalization(synth_copy, dataset=synth_config.name, policy="largest")
    with pytest.warns(UserWarning, match="skipped 1 bad samples"):
        ds = VOCLocalization(synth_copy, dataset=synth_config.name, policy="largest", bad_samples="skip")
    assert sum(ds.stats.dropped.values()) == 1 and image_id not in [a.image_id for a in ds.annotations]


def test_box_slightly_outside_the_image_is_clipped_with_a_warning(synth_copy, synth_config):
    voc, image_id = _first_id(synth_copy, synth_config.name)
    (voc / "ImageSets/Main/train.txt").write_text(image_id + "\n")
    tree = ET.parse(voc / "Annotations" / f"{image_id}.xml")
    for obj in tree.getroot().findall("object")[1:]:
        tree.getroot().remove(obj)
    tree.write(voc / "Annotations" / f"{image_id}.xml")
    _edit_box(voc / "Annotations" / f"{image_id}.xml", xmin=0, ymin=5, xmax=129, ymax=60)
    with pytest.warns(UserWarning, match="clipped 1 boxes"):
        ds = VOCLocalization(synth_copy, dataset=synth_config.name)
    torch.testing.assert_close(ds[0][1]["box"], torch.tensor([0.0, 4 / 128, 1.0, 60 / 128]))
    assert ds.stats.clipped_boxes == 1


def test_image_size_different_from_the_annotation_raises(synth_copy, synth_config):
    voc, image_id = _first_id(synth_copy, synth_config.name)
    tree = ET.parse(voc / "Annotations" / f"{image_id}.xml")
    tree.getroot().find("size/width").text = "256"
    tree.write(voc / "Annotations" / f"{image_id}.xml")
    ds = VOCLocalization(synth_copy, dataset=synth_config.name, policy="largest")
    with pytest.raises(VOCDataError, match="image is 128x128 but .* says 256x128"):
        ds[0]


def test_missing_split_file_names_the_path_and_the_splits_there(synth_root, synth_config):
    expected = synth_root / "VOCdevkit" / synth_config.name / "ImageSets" / "Main" / "minival.txt"
    with pytest.raises(FileNotFoundError, match=rf"{expected}.*'test', 'train', 'trainval', 'val'"):
        VOCLocalization(synth_root, dataset=synth_config.name, image_set="minival")


def test_split_empty_after_filtering_raises_with_the_counts(synth_copy, synth_config):
    voc = synth_copy / "VOCdevkit" / synth_config.name
    multi = [
        i
        for i in _split_ids(voc, "train")
        if sum(not o["difficult"] for o in _xml_objects(voc / "Annotations" / f"{i}.xml")) > 1
    ]
    (voc / "ImageSets/Main/train.txt").write_text("".join(f"{i}\n" for i in multi))
    with pytest.raises(ValueError, match=rf"empty after the 'single' policy: {len(multi)} listed, 0 kept"):
        VOCLocalization(synth_copy, dataset=synth_config.name, policy="single")


@pytest.mark.parametrize("where", ["devkit", "dataset_folder", "wrong_name"])
def test_wrong_root_says_which_path_was_expected(synth_root, synth_config, where):
    name = synth_config.name
    if where == "devkit":
        root, dataset, hint = synth_root / "VOCdevkit", name, "must be the folder that contains VOCdevkit"
    elif where == "dataset_folder":
        root, dataset, hint = synth_root / "VOCdevkit" / name, name, "must be the folder that contains VOCdevkit"
    else:
        root, dataset, hint = synth_root, "SHAPE", rf"holds \['{name}'\]"
    with pytest.raises(FileNotFoundError, match=rf"no VOC dataset folder at {root / 'VOCdevkit' / dataset}.*{hint}"):
        VOCLocalization(root, dataset=dataset)


def test_offline_download_raises_with_instructions(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.datasets.voc.download_and_extract_archive", offline)
    with pytest.raises(RuntimeError, match=rf"by hand.*{tmp_path / 'VOCdevkit' / 'VOC2012' / 'JPEGImages'}"):
        VOCLocalization(tmp_path, dataset="2012", download=True)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"policy": "biggest"}, "policy must be one of"),
        ({"image_size": 0}, "image_size must be"),
        ({"bad_samples": "ignore"}, "bad_samples must be"),
        ({"jitter": 0.7}, "jitter must be"),
    ],
)
def test_invalid_arguments_raise_naming_the_value(synth_root, synth_config, kwargs, message):
    with pytest.raises(ValueError, match=message):
        VOCLocalization(synth_root, dataset=synth_config.name, **kwargs)

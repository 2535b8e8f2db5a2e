"""Data throughput, measured in one run: generator images/s and loader images/s.

Run: ``.venv/bin/python benchmarks/bench_data.py [--images 600] [--image-size 64]``.
The generator writes a temporary dataset (128x128 JPEG + XML per image, default config);
the loader reads it back at the training size, decoding every image (no cache), then
from its in-memory cache (the cache's build time is reported too). Not a test.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from spikelib.data import SYNTH_NAME, SynthConfig, VOCLocalization, write_synthetic_voc


def _read_all(ds: VOCLocalization, epochs: int) -> float:
    """Images per second over ``epochs`` passes of ``ds[i]`` (single process)."""
    start = time.perf_counter()
    for _ in range(epochs):
        for i in range(len(ds)):
            ds[i]
    return epochs * len(ds) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600, help="training images to generate")
    parser.add_argument("--image-size", type=int, default=64, help="loader output size")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        cfg = SynthConfig(num_train=args.images, num_val=0, num_test=0)
        start = time.perf_counter()
        write_synthetic_voc(root, cfg, progress=False)
        gen = args.images / (time.perf_counter() - start)
        print(f"generator: {gen:7.0f} images/s  ({cfg.image_size}x{cfg.image_size} RGB JPEG + XML, one process)")
        common = dict(root=root, dataset=SYNTH_NAME, image_set="train", policy="largest", image_size=args.image_size)
        start = time.perf_counter()
        plain = VOCLocalization(**common)
        index_s = time.perf_counter() - start
        print(f"loader index (parse {args.images} XML): {index_s:.2f} s")
        no_cache = _read_all(plain, epochs=1)
        print(f"loader, decode+resize: {no_cache:7.0f} images/s")
        start = time.perf_counter()
        cached = VOCLocalization(**common, cache=True)
        build = time.perf_counter() - start
        with_cache = _read_all(cached, epochs=3)
        print(
            f"loader, cached:        {with_cache:7.0f} images/s  (cache built in {build:.2f} s; "
            f"{with_cache / no_cache:.1f}x decode+resize)"
        )
        aug = _read_all(VOCLocalization(**common, cache=True, augment=True), epochs=1)
        print(f"loader, cached+augment:{aug:7.0f} images/s")


if __name__ == "__main__":
    main()

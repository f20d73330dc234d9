"""Images/s of every corruption: native (CPU, and GPU where present) vs the imagecorruptions package,
and of the ImageNet-C-bar / CIFAR-10-C-bar corruptions vs their per-image NumPy version.

The package runs image by image on the CPU, in one process and in a pool of all cores; native
runs batched. Severity 3, 224-px real-looking images (smooth random fields), ratios measured in
the same run; prints a markdown table.

C-bar: the per-image NumPy version of the published definitions (tests/cbar_reference.py) draws
and renders one image at a time in one process; native draws per-image streams and renders the
batch, on one thread and on all of torch's; both produce the 8-bit image the generators store
(the JPEG storage step of ImageNet-C-bar, the same libjpeg on both sides, is left out of the CPU
ratio). Each protocol at its generator's size (224 / 32 px); runs alternate and the medians are
compared. On a GPU: corrupt() with the storage step, both protocols at 224 px.

    python benchmarks/corruptions.py                       # all 19, batch 64, then C-bar
    python benchmarks/corruptions.py --corruptions common --batch 256 --reference-images 32
    python benchmarks/corruptions.py --sets c-bar          # C-bar only
    python benchmarks/corruptions.py --sets storage        # the JPEG q85 storage step alone

The storage step alone: images/s of the batched integer JPEG round trip (what CUDA runs) on each
device, and of libjpeg itself on the CPU's codec threads (what the CPU runs), at 224 px.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the per-image NumPy version of C-bar
from timing import default_devices, median_seconds  # noqa: E402

from robustbench_gcp.corruptions import C_BAR_PROTOCOLS, corrupt, corrupt_to_uint8, names  # noqa: E402
from robustbench_gcp.corruptions.params import PARAMETERS  # noqa: E402
from robustbench_gcp.rng import image_streams  # noqa: E402

C_BAR_SIZE = {"imagenet-c-bar": 224, "cifar10-c-bar": 32}


def sample_images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random colour fields: cheap stand-ins with photo-like spectra, no data needed."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, size // 16, size // 16, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return (images + 0.05 * torch.randn(images.shape, generator=generator)).clamp(0, 1)


def _reference_one(args) -> None:
    import imagecorruptions

    array, name, severity = args
    imagecorruptions.corrupt(array, severity=severity, corruption_name=name)


def reference_rate(images: torch.Tensor, name: str, severity: int, pool) -> tuple[float, float]:
    """Images/s of the package on one core, and across the pool."""
    arrays = list((images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    jobs = [(a, name, severity) for a in arrays]
    _reference_one(jobs[0])  # warm-up (numba compiles glass blur)
    start = time.perf_counter()
    for job in jobs:
        _reference_one(job)
    single = len(jobs) / (time.perf_counter() - start)
    pool.map(_reference_one, jobs[: pool._processes])  # warm every worker
    start = time.perf_counter()
    pool.map(_reference_one, jobs * 2, chunksize=1)
    pooled = 2 * len(jobs) / (time.perf_counter() - start)
    return single, pooled


def native_rate(images: torch.Tensor, name: str, severity: int, device: torch.device, protocol: str) -> float:
    batch = images.to(device)
    streams = image_streams(0, range(len(batch)), name, severity, device)  # per-image streams, as evaluations draw

    def run() -> None:
        corrupt(batch, name, severity, protocol=protocol, generator=streams, check_input=False)

    return len(batch) / median_seconds(run, device, repeats=3, warmup=1)


def _numpy_seconds(arrays: list, name: str, value: float) -> float:
    """Seconds per image of the per-image NumPy version: its own draws, then its rendering."""
    import cbar_reference

    start = time.perf_counter()
    for i, array in enumerate(arrays):
        cbar_reference.apply(name, array, value, cbar_reference.sample(name, np.random.RandomState(i),
                                                                       array.shape[0], value))
    return (time.perf_counter() - start) / len(arrays)


def _native_seconds(images: torch.Tensor, name: str, severity: int, protocol: str, threads: int) -> float:
    """Seconds per image of native generation on the CPU with ``threads`` threads (one call)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        streams = image_streams(0, range(len(images)), name, severity)
        start = time.perf_counter()
        corrupt_to_uint8(images, name, severity, protocol=protocol, generator=streams, check_input=False)
        return (time.perf_counter() - start) / len(images)
    finally:
        torch.set_num_threads(previous)


def c_bar_cpu_rates(protocol: str, severity: int, batch: int, numpy_images: int, repeats: int) -> list[tuple]:
    """Per corruption: images/s of the NumPy version, native on 1 thread and on all threads."""
    size = C_BAR_SIZE[protocol]
    images = (sample_images(batch, size, seed=2) * 255).round() / 255
    arrays = list((images[:numpy_images] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    threads = torch.get_num_threads()
    rows = []
    for name in names(protocol):
        value = PARAMETERS[protocol][name][severity - 1]
        _native_seconds(images[:2], name, severity, protocol, threads)  # warm-up (cached operators)
        _numpy_seconds(arrays[:1], name, value)
        times = {"numpy": [], "one": [], "all": []}
        for _ in range(repeats):  # alternating, so a busy moment of the machine hits all three alike
            times["numpy"].append(_numpy_seconds(arrays, name, value))
            times["one"].append(_native_seconds(images, name, severity, protocol, 1))
            times["all"].append(_native_seconds(images, name, severity, protocol, threads))
        rows.append((name, *(1 / np.median(times[k]) for k in ("numpy", "one", "all"))))
    return rows


def c_bar_gpu_rate(protocol: str, name: str, severity: int, batch: int, size: int) -> float:
    """Images/s of corrupt() (with the storage step) on the GPU, per-image streams."""
    device = torch.device("cuda")
    images = sample_images(batch, size, seed=3).to(device)
    streams = image_streams(0, range(batch), name, severity, device)

    def run() -> None:
        corrupt(images, name, severity, protocol=protocol, generator=streams, check_input=False)

    return batch / median_seconds(run, device, repeats=3, warmup=1)


def run_storage(args: argparse.Namespace) -> None:
    from robustbench_gcp.corruptions.jpeg import jpeg_round_trip_exact
    from robustbench_gcp.corruptions.ops import jpeg_round_trip

    print(f"\nJPEG q85 storage step, 224 px, torch threads {torch.get_num_threads()}\n")
    print("| device | batch | batched integer pipeline | libjpeg (codec threads) |\n|---|---|---|---|")
    for device in default_devices():
        batch = args.gpu_batch if device.type == "cuda" else args.batch or 64
        images = (sample_images(batch, 224, seed=4) * 255).round().to(torch.uint8).to(device)
        exact = batch / median_seconds(partial(jpeg_round_trip_exact, images, 85), device, repeats=3, warmup=1)
        libjpeg = "n/a"
        if device.type == "cpu":
            floats = images.float() / 255
            libjpeg = f"{batch / median_seconds(partial(jpeg_round_trip, floats, 85), device, repeats=3, warmup=1):.0f}"
        print(f"| {device.type} | {batch} | {exact:.0f} | {libjpeg} |", flush=True)


def run_c_bar(args: argparse.Namespace) -> None:
    gpu = torch.cuda.is_available()
    print(f"\ntorch {torch.__version__}, {os.cpu_count()} CPU cores"
          f"{', ' + torch.cuda.get_device_name() if gpu else ''}")
    print(f"C-bar, severity {args.severity}, torch threads {torch.get_num_threads()}: native (per-image streams) vs "
          "the per-image NumPy version, 8-bit output, medians of alternating runs\n")
    header = "| protocol | corruption | NumPy, 1 process | native, 1 thread | × | native, all threads | × |"
    header += f" GPU, {args.gpu_size} px, with storage |" if gpu else ""
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for protocol in C_BAR_PROTOCOLS:
        size = C_BAR_SIZE[protocol]
        batch = args.c_bar_batch or (32 if size == 224 else 256)
        numpy_images = args.c_bar_numpy_images or (8 if size == 224 else 64)
        gpu_rates, ratios = [], []
        for name, numpy_rate, one, every in c_bar_cpu_rates(protocol, args.severity, batch, numpy_images,
                                                              args.repeats):
            ratios.append(every / numpy_rate)
            row = (f"| {protocol} | {name} | {numpy_rate:.0f} | {one:.0f} | {one / numpy_rate:.1f} | {every:.0f} | "
                   f"{every / numpy_rate:.1f} |")
            if gpu:
                rate = c_bar_gpu_rate(protocol, name, args.severity, args.gpu_batch, args.gpu_size)
                gpu_rates.append(rate)
                row += f" {rate:.0f} |"
            print(row, flush=True)
        line = f"\n{protocol}: native on all threads ≥ {min(ratios):.1f}× the NumPy version (geometric mean " \
               f"{np.exp(np.mean(np.log(ratios))):.1f}×)"
        if gpu_rates:
            line += f"; GPU at {args.gpu_size} px: mean {np.mean(gpu_rates):.0f} img/s, min {min(gpu_rates):.0f} img/s"
        print(line + "\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="storage,imagenet-c,c-bar",
                        help="any of storage (the JPEG step alone), imagenet-c (vs the package), c-bar")
    parser.add_argument("--c-bar-batch", type=int, help="C-bar native CPU batch (default 32 at 224 px, 256 at 32)")
    parser.add_argument("--c-bar-numpy-images", type=int,
                        help="images of the C-bar NumPy version per run (default 8 at 224 px, 64 at 32)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating C-bar runs whose medians are compared")
    parser.add_argument("--gpu-size", type=int, default=224, help="image side of the C-bar GPU timing")
    parser.add_argument("--corruptions", default="all")
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="native batch size on the CPU (0: skip the CPU)")
    parser.add_argument("--gpu-batch", type=int, default=256)
    parser.add_argument("--reference-images", type=int, default=16, help="0: skip the package (GPU rates only)")
    parser.add_argument("--protocol", default="imagecorruptions", help="native protocol to time")
    args = parser.parse_args()
    sets = args.sets.split(",")
    if "storage" in sets:
        run_storage(args)
    if "imagenet-c" in sets:
        run_imagenet_c(args)
    if "c-bar" in sets:
        run_c_bar(args)


def run_imagenet_c(args: argparse.Namespace) -> None:
    chosen = names(args.corruptions) if args.corruptions in ("all", "common", "extra") else args.corruptions.split(",")
    devices = default_devices()
    cpu_images = sample_images(max(args.batch, args.reference_images), 224)
    gpu_images = sample_images(args.gpu_batch, 224, seed=1)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, threads {torch.get_num_threads()}; "
          f"{', '.join(torch.cuda.get_device_name(d) if d.type == 'cuda' else 'cpu' for d in devices)}")
    print(f"severity {args.severity}, 224 px, native protocol {args.protocol}\n")
    gpu = any(d.type == "cuda" for d in devices)
    header = "| corruption | package 1 process | package pool | native CPU | CPU × 1 core |"
    header += " native GPU | GPU × pool |" if gpu else ""
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    gpu_rates = []
    with multiprocessing.get_context("spawn").Pool(os.cpu_count()) as pool:
        for name in chosen:
            single, pooled = (reference_rate(cpu_images[: args.reference_images], name, args.severity, pool)
                              if args.reference_images else (float("nan"), float("nan")))
            cpu = native_rate(cpu_images[: args.batch], name, args.severity, torch.device("cpu"), args.protocol) \
                if args.batch else float("nan")
            row = f"| {name} | {single:.0f} | {pooled:.0f} | {cpu:.0f} | {cpu / single:.1f} |"
            if gpu:
                rate = native_rate(gpu_images, name, args.severity, torch.device("cuda"), args.protocol)
                gpu_rates.append((name, rate))
                row += f" {rate:.0f} | {rate / pooled:.0f} |"
            print(row, flush=True)
    benchmark = [r for n, r in gpu_rates if n in names("common")]
    if benchmark:
        print(f"\nGPU, 15 benchmark corruptions: mean {np.mean(benchmark):.0f} img/s, min {min(benchmark):.0f} img/s")


if __name__ == "__main__":
    main()

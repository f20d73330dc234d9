"""Images/s of every corruption: native (CPU, and GPU where present) vs the imagecorruptions package.

The package runs image by image on the CPU, in one process and in a pool of all cores; native
runs batched. Severity 3, 224-px real-looking images (smooth random fields), ratios measured in
the same run; prints a markdown table.

    python benchmarks/corruptions.py                       # all 19, batch 64
    python benchmarks/corruptions.py --corruptions common --batch 256 --reference-images 32
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import default_devices, median_seconds  # noqa: E402

from robustbench_gcp.corruptions import corrupt, names  # noqa: E402
from robustbench_gcp.rng import image_streams  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corruptions", default="all")
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="native batch size on the CPU (0: skip the CPU)")
    parser.add_argument("--gpu-batch", type=int, default=256)
    parser.add_argument("--reference-images", type=int, default=16, help="0: skip the package (GPU rates only)")
    parser.add_argument("--protocol", default="imagecorruptions", help="native protocol to time")
    args = parser.parse_args()
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

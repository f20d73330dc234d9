"""End-to-end images/s of eval-corruption against the bare model, in one run on one device.

Reports: the bare model (forward only, inputs already on the device); decode, transfer and
corruption rates on their own; eval-corruption on the fly (decode once per chunk, corrupt on the
device) and on released-style JPEG files (device decode and PIL); the share of time of each stage
in an on-the-fly run; and the time a full ImageNet-C pass (50,000 images × (15 × 5 + clean))
would take at the measured end-to-end rates.

    python benchmarks/eval_corruption.py                 # CPU: CIFAR ResNet-20 GCP at 32 px; GPU: ResNet-50 GCP at 224
    python benchmarks/eval_corruption.py --model resnet50_gcp --size 224 --images 2048 --batch 256 --compile
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torchvision.io import encode_jpeg, write_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corruptions import sample_images  # noqa: E402
from timing import median_seconds, synchronize  # noqa: E402

from robustbench_gcp.corruptions import corrupt, names  # noqa: E402
from robustbench_gcp.corruptions.ops import quiet_torchvision_codecs  # noqa: E402
from robustbench_gcp.data.batches import DeviceDecoding, ImageBatches  # noqa: E402
from robustbench_gcp.data.folders import eval_geometry  # noqa: E402
from robustbench_gcp.data.sources import ImageFiles, folder_samples  # noqa: E402
from robustbench_gcp.devices import as_model_input, prepare  # noqa: E402
from robustbench_gcp.distributed import DistContext  # noqa: E402
from robustbench_gcp.evaluate.common import load_eval_model  # noqa: E402
from robustbench_gcp.evaluate.corruption import CorruptionEvalConfig, evaluate_corruptions  # noqa: E402
from robustbench_gcp.export import ExportConfig, export_corrupted_folder  # noqa: E402
from robustbench_gcp.rng import image_streams  # noqa: E402

CLASSES = 10
FULL_IMAGES, FULL_CELLS = 50_000, 15 * 5 + 1


def write_folder(root: Path, count: int, size: int) -> None:
    """``count`` JPEG images (q90, 1.15× the input size, as val photos are larger than the crop)."""
    side = round(size * 256 / 224) if size >= 64 else size
    images = (sample_images(count, side) * 255).round().to(torch.uint8)
    with quiet_torchvision_codecs():
        for i, image in enumerate(images):
            folder = root / f"class{i % CLASSES:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            write_file(str(folder / f"{i:06d}.JPEG"), encode_jpeg(image, quality=90))


def bare_model_rate(args, device: torch.device) -> float:
    model = prepare(load_eval_model(args.model, CLASSES, None, 0), device)
    model = torch.compile(model) if args.compile else model
    batch = as_model_input(torch.rand(args.batch, 3, args.size, args.size, device=device))

    @torch.inference_mode()
    def forward() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            model(batch)

    return args.batch / median_seconds(forward, device, repeats=5, warmup=3)


def decode_rate(args, root: Path, device: torch.device, decode: str) -> tuple[float, torch.Tensor]:
    """Images/s of reading and decoding the clean folder onto the device; the decoded chunk."""
    samples, _ = folder_samples(root, None)
    geometry = eval_geometry(args.size)
    dataset = ImageFiles(samples, geometry.pil_transform(), args.size)
    decoding = DeviceDecoding(geometry, args.size) if decode == "device" else None

    def load() -> torch.Tensor:
        batches = ImageBatches(dataset, range(len(samples)), args.batch, args.workers, DistContext(device=device),
                               False, decoding)
        return batches.gather()[0]

    load()  # warm-up: worker start, codec initialisation
    synchronize(device)
    start = time.perf_counter()
    chunk = load()
    synchronize(device)
    return len(samples) / (time.perf_counter() - start), chunk


def transfer_rate(chunk: torch.Tensor, device: torch.device) -> float:
    """Images/s of copying pinned uint8 batches to the device (what the PIL path moves)."""
    if device.type != "cuda":
        return float("inf")
    host = chunk.cpu().pin_memory()
    return len(host) / median_seconds(lambda: host.to(device, non_blocking=True), device, repeats=3, warmup=1)


def corruption_rate(args, chunk: torch.Tensor, corruptions: list[str], device: torch.device) -> float:
    """Images/s of the corruptions alone (severity 3, batches of the chunk on the device)."""
    batch = chunk[: args.batch].to(device).float().div_(255)
    streams = image_streams(0, range(len(batch)), "bench", 3, device)
    seconds = 0.0
    for name in corruptions:
        seconds += median_seconds(lambda n=name: corrupt(batch, n, 3, protocol=args.protocol, generator=streams,
                                                         check_input=False), device, repeats=2, warmup=1)
    return len(batch) * len(corruptions) / seconds


def eval_rate(args, data: Path, source: str, db: Path, corruptions: list[str], clean: Path | None,
              decode: str) -> float:
    config = CorruptionEvalConfig(
        model=args.model, num_classes=CLASSES, data=data, source=source, protocol=args.protocol,
        corruptions=corruptions, severities=[3], batch_size=args.batch, workers=args.workers, device=args.device,
        db=db, clean_data=clean, decode=decode, compile=args.compile,
    )
    start = time.perf_counter()
    summary = evaluate_corruptions(config, progress=False)
    seconds = time.perf_counter() - start
    return summary["n"] * (len(corruptions) + 1) / seconds


def main() -> None:
    warnings.filterwarnings("ignore", message="no --checkpoint")  # speed does not depend on the weights
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50_gcp" if cuda else "cifar_resnet20_gcp")
    parser.add_argument("--size", type=int, default=224 if cuda else 32)
    parser.add_argument("--images", type=int, default=2048 if cuda else 500)
    parser.add_argument("--batch", type=int, default=256 if cuda else 100)
    parser.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1) if cuda else 2)
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--corruptions", default="common")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (bare and end to end)")
    args = parser.parse_args()
    args.protocol = "cifar10-c" if args.size < 64 else "imagenet-c"
    corruptions = names(args.corruptions) if args.corruptions in ("common", "all") else args.corruptions.split(",")
    device = torch.device(args.device)
    decoders = ("device", "pil")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_folder(root / "clean", args.images, args.size)
        export_corrupted_folder(ExportConfig(data=root / "clean", out=root / "released", protocol=args.protocol,
                                             corruptions=corruptions, severities=[3], device=args.device,
                                             batch_size=args.batch, size=args.size, workers=args.workers),
                                progress=False)
        bare = bare_model_rate(args, device)
        decode = {d: decode_rate(args, root / "clean", device, d) for d in decoders}
        chunk = decode["device"][1]
        transfer = transfer_rate(chunk, device)
        corrupting = corruption_rate(args, chunk, corruptions, device)
        generated = eval_rate(args, root / "clean", "generated", root / "a.sqlite", corruptions, None, "pil")
        released = {d: eval_rate(args, root / "released", "imagenet-c", root / f"b-{d}.sqlite", corruptions,
                                 root / "clean", d) for d in decoders}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"{args.model}{' (compiled)' if args.compile else ''}, {args.size} px, batch {args.batch}, "
          f"{args.workers} workers, {name}, {len(corruptions)} corruptions at severity 3 + clean, "
          f"{args.images} images each, protocol {args.protocol}\n")
    print("| what | images/s | × bare model |")
    print("|---|---|---|")
    rows = [("bare model", bare), ("decode + resize, device", decode["device"][0]),
            ("decode + resize, PIL workers", decode["pil"][0]), ("host → device copy (uint8)", transfer),
            ("corruptions alone (mean over the chosen)", corrupting),
            ("eval-corruption on the fly (chunked, PIL decode once per chunk)", generated),
            ("eval-corruption, released files, device decode", released["device"]),
            ("eval-corruption, released files, PIL decode", released["pil"])]
    for label, rate in rows:
        if rate != float("inf"):  # the CPU has no copy to time
            print(f"| {label} | {rate:.0f} | {rate / bare:.2f} |")
    cells = len(corruptions) + 1
    per_image = {"decode (once per chunk)": 1 / decode["pil"][0] / cells,
                 "transfer": (1 / transfer / cells) if transfer != float("inf") else 0.0,
                 "corruption": (cells - 1) / cells / corrupting, "model": 1 / bare}
    total = sum(per_image.values())
    print("\nshare of an on-the-fly run's time by stage (from the rates above): "
          + ", ".join(f"{stage} {100 * t / total:.0f} %" for stage, t in per_image.items())
          + f"; the end-to-end time per image is {1 / generated / total:.2f}× the stages' sum (below 1: they overlap)")
    print(f"full ImageNet-C ({FULL_IMAGES:,} images × {FULL_CELLS} cells) at these rates: on the fly "
          f"{FULL_IMAGES * FULL_CELLS / generated / 60:.1f} min; released files "
          f"{FULL_IMAGES * (FULL_CELLS - 1) / released['device'] / 60:.1f} min (device decode), "
          f"{FULL_IMAGES * (FULL_CELLS - 1) / released['pil'] / 60:.1f} min (PIL)")


if __name__ == "__main__":
    main()

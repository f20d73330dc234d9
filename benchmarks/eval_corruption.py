"""End-to-end images/s of eval-corruption against the bare model, in one run.

Three numbers on the same device and batch size: the bare model (forward only, images already
on the device), eval-corruption with generated corruptions (decode → corrupt on the device →
model → counts), and eval-corruption on released-style JPEG files made by `gcp-robust corrupt`.

    python benchmarks/eval_corruption.py                                  # CPU: CIFAR ResNet-20 GCP, 32 px
    python benchmarks/eval_corruption.py --model resnet50_gcp --size 224 --images 2048 --batch 256 \\
        --workers 12 --device cuda                                         # GPU
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torchvision.io import encode_jpeg, write_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corruptions import sample_images  # noqa: E402
from timing import median_seconds  # noqa: E402

from robustbench_gcp.corruptions import names  # noqa: E402
from robustbench_gcp.devices import as_model_input, prepare  # noqa: E402
from robustbench_gcp.evaluate.common import load_eval_model  # noqa: E402
from robustbench_gcp.evaluate.corruption import CorruptionEvalConfig, evaluate_corruptions  # noqa: E402
from robustbench_gcp.export import ExportConfig, export_corrupted_folder  # noqa: E402

CLASSES = 10


def write_folder(root: Path, count: int, size: int) -> None:
    """``count`` JPEG images in CLASSES class folders (a stand-in ImageFolder)."""
    images = (sample_images(count, size) * 255).round().to(torch.uint8)
    for i, image in enumerate(images):
        folder = root / f"class{i % CLASSES:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        write_file(str(folder / f"{i:06d}.JPEG"), encode_jpeg(image, quality=90))


def bare_model_rate(args, device: torch.device) -> float:
    model = prepare(load_eval_model(args.model, CLASSES, None, 0), device)
    batch = as_model_input(torch.rand(args.batch, 3, args.size, args.size, device=device))

    @torch.inference_mode()
    def forward() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            model(batch)

    return args.batch / median_seconds(forward, device, repeats=5, warmup=2)


def eval_rate(args, data: Path, source: str, db: Path, corruptions: list[str], clean: Path | None) -> float:
    config = CorruptionEvalConfig(
        model=args.model, num_classes=CLASSES, data=data, source=source, protocol=args.protocol,
        corruptions=corruptions, severities=[3], batch_size=args.batch, workers=args.workers, device=args.device,
        db=db, clean_data=clean,
    )
    start = time.perf_counter()
    summary = evaluate_corruptions(config, progress=False)
    seconds = time.perf_counter() - start
    cells = len(corruptions) + 1
    return summary["n"] * cells / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cifar_resnet20_gcp")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--corruptions", default="common")
    args = parser.parse_args()
    args.protocol = "cifar10-c" if args.size < 64 else "imagenet-c"
    corruptions = names(args.corruptions) if args.corruptions in ("common", "all") else args.corruptions.split(",")
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_folder(root / "clean", args.images, args.size)
        export_corrupted_folder(ExportConfig(data=root / "clean", out=root / "released", protocol=args.protocol,
                                             corruptions=corruptions, severities=[3], device=args.device,
                                             batch_size=args.batch, size=args.size), progress=False)
        bare = bare_model_rate(args, device)
        generated = eval_rate(args, root / "clean", "generated", root / "a.sqlite", corruptions, None)
        released = eval_rate(args, root / "released", "imagenet-c", root / "b.sqlite", corruptions, root / "clean")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.model}, {args.size} px, batch {args.batch}, {args.workers} workers, {name}, "
          f"{len(corruptions)} corruptions at severity 3 + clean, {args.images} images each\n")
    print("| mode | images/s | × bare model |")
    print("|---|---|---|")
    for label, rate in (("bare model", bare), ("eval-corruption, generated", generated),
                        ("eval-corruption, released files", released)):
        print(f"| {label} | {rate:.0f} | {rate / bare:.2f} |")


if __name__ == "__main__":
    main()

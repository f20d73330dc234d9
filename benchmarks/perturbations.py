"""Frames/s of perturbation-sequence generation, batched on the device, against the original
generator's per-image loop on one CPU core; and the end-to-end ``eval-perturbation`` frames/s of
a model against the bare model's own frames/s. Ratios are measured in the same run; prints
markdown tables.

The per-image loop is the generator's, step for step, with the libraries it called (PIL affine
through torchvision, OpenCV, scikit-image, NumPy); motion blur and snow need ImageMagick (Wand)
and spatter the generator's whole OpenCV pipeline, so those three have no per-image column.

    python benchmarks/perturbations.py                         # default size for the device
    python benchmarks/perturbations.py --images 64 --videos 256 --model resnet50
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corruptions import sample_images  # noqa: E402
from timing import default_devices, median_seconds, synchronize  # noqa: E402

from robustbench_gcp.devices import prepare  # noqa: E402
from robustbench_gcp.evaluate.perturbation import PerturbationEvalConfig, evaluate_perturbations  # noqa: E402
from robustbench_gcp.models import create_model  # noqa: E402
from robustbench_gcp.perturbations import names, perturb_to_uint8, sequence_length, sequence_streams, spec  # noqa: E402


def original_frames(image: np.ndarray, name: str) -> list[np.ndarray]:
    """The ImageNet-P generator's frames of one 256-px-resized image (H, W, 3) uint8, its way."""
    import cv2
    import skimage.color
    import skimage.filters
    import torchvision.transforms.functional as F
    from PIL import Image
    from torchvision.transforms import InterpolationMode

    pil = Image.fromarray(image)
    crop = np.array(F.center_crop(pil, [224, 224]))
    x = crop / 255.0
    bilinear = InterpolationMode.BILINEAR

    def affine(i, **kwargs):
        return np.array(F.center_crop(F.affine(pil, **{"angle": 0, "translate": (0, 0), "scale": 1.0,
                                                       "shear": 0, **kwargs}), [224, 224]))

    frames = {
        "gaussian_noise": lambda: [crop] + [np.uint8(255 * np.clip(x + np.random.normal(size=x.shape, scale=0.03),
                                                                   0, 1)) for _ in range(30)],
        "shot_noise": lambda: [crop] + [np.uint8(255 * np.clip(np.random.poisson(x * 300) / 300, 0, 1))
                                        for _ in range(30)],
        "speckle_noise": lambda: [crop] + [np.uint8(255 * np.clip(x + x * np.random.normal(size=x.shape, scale=0.05),
                                                                  0, 1)) for _ in range(30)],
        "brightness": lambda: [_brightness(x, (i - 15) * 0.02, skimage.color) for i in range(31)],
        "translate": lambda: [affine(i, translate=(i - 20, 0)) for i in range(41)],
        "rotate": lambda: [affine(i, angle=i - 15, interpolation=bilinear) for i in range(31)],
        "scale": lambda: [affine(i, scale=(i * 2.5 + 40) / 100, interpolation=bilinear) for i in range(31)],
        "shear": lambda: [affine(i, shear=i - 15, interpolation=bilinear) for i in range(31)],
        "zoom_blur": lambda: _zoom_blur(crop, affine),
        "tilt": lambda: [np.array(F.center_crop(Image.fromarray(cv2.warpPerspective(image, _tilt(i - 15, image), (
            image.shape[1], image.shape[0]))), [224, 224])) for i in range(31)],
        "gaussian_blur": lambda: [np.uint8(255 * skimage.filters.gaussian(x, sigma=0.25 + 0.035 * i, channel_axis=-1,
                                                                          truncate=6.0)) for i in range(31)],
    }
    return frames[name]()


def _brightness(x: np.ndarray, shift: float, color) -> np.ndarray:
    hsv = color.rgb2hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + shift, 0, 1)
    return np.uint8(255 * color.hsv2rgb(hsv))


def _zoom_blur(crop: np.ndarray, affine) -> list[np.ndarray]:
    from torchvision.transforms import InterpolationMode

    total, frames = crop / 255.0, [crop]
    for i in range(1, 31):
        total = total + affine(i, scale=1 + 0.004 * i, interpolation=InterpolationMode.BILINEAR) / 255.0
        frames.append(np.uint8(255 * total / (i + 1)))
    return frames


def _tilt(degrees: float, image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    t, f = np.radians(degrees), np.hypot(w, h)
    p1 = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]])
    rx = np.array([[1, 0, 0, 0], [0, np.cos(t), -np.sin(t), 0], [0, np.sin(t), np.cos(t), 0], [0, 0, 0, 1]])
    ry = np.array([[np.cos(t), 0, -np.sin(t), 0], [0, 1, 0, 0], [np.sin(t), 0, np.cos(t), 0], [0, 0, 0, 1]])
    move = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]])
    p2 = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]])
    return p2 @ move @ rx @ ry @ p1


def generation_table(images: torch.Tensor, reference_images: int, devices: list[torch.device]) -> str:
    """Frames/s per perturbation: the per-image loop on one core, and batched on each device."""
    import cv2

    canvas = torch.nn.functional.interpolate(images, size=spec("imagenet-p").canvas, mode="bilinear")
    originals = (torch.nn.functional.interpolate(images, size=256, mode="bilinear") * 255).round().byte()
    originals = originals.permute(0, 2, 3, 1).numpy()
    rows = ["| perturbation | per image, 1 core (frames/s) | " + " | ".join(f"batched {d} (frames/s) | ratio"
                                                                         for d in devices) + " |",
            "|---|---|" + "---|---|" * len(devices)]
    for name in names("all"):
        frames = sequence_length(name, "imagenet-p")
        single = None
        try:
            original_frames(originals[0], name)
        except KeyError:
            pass
        else:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            cv2.setNumThreads(1)
            start = time.perf_counter()
            for image in originals[:reference_images]:
                original_frames(image, name)
            single = reference_images * frames / (time.perf_counter() - start)
            torch.set_num_threads(threads)
        cells = [f"{single:.0f}" if single else "—"]
        for device in devices:
            batch = canvas.to(device)
            streams = sequence_streams(0, torch.arange(len(batch)), name, 1, device)
            seconds = median_seconds(lambda b=batch, s=streams, n=name: perturb_to_uint8(
                b, n, protocol="imagenet-p", generator=s), device, repeats=3, warmup=1)
            rate = len(batch) * frames / seconds
            cells += [f"{rate:.0f}", f"{rate / single:.1f}×" if single else "—"]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def evaluation_table(model_name: str, videos: int, perturbations: list[str], device: torch.device,
                     batch_size: int) -> str:
    """End-to-end eval-perturbation frames/s (decode, generate, classify, count, store) against
    the bare model's frames/s on the same device and batch size."""
    from PIL import Image

    model = prepare(create_model(model_name).eval(), device)
    frames = torch.rand(batch_size, 3, 224, 224, device=device)
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        bare = batch_size / median_seconds(lambda: model(frames), device, repeats=3, warmup=1)
    with tempfile.TemporaryDirectory() as folder:
        photos = sample_images(videos, 320)
        for index, image in enumerate((photos * 255).round().byte().permute(0, 2, 3, 1).numpy()):
            (Path(folder) / "data" / f"class{index % 2}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(Path(folder) / "data" / f"class{index % 2}" / f"{index}.png")
        config = PerturbationEvalConfig(model=model_name, data=Path(folder) / "data", perturbations=perturbations,
                                        difficulties=(1,), batch_size=batch_size, workers=2, device=str(device),
                                        db=Path(folder) / "r.sqlite")
        synchronize(device)
        start = time.perf_counter()
        evaluate_perturbations(config, progress=False)
        synchronize(device)
        seconds = time.perf_counter() - start
    total = videos * sum(sequence_length(name, "imagenet-p") for name in perturbations)
    end_to_end = total / seconds
    return (f"| {model_name} on {device} | bare model {bare:.0f} frames/s | eval-perturbation {end_to_end:.0f} "
            f"frames/s ({videos} videos × {len(perturbations)} perturbations, incl. model load) | "
            f"{end_to_end / bare:.2f}× |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cuda = torch.cuda.is_available()
    parser.add_argument("--images", type=int, default=64 if cuda else 8, help="images per generated batch")
    parser.add_argument("--reference-images", type=int, default=2, help="images through the per-image loop")
    parser.add_argument("--model", default="resnet50", help="model of the end-to-end evaluation")
    parser.add_argument("--videos", type=int, default=256 if cuda else 2, help="videos of the end-to-end evaluation")
    parser.add_argument("--batch-size", type=int, default=256 if cuda else 32, help="frames per forward pass")
    args = parser.parse_args()
    devices = default_devices()
    print(f"sequence generation, ImageNet-P protocol, {args.images} images per batch")
    print(generation_table(sample_images(args.images, 224), args.reference_images, devices))
    print()
    perturbations = names("test") if cuda else ["rotate", "gaussian_noise"]
    print(evaluation_table(args.model, args.videos, perturbations, devices[-1], args.batch_size))


if __name__ == "__main__":
    main()

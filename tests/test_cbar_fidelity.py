"""Decisions of the pretrained CIFAR ResNet-20 on C-bar corruptions made by the batched tensor code
and by the per-image NumPy version of the published definitions (tests/cbar_reference.py), each
drawing its own parameters (the NumPy version from numpy.random.RandomState, as the generators
do): the top-1 error of each corruption, over its five severities, agrees within 5 points.

CIFAR-10-C-bar runs on the 32-px test photos. ImageNet-C-bar is defined at 224 px, so the
photos are upscaled to 224 px, corrupted there (and stored as JPEG q85, as released), and the
network sees them downscaled back to 32 px. The figures are in docs/corruptions.md;
``python tests/test_cbar_fidelity.py`` prints them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cbar_reference import corrupt_one
from conftest import labelled_cifar

from robustbench_gcp.corruptions import corrupt, names
from robustbench_gcp.corruptions.params import PARAMETERS
from robustbench_gcp.rng import derived_seed, image_streams

IMAGES = {"cifar10-c-bar": 600, "imagenet-c-bar": 200}
TOLERANCE = 5.0  # points of top-1 error


def _to_224(images: torch.Tensor) -> torch.Tensor:
    up = F.interpolate(images, size=(224, 224), mode="bilinear", align_corners=False)
    return (up.clamp(0, 1) * 255).round() / 255


def _model_input(images: torch.Tensor) -> torch.Tensor:
    return images if images.shape[-1] == 32 else F.interpolate(images, size=(32, 32), mode="area")


@torch.inference_mode()
def _predictions(model, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(_model_input(chunk)).argmax(1) for chunk in images.split(200)])


def decision_figures(protocol: str, model, images: torch.Tensor, labels: torch.Tensor) -> dict[str, tuple]:
    """Per corruption: (native top-1 error %, NumPy top-1 error %, decisions that agree %) over
    all images and severities 1-5."""
    if protocol == "imagenet-c-bar":
        images = _to_224(images)
    else:
        images = (images * 255).round() / 255
    arrays = (images * 255).round().byte().permute(0, 2, 3, 1).numpy()
    figures = {}
    for name in names(protocol):
        wrong_native = wrong_numpy = agree = 0
        for severity in range(1, 6):
            native = corrupt(images, name, severity, protocol=protocol,
                             generator=image_streams(0, range(len(images)), name, severity))
            value = PARAMETERS[protocol][name][severity - 1]
            numpy_version = np.stack([
                corrupt_one(name, array, value, derived_seed("cbar", name, severity, i) % 2**32,
                            jpeg=protocol == "imagenet-c-bar")
                for i, array in enumerate(arrays)])
            numpy_version = torch.from_numpy(numpy_version).permute(0, 3, 1, 2).float() / 255
            ours, theirs = _predictions(model, native), _predictions(model, numpy_version)
            wrong_native += int((ours != labels).sum())
            wrong_numpy += int((theirs != labels).sum())
            agree += int((ours == theirs).sum())
        total = 5 * len(images)
        figures[name] = (100 * wrong_native / total, 100 * wrong_numpy / total, 100 * agree / total)
    return figures


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["cifar10-c-bar", "imagenet-c-bar"])
def test_resnet20_errs_alike_on_native_and_numpy_corruptions(protocol, resnet20, cifar_test_dir):
    images, labels = labelled_cifar(cifar_test_dir, IMAGES[protocol])
    figures = decision_figures(protocol, resnet20, images, labels)
    for name, (ours, theirs, _) in figures.items():
        assert abs(ours - theirs) <= TOLERANCE, f"{name}: native {ours:.2f} % vs NumPy {theirs:.2f} % top-1 error"


if __name__ == "__main__":  # the figures of docs/corruptions.md
    from conftest import DATA_ROOT

    import robustbench_gcp as rg

    network = rg.create_model("CIFAR10_ResNet20_GAP",
                              checkpoint=DATA_ROOT / "cifar10_resnet_akamaster/resnet20-12fca82f.th").eval()
    for chosen in ("cifar10-c-bar", "imagenet-c-bar"):
        photos, truth = labelled_cifar(DATA_ROOT / "cifar10_test_jpg/test", IMAGES[chosen])
        print(f"\n{chosen}: {len(photos)} photos × 5 severities\n\n| corruption | native | NumPy | difference "
              "| decisions agree |\n|---|---|---|---|---|")
        for corruption, (mine, reference, same) in decision_figures(chosen, network, photos, truth).items():
            print(f"| {corruption} | {mine:.2f} | {reference:.2f} | {mine - reference:+.2f} | {same:.1f} % |",
                  flush=True)

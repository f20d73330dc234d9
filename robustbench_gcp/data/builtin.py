"""A small natural-image classification set built from the colour photographs scikit-image ships.

One class per photograph; 32×32 patches (48×48 crops scaled down), training patches from the left
65 % of each photo and test patches from its right 30 %, so the two never overlap. Deterministic
(seeded). Good for a smoke test of the method on real photos, not as a benchmark: 8 classes, the
test set tells texture and colour apart within a photo, nothing about object recognition.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..fileio import atomic_write_bytes

PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket",
          "stereo_motorcycle")
PATCH, CROP, HEIGHT = 32, 48, 256


def _photo(name: str) -> torch.Tensor:
    import skimage.data

    image = getattr(skimage.data, name)()
    image = image[0] if isinstance(image, tuple) else image
    tensor = torch.from_numpy(np.ascontiguousarray(image[..., :3])).permute(2, 0, 1)[None].float()
    width = round(tensor.shape[-1] * HEIGHT / tensor.shape[-2])
    return F.interpolate(tensor, size=(HEIGHT, width), mode="bilinear", antialias=True, align_corners=False)[0]


def _patches(photo: torch.Tensor, count: int, left: float, right: float, rng: np.random.RandomState) -> torch.Tensor:
    width = photo.shape[-1]
    low, high = int(left * width), int(right * width) - CROP
    tops = rng.randint(0, HEIGHT - CROP + 1, size=count)
    lefts = rng.randint(low, high + 1, size=count)
    crops = torch.stack([photo[:, t : t + CROP, s : s + CROP] for t, s in zip(tops, lefts)])
    small = F.interpolate(crops, size=(PATCH, PATCH), mode="bilinear", antialias=True, align_corners=False)
    return small.round().clamp(0, 255).to(torch.uint8)


def write_builtin(root: str | Path, train_per_class: int = 500, test_per_class: int = 100, seed: int = 0) -> Path:
    """Write ``root/train`` and ``root/val`` as PNG ImageFolders (skipped when already complete)."""
    from torchvision.io import encode_png

    root = Path(root)
    marker = root / f".complete-{train_per_class}-{test_per_class}-{seed}"
    if marker.exists():
        return root
    rng = np.random.RandomState(seed)
    for name in PHOTOS:
        photo = _photo(name)
        for split, count, (left, right) in (("train", train_per_class, (0.0, 0.65)),
                                            ("val", test_per_class, (0.70, 1.0))):
            for i, patch in enumerate(_patches(photo, count, left, right, rng)):
                atomic_write_bytes(root / split / name / f"{i:04d}.png", bytes(encode_png(patch).numpy().tobytes()))
    marker.touch()
    return root

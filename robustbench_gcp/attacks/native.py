"""Native batched projected gradient descent (L∞ and L2), with foolbox's conventions.

Same random start, step size (``rel_stepsize`` × ε), gradient normalisation, projection and
clipping as foolbox 3's ``LinfPGD`` / ``L2PGD``, so both give the same numbers; on top of that
every ε of a sweep runs in one batched pass, and the model can run under bf16 autocast.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..rng import Draws, Randomness


def _per_sample(values: Tensor, ndim: int) -> Tensor:
    return values.view(-1, *([1] * (ndim - 1)))


def _l2_norms(x: Tensor) -> Tensor:
    return x.flatten(1).norm(dim=1).clamp_min(1e-12)


def random_starts(norm: str, images: Tensor, count: int, draws: Draws) -> Tensor:
    """foolbox's random start at radius 1, for ``count`` radii of every image (ε-major rows, one
    draw each): uniform in the L∞ box, or uniform in the L2 ball (normal of dimension d + 2,
    normalised, first d coordinates)."""
    dims = images[0].numel()
    if norm == "linf":
        unit = draws.uniform((dims,), -1.0, 1.0, dtype=images.dtype)
    else:
        sphere = draws.normal((dims + 2,), dtype=images.dtype)
        unit = (sphere / sphere.norm(dim=-1, keepdim=True))[..., :dims]
    return unit.reshape(count * images.shape[0], *images.shape[1:])


def pgd(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    epsilons: Sequence[float],
    *,
    norm: str,
    steps: int,
    rel_stepsize: float,
    random_start: bool = True,
    generator: Randomness = None,
    autocast: bool = False,
) -> Tensor:
    """Adversarial images (E, N, C, H, W) for every ε at once; ε = 0 returns the images.

    ``generator`` is one generator for the batch or ``ImageStreams`` with one stream per (ε, image)
    pair, ε-major: then each (image, ε) start depends on nothing else, so extending, reordering or splitting a sweep
    leaves every cell as it was.
    """
    count, n = len(epsilons), images.shape[0]
    radii = torch.tensor(epsilons, dtype=images.dtype, device=images.device).repeat_interleave(n)
    x0 = images.repeat(count, 1, 1, 1)
    y = labels.repeat(count)
    if random_start:
        start = random_starts(norm, images, count, Draws(count * n, images.device, generator))
        x = (x0 + start * _per_sample(radii, x0.dim())).clamp(0, 1)
    else:
        x = x0.clone()
    step = _per_sample(radii * rel_stepsize, x0.dim())
    for _ in range(steps):
        x.requires_grad_(True)
        with torch.autocast(device_type=images.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            if norm == "linf":
                x = x + step * grad.sign()
                x = x0 + (x - x0).clamp(-_per_sample(radii, x0.dim()), _per_sample(radii, x0.dim()))
            else:
                x = x + step * grad / _per_sample(_l2_norms(grad), x0.dim())
                delta = x - x0
                factor = torch.minimum(torch.ones_like(radii), radii / _l2_norms(delta))
                x = x0 + delta * _per_sample(factor, x0.dim())
            x = x.clamp(0, 1)
    return x.detach().view(count, *images.shape)

"""Per-image seeds derived from (run seed, dataset index, corruption, severity).

A corrupted image then depends on nothing else: not on batch size, device count, shard or
resume point.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch


def image_seed(run_seed: int, index: int, corruption: str, severity: int) -> int:
    """A 63-bit seed, stable across Python versions and machines (BLAKE2b, not ``hash``)."""
    key = f"{run_seed}/{index}/{corruption}/{severity}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def image_generators(
    run_seed: int, indices: Iterable[int], corruption: str, severity: int, device: torch.device | str = "cpu"
) -> list[torch.Generator]:
    """One seeded generator per image, on ``device`` (draws then happen where the batch is)."""
    return [
        torch.Generator(device=device).manual_seed(image_seed(run_seed, int(i), corruption, severity))
        for i in indices
    ]

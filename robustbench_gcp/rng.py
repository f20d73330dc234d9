"""Seeds and random draws shared by corruptions and attacks.

Every random number of an evaluation comes from a seed derived from (run seed, dataset index,
what is drawn for), so an image's result depends on nothing else: not on batch size, device
count, shard, resume point or which other cells run. ``Draws`` makes batched draws from one
generator for the whole batch (fastest) or one generator per image (batch-independent).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

GeneratorArg = torch.Generator | Sequence[torch.Generator] | None


def derived_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts``, stable across Python versions and machines (BLAKE2b, not ``hash``)."""
    key = "/".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def image_seed(run_seed: int, index: int, corruption: str, severity: int) -> int:
    """The seed of one image in one (corruption, severity) cell, or one (attack, draw) purpose."""
    return derived_seed(run_seed, index, corruption, severity)


def image_generators(
    run_seed: int, indices: Iterable[int], corruption: str, severity: int, device: torch.device | str = "cpu"
) -> list[torch.Generator]:
    """One seeded generator per image, on ``device`` (draws then happen where the batch is)."""
    return [
        torch.Generator(device=device).manual_seed(image_seed(run_seed, int(i), corruption, severity))
        for i in indices
    ]


def batch_seed(seed: int, purpose: str, first_index: int) -> int:
    """A 32-bit seed for code that draws from torch's global RNG (foolbox): one per batch."""
    key = f"{seed}/{purpose}/{first_index}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "little")


class Draws:
    """Batched draws of shape (n, *shape) on ``device``; randomness only from the generator(s)."""

    def __init__(self, n: int, device: torch.device, generator: GeneratorArg) -> None:
        if isinstance(generator, Sequence) and len(generator) != n:
            raise ValueError(f"got {len(generator)} generators for {n} images; pass one per image or one in all")
        self.n = n
        self.device = device
        self.generator = generator

    def _draw(self, sample, shape: tuple[int, ...]) -> Tensor:
        if isinstance(self.generator, Sequence):
            return torch.stack([sample(shape, g) for g in self.generator]).to(self.device)
        return sample((self.n, *shape), self.generator).to(self.device)

    @staticmethod
    def _home(generator: torch.Generator | None) -> torch.device | None:
        return generator.device if generator is not None else None

    def uniform(self, shape: tuple[int, ...] = (), low: float = 0.0, high: float = 1.0,
                dtype: torch.dtype = torch.float32) -> Tensor:
        def sample(size, g):
            return torch.rand(size, generator=g, dtype=dtype, device=self._home(g) or self.device)

        return self._draw(sample, shape) * (high - low) + low

    def normal(self, shape: tuple[int, ...], mean: float = 0.0, std: float = 1.0,
               dtype: torch.dtype = torch.float32) -> Tensor:
        def sample(size, g):
            return torch.randn(size, generator=g, dtype=dtype, device=self._home(g) or self.device)

        return self._draw(sample, shape) * std + mean

    def randint(self, low: int, high: int, shape: tuple[int, ...] = ()) -> Tensor:
        """Integers in [low, high)."""
        def sample(size, g):
            return torch.randint(low, high, size, generator=g, device=self._home(g) or self.device)

        return self._draw(sample, shape)

    def poisson(self, rates: Tensor) -> Tensor:
        """Poisson counts with the given per-image rates (n, ...)."""
        if isinstance(self.generator, Sequence):
            return torch.stack([
                torch.poisson(r.to(self._home(g) or r.device), generator=g).to(rates.device)
                for r, g in zip(rates, self.generator)
            ])
        home = self._home(self.generator) or rates.device
        return torch.poisson(rates.to(home), generator=self.generator).to(rates.device)

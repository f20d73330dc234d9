"""Random numbers for a batch of images, from one generator or one generator per image.

One generator for the batch is fastest. One generator per image makes every image's
corruption independent of the batch it is in, which the evaluators need so that results do not
depend on batch size, device count or resume point.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

GeneratorArg = torch.Generator | Sequence[torch.Generator] | None


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

"""Seeds and random draws shared by corruptions and attacks.

Every random number of an evaluation comes from a key derived from (run seed, dataset index,
what is drawn for), so an image's result depends on nothing else: not on batch size, chunk
size, device, device count, shard, resume point or which other cells run. ``ImageStreams``
hold those keys; ``Draws`` turns them into batched draws with a counter-based generator
(SplitMix64 of key, draw number and element number in int64 tensor ops): one kernel per draw
for the whole batch, and the same bits on the CPU and on CUDA. A single ``torch.Generator``
is accepted too, for callers who only need one reproducible stream for a batch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def _signed(value: int) -> int:
    """A 64-bit constant as the int64 torch stores (two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


_GAMMA = _signed(0x9E3779B97F4A7C15)  # SplitMix64's increment (golden ratio)
_DRAW_GAMMA = 0xD1B54A32D192ED03  # a second odd constant that separates draws of one image
_REPEAT_GAMMA = 0x8CB92BA72F3D8DD7  # and a third for repetitions of the same draws (restarts)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def _shift_right(x: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 (torch's ``>>`` on int64 is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix64(z: Tensor) -> Tensor:
    """SplitMix64's finaliser on int64 tensors (multiplication wraps modulo 2⁶⁴ on CPU and CUDA)."""
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    return z ^ _shift_right(z, 31)


def derived_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts``, stable across Python versions and machines (BLAKE2b, not ``hash``)."""
    key = "/".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def batch_seed(seed: int, purpose: str, first_index: int) -> int:
    """A 32-bit seed for code that seeds itself (pyautoattack, the reference backend): one per batch."""
    key = f"{seed}/{purpose}/{first_index}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "little")


@dataclass(frozen=True)
class ImageStreams:
    """One random stream per image: an int64 key each, on the device where draws happen."""

    keys: Tensor

    def __len__(self) -> int:
        return len(self.keys)

    def to(self, device: torch.device | str) -> ImageStreams:
        return ImageStreams(self.keys.to(device))

    def __getitem__(self, selection) -> ImageStreams:
        return ImageStreams(self.keys[selection])

    def repetition(self, number: int) -> ImageStreams:
        """Independent streams for the ``number``-th repetition of the same draws (attack restarts);
        repetition 0 is these streams."""
        if number == 0:
            return self
        return ImageStreams(mix64(self.keys + _signed(number * _REPEAT_GAMMA % (1 << 64))))

    @staticmethod
    def cat(parts: Sequence[ImageStreams]) -> ImageStreams:
        return ImageStreams(torch.cat([part.keys for part in parts]))


def image_streams(run_seed: int, indices: Tensor | Sequence[int], purpose: str, severity: int,
                  device: torch.device | str = "cpu") -> ImageStreams:
    """The streams of dataset images ``indices`` in one (corruption, severity) cell, or one
    (attack@ε, 0) purpose: one hash for the cell, then batched mixing of the indices."""
    cell = derived_seed(run_seed, purpose, severity)
    index = torch.as_tensor(indices, dtype=torch.int64, device=device).reshape(-1)
    return ImageStreams(mix64(mix64(index * _GAMMA + _signed(cell))))


Randomness = torch.Generator | ImageStreams | None


class Draws:
    """Batched draws of shape (n, *shape) on ``device``, from per-image streams or one generator.

    With ``ImageStreams`` the k-th call draws from counter k of every image's stream, so an
    image's values depend only on its key and on the sequence of draws a corruption makes.
    """

    def __init__(self, n: int, device: torch.device, randomness: Randomness) -> None:
        if not isinstance(randomness, (ImageStreams, torch.Generator, type(None))):
            raise TypeError(f"generator must be a torch.Generator, ImageStreams or None, not "
                            f"{type(randomness).__name__}; for one stream per image use "
                            "robustbench_gcp.rng.image_streams(seed, indices, purpose, level)")
        if isinstance(randomness, ImageStreams) and len(randomness) != n:
            raise ValueError(f"got {len(randomness)} image streams for {n} images; pass one per image")
        self.n = n
        self.device = torch.device(device)
        self.randomness = randomness.to(device) if isinstance(randomness, ImageStreams) else randomness
        self._draws = 0

    def _bits(self, shape: tuple[int, ...]) -> Tensor:
        """64 random bits per element, (n, *shape) int64: SplitMix64 at counter j of draw k."""
        self._draws += 1
        base = mix64(self.randomness.keys + _signed(self._draws * _DRAW_GAMMA % (1 << 64)))
        count = math.prod(shape)
        counters = torch.arange(1, count + 1, dtype=torch.int64, device=self.device) * _GAMMA
        return mix64(base[:, None] + counters[None, :]).view(self.n, *shape)

    def _unit(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """Uniform in [0, 1) with the dtype's full mantissa (24 or 53 bits)."""
        if dtype == torch.float64:
            return _shift_right(self._bits(shape), 11).to(torch.float64) * 2.0**-53
        return (_shift_right(self._bits(shape), 40).to(torch.float32) * 2.0**-24).to(dtype)

    def _generator_device(self) -> torch.device:
        return self.randomness.device if isinstance(self.randomness, torch.Generator) else self.device

    def uniform(self, shape: tuple[int, ...] = (), low: float = 0.0, high: float = 1.0,
                dtype: torch.dtype = torch.float32) -> Tensor:
        if isinstance(self.randomness, ImageStreams):
            unit = self._unit(shape, dtype)
        else:
            unit = torch.rand((self.n, *shape), generator=self.randomness, dtype=dtype,
                              device=self._generator_device()).to(self.device)
        return unit * (high - low) + low

    def normal(self, shape: tuple[int, ...], mean: float = 0.0, std: float = 1.0,
               dtype: torch.dtype = torch.float32) -> Tensor:
        if isinstance(self.randomness, ImageStreams):  # Box–Muller on the two 32-bit halves, in float64
            bits = self._bits(shape)
            u1 = (_shift_right(bits, 32).to(torch.float64) + 1) * 2.0**-32  # (0, 1]: the logarithm stays finite
            u2 = (bits & 0xFFFFFFFF).to(torch.float64) * 2.0**-32
            unit = (torch.sqrt(-2 * torch.log(u1)) * torch.cos(2 * math.pi * u2)).to(dtype)
        else:
            unit = torch.randn((self.n, *shape), generator=self.randomness, dtype=dtype,
                               device=self._generator_device()).to(self.device)
        return unit * std + mean

    def randint(self, low: int, high: int, shape: tuple[int, ...] = ()) -> Tensor:
        """Integers in [low, high)."""
        if isinstance(self.randomness, ImageStreams):
            return low + (self._unit(shape, torch.float64) * (high - low)).long().clamp_(max=high - low - 1)
        return torch.randint(low, high, (self.n, *shape), generator=self.randomness,
                             device=self._generator_device()).to(self.device)

    def poisson(self, rates: Tensor) -> Tensor:
        """Poisson counts with the given per-image rates (n, ...), in the dtype of ``rates``.

        Per-image streams invert the Poisson CDF exactly: the count is the smallest k with
        P(N ≤ k) ≥ u (regularised incomplete gamma). A normal-quantile guess with a skewness
        term is checked with two CDF evaluations and is right for about 99 % of values; the
        rest are found by bisection. Batched, and the same on every device.
        """
        if not isinstance(self.randomness, ImageStreams):
            home = self._generator_device()
            return torch.poisson(rates.to(home), generator=self.randomness).to(rates.device)
        lam = rates.to(torch.float64)
        u = self._unit(tuple(rates.shape[1:]), torch.float64)
        z = torch.special.ndtri(u.clamp(min=1e-300))
        counts = (lam + lam.sqrt() * z + (z * z - 1) / 6 + 0.5).floor().clamp_(min=0)
        wrong = (_poisson_cdf(counts, lam) < u) | ((counts > 0) & (_poisson_cdf(counts - 1, lam) >= u))
        if bool(wrong.any()):
            counts[wrong] = _poisson_bisection(lam[wrong], u[wrong])
        return counts.to(rates.dtype)


def _poisson_cdf(k: Tensor, lam: Tensor) -> Tensor:
    """P(N ≤ k) for N ~ Poisson(lam)."""
    return torch.special.gammaincc(k + 1, lam)


def _poisson_bisection(lam: Tensor, u: Tensor) -> Tensor:
    """The smallest k with P(N ≤ k) ≥ u, by bisection over λ ± (10√λ + 10), where the tails are
    below 2⁻⁶⁰."""
    spread = 10 * lam.sqrt() + 10
    low = (lam - spread).floor().clamp_(min=0)
    high = (lam + spread).ceil()
    for _ in range(max(1, math.ceil(math.log2(float((high - low).max()) + 1)) + 1)):
        mid = ((low + high) / 2).floor()
        below = _poisson_cdf(mid, lam) >= u  # the answer is at most mid
        high = torch.where(below, mid, high)
        low = torch.where(below, low, mid + 1)
    return high

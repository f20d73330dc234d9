"""libjpeg's baseline JPEG round trip in batched tensor ops, on any device.

What encoding with libjpeg (PIL, and torchvision's CPU codec) at a quality and decoding again
does to the pixels: RGB → YCbCr in 16-bit fixed point, 4:2:0 chroma by 2×2 averaging with
alternating bias, the "islow" integer DCT, quantisation with rounding, dequantisation, the islow
inverse DCT, "fancy" (triangle) chroma upsampling and YCbCr → RGB in fixed point. The entropy
coding in between is lossless, so it is skipped. Every step is libjpeg's integer arithmetic, so
the output is the libjpeg round trip bit for bit (``tests/test_jpeg.py`` checks it against
torchvision's libjpeg and PIL on real photos), with a few kernels for the whole batch instead of
one encoder and decoder call per image.

Each pass of libjpeg's DCT is a fixed integer linear map of 8 samples followed by a rounding
shift, so a pass over every block of every image is one matmul with an 8×8 integer matrix (read
off libjpeg's butterfly once) and one elementwise descale. The matmuls run in float64: every
product and partial sum is an integer below 2^36, which float64 holds exactly, so the result is
the integer one whatever order the sums take. The rest runs in int32 (every value stays below 2^26).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
         14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
         49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_CHROMA = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
           47, 66, 99, 99, 99, 99, 99, 99, *([99] * 32))

_CONST_BITS, _PASS1_BITS = 13, 2
_F0298, _F0390, _F0541, _F0765, _F0899, _F1175 = 2446, 3196, 4433, 6270, 7373, 9633
_F1501, _F1847, _F1961, _F2053, _F2562, _F3072 = 12299, 15137, 16069, 16819, 20995, 25172


def _fix(x: float) -> int:
    return int(x * 65536 + 0.5)


def quant_table(base: tuple[int, ...], quality: int) -> list[int]:
    """libjpeg's ``jpeg_set_quality(quality, force_baseline=TRUE)`` scaling of a base table."""
    quality = min(max(quality, 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(max((value * scale + 50) // 100, 1), 255) for value in base]


def _odd_part(d7: Tensor, d5: Tensor, d3: Tensor, d1: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The shared odd half of libjpeg's islow DCT and inverse DCT (Loeffler–Ligtenberg–Moschytz)."""
    z5 = (d7 + d5 + d3 + d1) * _F1175
    z1 = (d7 + d1) * -_F0899
    z2 = (d5 + d3) * -_F2562
    z3 = (d7 + d3) * -_F1961 + z5
    z4 = (d5 + d1) * -_F0390 + z5
    return d7 * _F0298 + z1 + z3, d5 * _F2053 + z2 + z4, d3 * _F3072 + z2 + z3, d1 * _F1501 + z1 + z4


def _fdct_butterfly(s: list[Tensor]) -> list[Tensor]:
    """jpeg_fdct_islow's arithmetic on 8 samples, before its rounding shifts (outputs 0 and 4
    unscaled; libjpeg shifts them left by PASS1_BITS in the first pass)."""
    tmp0, tmp7, tmp1, tmp6 = s[0] + s[7], s[0] - s[7], s[1] + s[6], s[1] - s[6]
    tmp2, tmp5, tmp3, tmp4 = s[2] + s[5], s[2] - s[5], s[3] + s[4], s[3] - s[4]
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    z1 = (tmp12 + tmp13) * _F0541
    o7, o5, o3, o1 = _odd_part(tmp4, tmp5, tmp6, tmp7)
    return [tmp10 + tmp11, o1, z1 + tmp13 * _F0765, o3, tmp10 - tmp11, o5, z1 - tmp12 * _F1847, o7]


def _idct_butterfly(c: list[Tensor]) -> list[Tensor]:
    """jpeg_idct_islow's arithmetic on 8 coefficients, before its rounding shift."""
    z1 = (c[2] + c[6]) * _F0541
    tmp2, tmp3 = z1 - c[6] * _F1847, z1 + c[2] * _F0765
    tmp0, tmp1 = (c[0] + c[4]) * (1 << _CONST_BITS), (c[0] - c[4]) * (1 << _CONST_BITS)
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    o0, o1, o2, o3 = _odd_part(c[7], c[5], c[3], c[1])
    return [tmp10 + o3, tmp11 + o2, tmp12 + o1, tmp13 + o0, tmp13 - o0, tmp12 - o1, tmp11 - o2, tmp10 - o3]


def _matrix(butterfly: Callable[[list[Tensor]], list[Tensor]], scale: tuple[int, ...] = (1,) * 8) -> Tensor:
    """The 8×8 integer matrix (output × input) of a linear butterfly, each output times ``scale``."""
    unit = torch.eye(8, dtype=torch.int64)
    columns = butterfly(list(unit.unbind(1)))  # output i for each unit input j
    return torch.stack(columns) * torch.tensor(scale).view(8, 1)


# Each pass as (matrix: outputs × inputs, rounding shift of each output). The forward row pass
# keeps outputs 0 and 4 unrounded, shifted left by PASS1_BITS; the column pass rounds them by PASS1_BITS.
_INNER, _OUTER = _CONST_BITS - _PASS1_BITS, _CONST_BITS + _PASS1_BITS
_PASSES = {
    "fdct_rows": (_matrix(_fdct_butterfly, (4, 1, 1, 1, 4, 1, 1, 1)), (0, _INNER, _INNER, _INNER) * 2),
    "fdct_columns": (_matrix(_fdct_butterfly), (_PASS1_BITS, _OUTER, _OUTER, _OUTER) * 2),
    "idct_columns": (_matrix(_idct_butterfly), (_INNER,) * 8),
    "idct_rows": (_matrix(_idct_butterfly), (_OUTER + 3,) * 8),
}


@functools.lru_cache(maxsize=None)
def _pass_tensors(name: str, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """A pass's (matrix, rounding offsets, 2^-shift) in float64 on ``device``, made once per device
    (a copy to the GPU per call would wait for the device)."""
    matrix, shifts = _PASSES[name]
    exponent = torch.tensor(shifts, dtype=torch.float64)
    offsets = torch.where(exponent > 0, torch.exp2(exponent - 1), 0.0)
    return matrix.to(device, torch.float64), offsets.to(device), torch.exp2(-exponent).to(device)


@functools.lru_cache(maxsize=None)
def _quant_tensor(base: tuple[int, ...], quality: int, device: torch.device) -> Tensor:
    """A scaled quantisation table as float64 (8, 1, 8) on ``device``: it broadcasts over the
    (block row, 8, block column, 8) view of a plane."""
    return torch.tensor(quant_table(base, quality), dtype=torch.float64).view(8, 1, 8).to(device)


def _row_pass(plane: Tensor, name: str) -> Tensor:
    """A pass over every 8-sample row segment of every block: (N, H, W) float64, W a multiple of 8."""
    matrix, offsets, scales = _pass_tensors(name, plane.device)
    mixed = plane.unflatten(-1, (-1, 8)) @ matrix.T
    return mixed.add_(offsets).mul_(scales).floor_().flatten(-2)


def _column_pass(plane: Tensor, name: str) -> Tensor:
    """A pass over every 8-sample column segment of every block: (N, H, W) float64, H a multiple of 8."""
    matrix, offsets, scales = _pass_tensors(name, plane.device)
    mixed = matrix @ plane.unflatten(-2, (-1, 8))
    return mixed.add_(offsets[:, None]).mul_(scales[:, None]).floor_().flatten(-3, -2)


def _code_plane(plane: Tensor, base: tuple[int, ...], quality: int) -> Tensor:
    """Samples (N, H, W), H and W multiples of 8 → int32 samples after DCT, quantisation and inverse DCT."""
    q = _quant_tensor(base, quality, plane.device)
    coefficients = _column_pass(_row_pass(plane.to(torch.float64) - 128, "fdct_rows"), "fdct_columns")
    blocks = coefficients.unflatten(-1, (-1, 8)).unflatten(-3, (-1, 8))  # (N, H/8, 8, W/8, 8)
    # the islow DCT leaves its output scaled by 8: divide by 8q, rounding half away from zero
    quantised = blocks.abs().add_(4 * q).div_(8 * q).floor_().mul_(blocks.sign())
    dequantised = quantised.mul_(q).flatten(-2).flatten(-3, -2)
    samples = _row_pass(_column_pass(dequantised, "idct_columns"), "idct_rows")
    return samples.add_(128).clamp_(0, 255).to(torch.int32)


def _pad_edges(plane: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """``plane`` (..., H, W) extended by repeating its first and last rows and columns."""
    if top or bottom:
        shape = plane.shape[:-2]
        plane = torch.cat([plane[..., :1, :].expand(*shape, top, -1), plane,
                           plane[..., -1:, :].expand(*shape, bottom, -1)], dim=-2)
    if left or right:
        shape = plane.shape[:-1]
        plane = torch.cat([plane[..., :1].expand(*shape, left), plane, plane[..., -1:].expand(*shape, right)], dim=-1)
    return plane


def _downsample(plane: Tensor) -> Tensor:
    """h2v2_downsample: the mean of each 2×2 block, rounded with bias 1, 2, 1, 2, ... along a row."""
    total = plane[:, 0::2, 0::2] + plane[:, 0::2, 1::2] + plane[:, 1::2, 0::2] + plane[:, 1::2, 1::2]
    bias = 1 + (torch.arange(total.shape[-1], device=plane.device, dtype=plane.dtype) % 2)
    return (total + bias) >> 2


def _fancy_upsample(plane: Tensor) -> Tensor:
    """h2v2_fancy_upsample: a triangle filter, 3/4 nearer and 1/4 farther sample in each direction,
    edge samples repeated; rounding +8 for even and +7 for odd output columns, as libjpeg."""
    padded = _pad_edges(plane, 1, 1, 0, 0)
    above, below = 3 * plane + padded[:, :-2], 3 * plane + padded[:, 2:]
    rows = torch.stack([above, below], dim=2).flatten(1, 2)  # column sums of output rows 2i, 2i+1
    sides = _pad_edges(rows, 0, 0, 1, 1)
    even = (3 * rows + sides[..., :-2] + 8) >> 4
    odd = (3 * rows + sides[..., 2:] + 7) >> 4
    return torch.stack([even, odd], dim=-1).flatten(-2)


def jpeg_round_trip_exact(images: Tensor, quality: int) -> Tensor:
    """uint8 (N, 3, H, W) → the same images after a libjpeg JPEG encode at ``quality`` (4:2:0,
    islow) and decode (islow, fancy upsampling), uint8, on the images' device."""
    n, _, h, w = images.shape
    # the encoder pads the image to whole 16×16 MCUs by repeating its last row and column
    r, g, b = _pad_edges(images.to(torch.int32), 0, -h % 16, 0, -w % 16).unbind(1)
    half, offset = 1 << 15, 128 << 16
    y = (_fix(0.29900) * r + _fix(0.58700) * g + _fix(0.11400) * b + half) >> 16
    cb = (-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b + offset + half - 1) >> 16
    cr = (_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b + offset + half - 1) >> 16
    y = _code_plane(y, _LUMA, quality)[:, :h, :w]
    ch, cw = (h + 1) // 2, (w + 1) // 2  # the decoder upsamples the chroma samples inside the image only
    cb = _fancy_upsample(_code_plane(_downsample(cb), _CHROMA, quality)[:, :ch, :cw])[:, :h, :w] - 128
    cr = _fancy_upsample(_code_plane(_downsample(cr), _CHROMA, quality)[:, :ch, :cw])[:, :h, :w] - 128
    red = y + ((_fix(1.40200) * cr + half) >> 16)
    green = y + ((-_fix(0.34414) * cb - _fix(0.71414) * cr + half) >> 16)
    blue = y + ((_fix(1.77200) * cb + half) >> 16)
    return torch.stack([red, green, blue], dim=1).clamp_(0, 255).to(torch.uint8)

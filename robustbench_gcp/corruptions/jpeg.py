"""libjpeg's baseline JPEG round trip in batched integer tensor ops, on any device.

What encoding with libjpeg (PIL, and torchvision's CPU codec) at a quality and decoding again
does to the pixels: RGB → YCbCr in 16-bit fixed point, 4:2:0 chroma by 2×2 averaging with
alternating bias, the "islow" integer DCT, quantisation with rounding, dequantisation, the islow
inverse DCT, "fancy" (triangle) chroma upsampling and YCbCr → RGB in fixed point. The entropy
coding in between is lossless, so it is skipped. Every step is libjpeg's integer arithmetic, so
the output is the libjpeg round trip bit for bit (``tests/test_jpeg.py`` checks it against
torchvision's libjpeg on real photos), with one kernel per step for the whole batch instead of
one encoder and decoder call per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


def _descale(x: Tensor, bits: int) -> Tensor:
    return (x + (1 << (bits - 1))) >> bits


def _odd_part(d7: Tensor, d5: Tensor, d3: Tensor, d1: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The shared odd half of libjpeg's islow DCT and inverse DCT (Loeffler–Ligtenberg–Moschytz)."""
    z5 = (d7 + d5 + d3 + d1) * _F1175
    z1 = (d7 + d1) * -_F0899
    z2 = (d5 + d3) * -_F2562
    z3 = (d7 + d3) * -_F1961 + z5
    z4 = (d5 + d1) * -_F0390 + z5
    return d7 * _F0298 + z1 + z3, d5 * _F2053 + z2 + z4, d3 * _F3072 + z2 + z3, d1 * _F1501 + z1 + z4


def _fdct_pass(d: Tensor, last: bool) -> Tensor:
    """One pass of jpeg_fdct_islow over the last axis (8 samples); ``last`` is the column pass."""
    s = [d[..., i] for i in range(8)]
    tmp0, tmp7, tmp1, tmp6 = s[0] + s[7], s[0] - s[7], s[1] + s[6], s[1] - s[6]
    tmp2, tmp5, tmp3, tmp4 = s[2] + s[5], s[2] - s[5], s[3] + s[4], s[3] - s[4]
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    shift = _CONST_BITS + _PASS1_BITS if last else _CONST_BITS - _PASS1_BITS
    if last:
        out0, out4 = _descale(tmp10 + tmp11, _PASS1_BITS), _descale(tmp10 - tmp11, _PASS1_BITS)
    else:
        out0, out4 = (tmp10 + tmp11) << _PASS1_BITS, (tmp10 - tmp11) << _PASS1_BITS
    z1 = (tmp12 + tmp13) * _F0541
    out2, out6 = _descale(z1 + tmp13 * _F0765, shift), _descale(z1 - tmp12 * _F1847, shift)
    o7, o5, o3, o1 = (_descale(v, shift) for v in _odd_part(tmp4, tmp5, tmp6, tmp7))
    return torch.stack([out0, o1, out2, o3, out4, o5, out6, o7], dim=-1)


def _idct_pass(d: Tensor, last: bool) -> Tensor:
    """One pass of jpeg_idct_islow over the last axis (8 coefficients); ``last`` is the row pass."""
    c = [d[..., i] for i in range(8)]
    z1 = (c[2] + c[6]) * _F0541
    tmp2, tmp3 = z1 - c[6] * _F1847, z1 + c[2] * _F0765
    tmp0, tmp1 = (c[0] + c[4]) << _CONST_BITS, (c[0] - c[4]) << _CONST_BITS
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    o0, o1, o2, o3 = _odd_part(c[7], c[5], c[3], c[1])
    shift = _CONST_BITS + _PASS1_BITS + 3 if last else _CONST_BITS - _PASS1_BITS
    values = [tmp10 + o3, tmp11 + o2, tmp12 + o1, tmp13 + o0, tmp13 - o0, tmp12 - o1, tmp11 - o2, tmp10 - o3]
    return torch.stack([_descale(v, shift) for v in values], dim=-1)


def _blocks(plane: Tensor) -> Tensor:
    """(N, H, W) → (N, H/8, W/8, 8, 8)."""
    n, h, w = plane.shape
    return plane.reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)


def _unblocks(blocks: Tensor) -> Tensor:
    n, bh, bw = blocks.shape[:3]
    return blocks.permute(0, 1, 3, 2, 4).reshape(n, bh * 8, bw * 8)


def _code_plane(plane: Tensor, table: list[int]) -> Tensor:
    """Samples (N, H, W), H and W multiples of 8 → the samples after DCT, quantisation and inverse DCT."""
    q = torch.tensor(table, dtype=torch.int64, device=plane.device).view(8, 8)
    blocks = _blocks(plane - 128)
    coefficients = _fdct_pass(_fdct_pass(blocks, last=False).transpose(-1, -2), last=True).transpose(-1, -2)
    divisor = q << 3  # the islow DCT leaves its output scaled by 8
    quantised = ((coefficients.abs() + (divisor >> 1)) // divisor) * coefficients.sign()
    dequantised = quantised * q
    samples = _idct_pass(_idct_pass(dequantised.transpose(-1, -2), last=False).transpose(-1, -2), last=True)
    return _unblocks((samples + 128).clamp(0, 255))


def _downsample(plane: Tensor) -> Tensor:
    """h2v2_downsample: the mean of each 2×2 block, rounded with bias 1, 2, 1, 2, ... along a row."""
    total = plane[:, 0::2, 0::2] + plane[:, 0::2, 1::2] + plane[:, 1::2, 0::2] + plane[:, 1::2, 1::2]
    bias = 1 + (torch.arange(total.shape[-1], device=plane.device) % 2)
    return (total + bias) >> 2


def _fancy_upsample(plane: Tensor) -> Tensor:
    """h2v2_fancy_upsample: a triangle filter, 3/4 nearer and 1/4 farther sample in each direction,
    edge samples repeated; rounding +8 for even and +7 for odd output columns, as libjpeg."""
    padded = F.pad(plane.unsqueeze(1).float(), (0, 0, 1, 1), mode="replicate").squeeze(1).long()
    above, below = 3 * plane + padded[:, :-2], 3 * plane + padded[:, 2:]
    rows = torch.stack([above, below], dim=2).flatten(1, 2)  # column sums of output rows 2i, 2i+1
    sides = F.pad(rows.unsqueeze(1).float(), (1, 1, 0, 0), mode="replicate").squeeze(1).long()
    even = (3 * rows + sides[..., :-2] + 8) >> 4
    odd = (3 * rows + sides[..., 2:] + 7) >> 4
    return torch.stack([even, odd], dim=-1).flatten(-2)


def jpeg_round_trip_exact(images: Tensor, quality: int) -> Tensor:
    """uint8 (N, 3, H, W) → the same images after a libjpeg JPEG encode at ``quality`` (4:2:0,
    islow) and decode (islow, fancy upsampling), uint8, on the images' device."""
    n, _, h, w = images.shape
    rgb = images.long()
    # the encoder pads the image to whole 16×16 MCUs by repeating its last row and column
    rgb = F.pad(rgb.float(), (0, -w % 16, 0, -h % 16), mode="replicate").long()
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    half, offset = 1 << 15, 128 << 16
    y = (_fix(0.29900) * r + _fix(0.58700) * g + _fix(0.11400) * b + half) >> 16
    cb = (-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b + offset + half - 1) >> 16
    cr = (_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b + offset + half - 1) >> 16
    luma, chroma = quant_table(_LUMA, quality), quant_table(_CHROMA, quality)
    y = _code_plane(y, luma)[:, :h, :w]
    ch, cw = (h + 1) // 2, (w + 1) // 2  # the decoder upsamples the chroma samples inside the image only
    cb = _fancy_upsample(_code_plane(_downsample(cb), chroma)[:, :ch, :cw])[:, :h, :w] - 128
    cr = _fancy_upsample(_code_plane(_downsample(cr), chroma)[:, :ch, :cw])[:, :h, :w] - 128
    red = y + ((_fix(1.40200) * cr + half) >> 16)
    green = y + ((-_fix(0.34414) * cb - _fix(0.71414) * cr + half) >> 16)
    blue = y + ((_fix(1.77200) * cb + half) >> 16)
    return torch.stack([red, green, blue], dim=1).clamp(0, 255).to(torch.uint8)

"""Decoding on the device: loader workers read file bytes, the main process decodes JPEGs in
batches (nvJPEG on CUDA, libjpeg on the CPU) and resizes and crops on the device with the
geometry of the PIL transform. PNGs, other formats and files the batched decoder refuses fall
back to PIL; files nothing can decode are reported as unreadable, as on the PIL path.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF

from ..corruptions.ops import quiet_torchvision_codecs

_JPEG_MAGIC = b"\xff\xd8\xff"
_JPEG_END = b"\xff\xd9"


@dataclass(frozen=True)
class Geometry:
    """Resize the shorter side to ``resize`` (None: keep), then center-crop ``crop`` (None: keep)."""

    resize: int | None
    crop: int | None

    def pil_transform(self):
        """The same geometry as a PIL transform to uint8 (C, H, W)."""
        from torchvision import transforms

        steps = [transforms.Resize(self.resize)] if self.resize else []
        steps += [transforms.CenterCrop(self.crop)] if self.crop else []
        return transforms.Compose([*steps, transforms.PILToTensor()])

    def apply(self, images: Tensor) -> Tensor:
        """uint8 (..., 3, H, W) on any device → uint8 (..., 3, crop, crop): bilinear with
        antialiasing, as PIL, for a batch of images of one size at once."""
        if self.resize:
            images = TF.resize(images, [self.resize], antialias=True)
        return TF.center_crop(images, [self.crop]) if self.crop else images


class EncodedFiles(Dataset):
    """Labelled image files as raw bytes: what loader workers hand over for decoding on the
    device. An unreadable file gives empty bytes, decoded as unreadable."""

    def __init__(self, samples: Sequence[tuple[str, int]]) -> None:
        self.samples = list(samples)
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError:
            data = b""
        return data, label, index, bool(data)


@dataclass
class EncodedBatch:
    """A batch of files' bytes end to end in one uint8 tensor, and each file's length: one
    shared-memory handle per batch from a loader worker, not one per file."""

    data: Tensor
    lengths: Tensor

    def files(self) -> list[Tensor]:
        """Each file's bytes, as views of ``data``."""
        return list(torch.split(self.data, self.lengths.tolist()))

    def whole_jpegs(self) -> Tensor:
        """Flags of the files that start with a JPEG's start-of-image marker and end with its
        end-of-image marker (a truncated JPEG goes to PIL, which refuses it), for the batch at once."""
        ends = self.lengths.cumsum(0)
        starts = ends - self.lengths
        whole = self.lengths > 4  # the shorter ones' positions below may point into other files
        if not whole.any():
            return whole

        def byte_at(position: Tensor) -> Tensor:
            return self.data[position.clamp(0, len(self.data) - 1)]

        for offset, byte in enumerate(_JPEG_MAGIC):
            whole &= byte_at(starts + offset) == byte
        for offset, byte in zip((2, 1), _JPEG_END):
            whole &= byte_at(ends - offset) == byte
        return whole


def collate_encoded(items) -> tuple[EncodedBatch, Tensor, Tensor, Tensor]:
    """A batch of ``EncodedFiles`` items: the files' bytes as one ``EncodedBatch``, labels,
    indices and readable flags as tensors."""
    data, labels, index, readable = zip(*items)
    # joined straight into a bytearray (one copy): frombuffer wants a writable buffer
    blob = torch.frombuffer(bytearray().join(data), dtype=torch.uint8) if any(data) else \
        torch.empty(0, dtype=torch.uint8)
    lengths = torch.tensor([len(d) for d in data], dtype=torch.int64)
    return EncodedBatch(blob, lengths), torch.tensor(labels), torch.tensor(index), torch.tensor(readable)


def pil_decode(source, transform) -> Tensor | None:
    """``transform`` of the RGB image in ``source`` (a path or a file object); None when PIL
    cannot decode it."""
    try:
        with Image.open(source) as image:
            return transform(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def _device_decode(datas: list[Tensor], device: torch.device) -> list[Tensor | None]:
    """Batched decode of JPEG bytes on ``device``; one by one where the batch is refused."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with quiet_torchvision_codecs():
        try:
            return list(decode_jpeg(datas, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            decoded: list[Tensor | None] = []
            for data in datas:
                try:
                    decoded.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    decoded.append(None)
            return decoded


def decode_batch(encoded: EncodedBatch, geometry: Geometry, size: int,
                 device: torch.device) -> tuple[Tensor, Tensor]:
    """File bytes → (uint8 (N, 3, size, size) on ``device``, readable flags (N,) on the host).

    JPEGs decode in one batch on the device; everything else, and JPEGs the device decoder
    refuses, goes through PIL. Unreadable images are zeros with their flag False.
    """
    datas = encoded.files()
    images: list[Tensor | None] = [None] * len(datas)
    jpeg = encoded.whole_jpegs().nonzero().squeeze(1).tolist()
    decoded = dict(zip(jpeg, _device_decode([datas[i] for i in jpeg], device))) if jpeg else {}
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i, image in decoded.items():
        if image is not None:
            by_size.setdefault(tuple(image.shape), []).append(i)
    for same in by_size.values():  # one resize per image size in the batch, not one per image
        for i, image in zip(same, geometry.apply(torch.stack([decoded[i] for i in same]))):
            images[i] = image
    for i, data in enumerate(datas):
        if images[i] is None and len(data):
            decoded = pil_decode(io.BytesIO(data.numpy().tobytes()), geometry.pil_transform())
            images[i] = decoded.to(device) if decoded is not None else None
    readable = torch.tensor([image is not None and tuple(image.shape) == (3, size, size) for image in images],
                            dtype=torch.bool)
    blank = torch.zeros(3, size, size, dtype=torch.uint8, device=device)
    batch = torch.stack([image if ok else blank for image, ok in zip(images, readable.tolist())]) if datas else \
        blank[:0].expand(0, 3, size, size)
    return batch, readable

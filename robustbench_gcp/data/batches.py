"""Batches of images on the device, read ahead of their use.

Loader workers read (and, on the PIL path, decode) files; a background thread takes their
batches, copies them to the device (from pinned memory, on a side stream on CUDA) and decodes
JPEGs there (``--decode device``), so the next batch is on its way while the current one is
corrupted and classified. Unreadable images are dropped and counted (or refused with ``--strict``).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from ..distributed import DistContext
from ..errors import Error
from .decode import EncodedFiles, Geometry, collate_encoded, decode_batch

_END = object()
T = TypeVar("T")
U = TypeVar("U")


class UnreadableImages(Error, ValueError):
    """``--strict`` met files that cannot be decoded (``paths``: the first few)."""

    def __init__(self, paths: list) -> None:
        super().__init__(f"unreadable images: {paths} (drop --strict to skip and count them)")
        self.paths = paths


@dataclass(frozen=True)
class DeviceDecoding:
    """Decode JPEG bytes on the device with this geometry, to ``size``-px squares."""

    geometry: Geometry
    size: int


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(items: Iterator[T], device: torch.device, depth: int = 2) -> Iterator[T]:
    """``items`` (tuples or dataclasses) produced by a background thread, ``depth`` ahead of the
    consumer. On CUDA the thread works on a side stream, and tensors are handed over with
    ``record_stream`` so the caching allocator does not reuse their memory while the consumer's
    stream still reads it."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    side = torch.cuda.Stream(device) if device.type == "cuda" else None
    stop = threading.Event()

    def hand_over(entry) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
                for item in items:
                    done = None
                    if side is not None:
                        done = torch.cuda.Event()
                        done.record(side)
                    if not hand_over((item, done)):
                        return
            hand_over(_END)
        except BaseException as error:  # handed to the consumer, which raises it with its traceback
            hand_over(_Failure(error))

    worker = threading.Thread(target=produce, name="read-ahead", daemon=True)
    worker.start()
    current = torch.cuda.current_stream(device) if side is not None else None
    try:
        while (got := ready.get()) is not _END:
            if isinstance(got, _Failure):
                raise got.error
            item, done = got
            yield _hand_over(item, done, current) if current is not None else item
    finally:
        stop.set()


def _tensors(item) -> Iterator[Tensor]:
    """The CUDA tensors of an item: a tensor, or the values of a tuple or a dataclass."""
    values = (item,) if isinstance(item, Tensor) else item if isinstance(item, (tuple, list)) else vars(item).values()
    return (value for value in values if isinstance(value, Tensor) and value.is_cuda)


def _hand_over(item: T, done: torch.cuda.Event, stream: torch.cuda.Stream) -> T:
    """``item``, made on another stream up to event ``done``, ready for use on ``stream``: it
    waits for the event, and the caching allocator keeps the item's memory until ``stream`` is done with it."""
    stream.wait_event(done)
    for tensor in _tensors(item):
        tensor.record_stream(stream)
    return item


def staged(items: Iterable[T], work: Callable[[T], U], device: torch.device) -> Iterator[U]:
    """``work(item)`` for each item, in order. On CUDA each item's work is queued on a side
    stream before the previous result is handed over, so the GPU prepares batch k+1 (decodes and
    corrupts it) while the caller's stream classifies batch k; nothing here waits for the device.
    The CPU does them in turn. Results are those of ``map(work, items)`` either way."""
    if device.type != "cuda":
        yield from map(work, items)
        return
    current = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(current)  # what the caller queued for the items is done before the side stream reads them
    pending = None
    for item in items:
        for tensor in _tensors(item):
            tensor.record_stream(side)
        with torch.cuda.stream(side):
            result = work(item)
            done = torch.cuda.Event()
            done.record(side)
        if pending is not None:
            yield _hand_over(*pending, current)
        pending = (result, done)
    if pending is not None:
        yield _hand_over(*pending, current)


class ImageBatches:
    """This rank's share of ``indices`` in batches of uint8 images on the device.

    Yields (uint8 images (B, 3, H, W) on the device, labels on the device, dataset indices on
    the host). With ``decoding`` the dataset's files are read as bytes and decoded on the
    device; unreadable images are dropped and their dataset indices kept in ``unread`` (or
    refused with ``strict``); a batch left empty is skipped.
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int], batch_size: int, workers: int, ctx: DistContext,
                 strict: bool, decoding: DeviceDecoding | None = None) -> None:
        self.dataset, self.ctx, self.strict, self.decoding = dataset, ctx, strict, decoding
        share = Subset(EncodedFiles(dataset.samples) if decoding else dataset, list(indices[ctx.rank :: ctx.world]))
        self.loader = DataLoader(share, batch_size=batch_size, num_workers=workers,
                                 pin_memory=ctx.device.type == "cuda" and not decoding,
                                 collate_fn=collate_encoded if decoding else None)
        self.unread: list[int] = []

    @property
    def skipped(self) -> int:
        return len(self.unread)

    def gather(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """Every batch joined: (uint8 images on the device, labels, dataset indices); None if none was read."""
        parts = list(self)
        return tuple(torch.cat(column) for column in zip(*parts)) if parts else None

    def _device_batches(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        device = self.ctx.device
        for images, labels, index, readable in self.loader:
            if self.decoding:
                images, readable = decode_batch(images, self.decoding.geometry, self.decoding.size, device)
            else:
                images = images.to(device, non_blocking=True)
            if not readable.all():
                if self.strict:
                    bad = index[~readable].tolist()
                    paths = [self.dataset.samples[i][0] for i in bad] if hasattr(self.dataset, "samples") else bad
                    raise UnreadableImages(paths[:3])
                self.unread += index[~readable].tolist()
                keep = readable.to(device)
                images, labels, index = images[keep], labels[readable], index[readable]
            if len(labels):
                yield images, labels.to(device, non_blocking=True), index

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        return read_ahead(self._device_batches(), self.ctx.device)


def batches_of(columns: Sequence[Tensor], wanted: Tensor, batch_size: int) -> Iterator[list[Tensor]]:
    """The rows of ``columns`` (tensors of equal length, on any devices) where ``wanted`` (a
    boolean host tensor) is set, in consecutive batches of ``batch_size``."""
    if not wanted.all():
        columns = [column[wanted.to(column.device)] for column in columns]
    for start in range(0, len(columns[0]), batch_size):
        yield [column[start : start + batch_size] for column in columns]

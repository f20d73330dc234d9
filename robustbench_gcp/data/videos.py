"""Perturbation videos: MP4 files read and written with PyAV (FFmpeg's libraries in a wheel),
the released ImageNet-P tree and CIFAR-10-P arrays, and the clean images the on-the-fly
sequences start from.

Layouts: ImageNet-P ``<root>/<perturbation>[_<difficulty>]/<wnid>/<name>.mp4`` (noise sequences
of difficulty 2 and 3 in their own folders); CIFAR-10-P ``<root>/<perturbation>[_<difficulty>].npy``
of shape (videos, frames, 32, 32, 3), uint8, with an optional ``labels.npy``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..choices import VIDEO_SOURCES
from ..fileio import atomic_write_bytes
from ..perturbations import PROTOCOLS, sequence_length
from ..perturbations import spec as protocol_spec
from ..stability import DIFFICULTIES, NOISE_PERTURBATIONS, ORDER
from .arrays import check_pixels, check_scaled, load_array, read_labels
from .decode import Geometry
from .folders import DatasetError, _balanced_indices
from .sources import ImageFiles, files_fingerprint, folder_samples

# The released encoding: H.264 at 1 frame/s, preset veryslow, 4:4:4 (what FFmpeg picks for RGB
# input); noise sequences with the grain tuning at the default quality, the others at CRF 20.
# x264's threads and CPU-specific paths make the bytes depend on the machine and on what the process
# encoded before: one thread and cpu-independent=1 keep an export byte for byte reproducible
_H264 = {"preset": "veryslow", "threads": "1", "x264-params": "cpu-independent=1"}
_H264_NOISE = {**_H264, "tune": "grain"}
_H264_SMOOTH = {**_H264, "crf": "20"}


def sequence_file(name: str, level: int) -> str:
    """The released name of a sequence: ``shot_noise_2`` for the difficulty-2 noise sequence."""
    return name if level == 1 else f"{name}_{level}"


def read_video(path: str | Path) -> np.ndarray:
    """Every frame of a video file as RGB uint8 (T, H, W, 3); ``DatasetError`` when unreadable."""
    import av

    try:
        with av.open(str(path)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as error:
        raise DatasetError(f"{path}: not a readable video ({error})") from None
    if not frames:
        raise DatasetError(f"{path}: holds no video frames")
    return np.stack(frames)


def write_video(path: str | Path, frames: np.ndarray, noise: bool) -> None:
    """Write RGB uint8 frames (T, H, W, 3) as the released MP4, atomically."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=1, options=_H264_NOISE if noise else _H264_SMOOTH)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv444p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    atomic_write_bytes(path, buffer.getvalue())


class VideoFiles(Dataset):
    """Released MP4s: (uint8 frames (T, 3, size, size), label, index, problem or ""). A problem
    (unreadable, wrong frame count, too small) is returned, not raised, so the main process
    reports it with the file's name instead of a loader worker's traceback."""

    def __init__(self, samples: Sequence[tuple[str, int]], frames: int, size: int) -> None:
        self.samples, self.frames, self.size = list(samples), frames, size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        empty = torch.zeros(self.frames, 3, self.size, self.size, dtype=torch.uint8)
        try:
            video = read_video(path)
        except DatasetError as error:
            return empty, label, index, str(error)
        if len(video) != self.frames:
            return empty, label, index, (f"{path} has {len(video)} frames where this sequence has {self.frames}: "
                                         "the file is truncated or from another sequence")
        if min(video.shape[1:3]) < self.size:
            return empty, label, index, f"{path} has {video.shape[2]}×{video.shape[1]} px frames, smaller than " \
                                        f"the model's {self.size} px"
        frames = torch.from_numpy(video).permute(0, 3, 1, 2)
        return Geometry(None, self.size).apply(frames), label, index, ""


class VideoArray(Dataset):
    """Rows of a released CIFAR-10-P array (videos, T, H, W, 3), memory-mapped."""

    def __init__(self, videos: np.ndarray, labels: Sequence[int]) -> None:
        self.videos, self.labels = videos, list(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        frames = torch.from_numpy(np.array(self.videos[index])).permute(0, 3, 1, 2)
        return frames, self.labels[index], index, ""


@dataclass
class VideoSource:
    """The videos of one perturbation evaluation: clean images to perturb on the fly, or the
    released sequences."""

    kind: str
    root: Path
    protocol: str
    input_size: int
    clean: ImageFiles | None
    base_targets: list[int]
    samples: list[Path]  # released videos of the reference sequence, relative to its folder (ImageNet-P)
    fingerprint: str = ""
    class_index: dict[str, int] | None = None
    reference: Path | None = None  # the ImageNet-P sequence folder holding the most videos

    @property
    def on_the_fly(self) -> bool:
        return self.kind == "generated"

    def subset(self, limit: int | None, seed: int) -> list[int]:
        """The fixed, class-balanced, seeded videos every cell evaluates."""
        if limit is None or limit >= len(self.base_targets):
            return list(range(len(self.base_targets)))
        return _balanced_indices(self.base_targets, limit, seed)

    def _path(self, name: str, level: int) -> Path:
        suffix = ".npy" if self.kind == "cifar10-p" else ""
        return self.root / (sequence_file(name, level) + suffix)

    def check_sequence(self, name: str, level: int) -> None:
        """That a released sequence exists with every video, before the first cell runs."""
        if self.on_the_fly:
            return
        path = self._path(name, level)
        # `perturb` writes a noise perturbation's stronger sequences only when asked for their difficulty
        hint = f" (gcp-robust perturb --difficulties {level} writes it)" if level > 1 else ""
        if self.kind == "cifar10-p":
            if not path.is_file():
                raise DatasetError(f"CIFAR-10-P file {path} is missing{hint}")
            videos = video_array(path, self.protocol)
            shape = videos.shape
            if shape[0] != len(self.base_targets):
                raise DatasetError(f"{path} holds {shape[0]} videos where the other files of {self.root} hold "
                                   f"{len(self.base_targets)}; every sequence and labels.npy cover the same images")
            if shape[1] != sequence_length(name, self.protocol):
                raise DatasetError(f"{path} has {shape[1]} frames per video where {name} has "
                                   f"{sequence_length(name, self.protocol)}: too few frames, or another sequence")
            check_scaled(videos, path)
            return
        if not path.is_dir():
            raise DatasetError(f"{path} is missing from the ImageNet-P tree{hint}")
        present = {p.relative_to(path) for p in path.glob("*/*.mp4")}
        missing = [video for video in self.samples if video not in present]
        if missing:
            raise DatasetError(f"{path / missing[0]} is missing ({len(missing)} of the {len(self.samples)} videos of "
                               f"{self.reference} are not in {path}); restore them from the release")
        extra = sorted(present - set(self.samples))
        if extra:
            raise DatasetError(f"{self.reference / extra[0]} is missing ({len(extra)} videos of {path} are not in "
                               f"{self.reference}); restore them from the release")

    def videos(self, name: str, level: int) -> Dataset:
        self.check_sequence(name, level)
        if self.kind == "cifar10-p":
            return VideoArray(video_array(self._path(name, level), self.protocol), self.base_targets)
        folder = self._path(name, level)
        samples = [(str(folder / relative), label) for relative, label in zip(self.samples, self.base_targets)]
        return VideoFiles(samples, sequence_length(name, self.protocol), self.input_size)


def video_array(path: Path, protocol: str) -> np.ndarray:
    """A CIFAR-10-P sequence's videos, checked: uint8 (videos, frames, size, size, 3) at the
    protocol's frame size."""
    videos = load_array(path)
    check_pixels(videos, path)
    size = protocol_spec(protocol).size
    if videos.ndim != 5 or videos.shape[2:] != (size, size, 3):
        raise DatasetError(f"{path} has shape {videos.shape}, expected (videos, frames, {size}, {size}, 3) for "
                           f"{protocol}")
    return videos


class CanvasCrop:
    """The ``size`` × ``size`` window around the centre of a PIL image, black past its edges, placed
    as ``CenterCrop`` places a smaller window (left = round((W − size) / 2)), so that the canvas's
    own centre crop is the image's centre crop to the pixel."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image):
        left = round((image.width - self.size) / 2)
        top = round((image.height - self.size) / 2)
        return image.crop((left, top, left + self.size, top + self.size))


def clean_transform(protocol: str):
    """How a clean photo becomes the input of the sequences, as uint8 (3, H, W): resized to a
    256-px shorter side and cut to the canvas for ImageNet-P; as it is for CIFAR-10-P."""
    from torchvision import transforms

    spec = protocol_spec(protocol)
    steps = [transforms.Resize(spec.resize), CanvasCrop(spec.canvas)] if spec.resize else []
    return transforms.Compose([*steps, transforms.PILToTensor()])


def open_video_source(kind: str, root: str | Path, protocol: str, input_size: int,
                      class_index: dict[str, int] | None = None) -> VideoSource:
    """Open a perturbation source, checking its layout."""
    root = Path(root)
    if kind not in VIDEO_SOURCES:
        raise DatasetError(f"unknown source {kind!r}; choose one of {', '.join(VIDEO_SOURCES)}")
    if protocol not in PROTOCOLS:
        raise DatasetError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if kind == "generated":
        samples, _ = folder_samples(root, class_index)
        canvas = protocol_spec(protocol).canvas
        clean = ImageFiles(samples, clean_transform(protocol), canvas)
        fingerprint = files_fingerprint(path for path, _ in samples)
        return VideoSource(kind, root, protocol, input_size, clean, clean.targets, [], fingerprint, class_index)
    if kind == "cifar10-p":
        arrays = sorted(root.glob("*.npy")) if root.is_dir() else []
        videos = [path for path in arrays if path.name != "labels.npy"]
        if not videos:
            raise DatasetError(f"{root} is not a CIFAR-10-P folder: no <perturbation>.npy file")
        labels_path = root / "labels.npy"
        labels = read_labels(labels_path).tolist() if labels_path.is_file() else \
            [0] * video_array(videos[0], protocol).shape[0]
        return VideoSource(kind, root, protocol, input_size, None, labels, [], files_fingerprint(arrays))
    names = {sequence_file(name, level) for name in ORDER for level in DIFFICULTIES
             if level == 1 or name in NOISE_PERTURBATIONS}
    folders = sorted(path for path in root.iterdir() if path.is_dir() and path.name in names) \
        if root.is_dir() else []
    if not folders:
        raise DatasetError(f"{root} is not a released ImageNet-P tree: no <perturbation>/<wnid>/<video>.mp4")
    # the folder with the most videos: the others are checked against it, so one that misses a video is named
    reference = max(folders, key=lambda folder: sum(1 for _ in folder.glob("*/*.mp4")))
    pairs, _ = folder_samples(reference, class_index, extensions=(".mp4",))
    videos = [(Path(path), label) for path, label in pairs]
    relative = [path.relative_to(reference) for path, _ in videos]
    fingerprint = files_fingerprint([*(path for path, _ in videos), *folders])
    return VideoSource(kind, root, protocol, input_size, None, [label for _, label in videos], relative, fingerprint,
                       class_index, reference)

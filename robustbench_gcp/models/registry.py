"""Architectures registered by name: ``register_model``, ``build_architecture``, ``list_models``."""

from __future__ import annotations

import difflib
import fnmatch
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ..errors import Error, did_you_mean
from .normalize import IMAGENET_MEAN, IMAGENET_STD, Normalize

TORCHVISION_PREFIX = "torchvision:"


@dataclass(frozen=True)
class ArchitectureInfo:
    """What a user needs to know about an architecture before building it."""

    name: str
    family: str
    head: str  # "gap" or "gcp"
    reduction_dim: int | None
    num_classes: int
    input_size: int
    builder: Callable[..., nn.Module] = field(repr=False, compare=False)
    aliases: tuple[str, ...] = ()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


_ARCHITECTURES: dict[str, ArchitectureInfo] = {}
_ALIASES: dict[str, str] = {}
_OTHER_NAMES: list[str] = []  # further names a model can go by (checkpoint records), for suggestions


def register_other_names(names: list[str]) -> None:
    """Names that are not architectures but that ``--model`` takes (the zoo's checkpoint
    records), so a mistyped one gets a suggestion among them too."""
    _OTHER_NAMES.extend(names)


class UnknownModelError(Error, KeyError):
    """A model name that is neither a registered architecture, an alias nor a checkpoint record."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_model(
    name: str,
    *,
    family: str,
    head: str,
    num_classes: int,
    input_size: int,
    reduction_dim: int | None = None,
    aliases: tuple[str, ...] = (),
    **builder_kwargs,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``builder(num_classes=..., reduction_dim=..., **builder_kwargs)`` under ``name``.

    Every builder takes ``reduction_dim`` (None for a GAP head), so one class serves both heads.
    """

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        for key in (name, *aliases):
            if key in _ARCHITECTURES or key in _ALIASES:
                raise ValueError(f"model name {key!r} is registered twice")

        def build(**kwargs) -> nn.Module:
            return builder(reduction_dim=reduction_dim, **builder_kwargs, **kwargs)

        _ARCHITECTURES[name] = ArchitectureInfo(
            name=name, family=family, head=head, reduction_dim=reduction_dim,
            num_classes=num_classes, input_size=input_size, builder=build, aliases=aliases,
        )
        _ALIASES.update({alias: name for alias in aliases})
        return builder

    return decorate


def list_models(pattern: str | None = None, *, include_aliases: bool = False) -> list[str]:
    """Sorted architecture names, optionally filtered by a glob pattern (case-insensitive)."""
    names = list(_ARCHITECTURES) + (list(_ALIASES) if include_aliases else [])
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]
    return sorted(names)


def _torchvision_builder(architecture: str) -> Callable[..., nn.Module]:
    def build(num_classes: int, **kwargs) -> nn.Module:
        import torchvision

        model = torchvision.models.get_model(architecture, weights=None, num_classes=num_classes, **kwargs)
        # A child with only non-persistent buffers: the state_dict stays torchvision's, so the
        # released weight files load as they are, and the model takes images in [0, 1] like ours.
        model.normalize = Normalize()
        model.register_forward_pre_hook(lambda module, args: (module.normalize(args[0]), *args[1:]))
        return model

    return build


@functools.lru_cache(maxsize=None)
def _torchvision_info(name: str) -> ArchitectureInfo:
    """``torchvision:<architecture>``: any torchvision classifier, built without weights (the
    user's ``--checkpoint`` file supplies them; nothing is downloaded)."""
    import torchvision

    architecture = name[len(TORCHVISION_PREFIX):]
    known = torchvision.models.list_models(module=torchvision.models)
    if architecture not in known:
        close = difflib.get_close_matches(architecture, known, n=5, cutoff=0.5)
        hint = f" (did you mean {', '.join(TORCHVISION_PREFIX + c for c in close)}?)" if close else ""
        raise UnknownModelError(f"unknown torchvision classifier {name!r}{hint}; torchvision.models.list_models("
                                "module=torchvision.models) lists the names")
    return ArchitectureInfo(name=name, family="torchvision", head="gap", reduction_dim=None, num_classes=1000,
                            input_size=299 if architecture == "inception_v3" else 224,
                            builder=_torchvision_builder(architecture))


def architecture_info(name: str) -> ArchitectureInfo:
    """Look up an architecture by name or alias, or a torchvision classifier as ``torchvision:<name>``."""
    if name.startswith(TORCHVISION_PREFIX):
        return _torchvision_info(name)
    key = _ALIASES.get(name, name)
    if key not in _ARCHITECTURES:
        hint = did_you_mean(name, [*list_models(include_aliases=True), *_OTHER_NAMES])
        raise UnknownModelError(
            f"unknown architecture {name!r}{hint}. `gcp-robust models` lists all names."
        )
    return _ARCHITECTURES[key]


def build_architecture(name: str, num_classes: int | None = None, **kwargs) -> nn.Module:
    """Build an architecture with random weights; ``num_classes`` defaults to the architecture's."""
    info = architecture_info(name)
    model = info.builder(num_classes=info.num_classes if num_classes is None else num_classes, **kwargs)
    model.architecture = info
    return model

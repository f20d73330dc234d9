"""How long a work unit takes: images × cells × model passes ÷ the architecture's images/s.

The throughput figures are forward passes of ResNet-50 measured on one H200 (batch 256:
15,758 images/s GAP and 12,370 GCP under bf16 autocast, 9,412 / 7,511 in fp32; see
docs/benchmarks.md) and on this project's 2-core CPU (fp32, batch 64: 10.9 images/s GAP, 9.2
GCP). Other architectures scale by their multiply-adds at their input size, relative to ResNet-50's 4.1 G,
GCP heads by ResNet-50's GCP/GAP ratio. The on-the-fly corruption evaluation runs at 0.41× the
bare model on the H200 (corrupting and decoding), and released files at 0.2× (the loader), and
neither faster than the pipeline alone (10,026 and 2,579 images/s there), which bounds small
models; a
gradient step costs three forward passes. AutoAttack's later stages attack only the images that
survive APGD-CE: the model assumes a tenth do (models trained without adversarial training).
An estimate, to size units and to say how long a sweep takes; not a benchmark.
"""

from __future__ import annotations

from ..attacks import AttackSettings, attack_spec
from ..attacks.autoattack import QUERIES, is_autoattack, stages
from ..models.registry import architecture_info

_RESNET50 = {  # forward images/s of ResNet-50 GAP, GCP per device kind and precision
    ("h200", "bf16"): (15758.0, 12370.0),
    ("h200", "fp32"): (9412.0, 7511.0),
    ("cpu", "fp32"): (10.9, 9.2),
}
_GIGA_MACS = {  # multiply-adds of each backbone family at its input size
    "resnet18": 1.8, "resnet34": 3.6, "resnet50": 4.1, "resnet101": 7.8, "mobilenet_v2": 0.3,
    "shufflenet_v2": 0.15, "cifar_resnet20": 0.041, "cifar_resnet32": 0.069, "cifar_resnet44": 0.098,
    "cifar_resnet56": 0.125,
}
ON_THE_FLY, RELEASED = 0.41, 0.2  # evaluation speed relative to the bare model
# Images/s the evaluation pipeline itself reaches on the device, whatever the model: on the fly
# the corruptions (10,026 on the H200), released files the loader (2,579 with 12 PIL workers).
PIPELINE = {("h200", True): 10026.0, ("h200", False): 2579.0}
GRADIENT_STEP = 3  # a forward and a backward pass, in forward passes
SURVIVE_APGD_CE = 0.1


def images_per_second(architecture: str, device_kind: str, precision: str) -> float:
    """Forward images/s of ``architecture``: ResNet-50's measured figure scaled by multiply-adds
    (unknown backbones, e.g. torchvision's, count as ResNet-50)."""
    info = architecture_info(architecture)
    key = (device_kind, precision if device_kind != "cpu" else "fp32")
    gap, gcp = _RESNET50.get(key, _RESNET50[device_kind, "fp32"])
    family = next((f for f in sorted(_GIGA_MACS, key=len, reverse=True) if info.name.startswith(f)), "resnet50")
    return (gcp if info.head == "gcp" else gap) * _GIGA_MACS["resnet50"] / _GIGA_MACS[family]


def pipeline_seconds(images: float, device_kind: str, on_the_fly: bool) -> float:
    """The least time ``images`` take through the corruption or perturbation pipeline (0 where
    no figure was measured: the model bounds it)."""
    rate = PIPELINE.get((device_kind, on_the_fly))
    return images / rate if rate else 0.0


def attack_passes(attack: str, eps_count: int, steps: int | None, restarts: int, queries: int = QUERIES) -> float:
    """Forward-pass equivalents per image of one attack over ``eps_count`` budgets."""
    if not is_autoattack(attack):
        spec = attack_spec(attack)
        step_count = AttackSettings(steps=steps).steps_of(spec) or 1
        return eps_count * (GRADIENT_STEP * step_count * restarts + 1)
    total, share = 0.0, 1.0
    for _, component in stages(attack, restarts):
        if component.attack == "square":
            per_image = queries
        else:
            iterations = steps if steps is not None else 100
            per_image = GRADIENT_STEP * iterations * component.restarts * max(component.targets, 1) * component.eot
        total += share * per_image
        share = SURVIVE_APGD_CE
    return eps_count * total

"""The values that options take, in one module that imports nothing: `gcp-robust COMMAND --help`
lists them without loading torch, and each package takes its own values from here."""

from __future__ import annotations

PRECISIONS = ("bf16", "fp32")
IMAGENET_C_PROTOCOLS = ("imagecorruptions", "imagenet-c", "cifar10-c")  # generators of the 19 ImageNet-C corruptions
C_BAR_PROTOCOLS = ("imagenet-c-bar", "cifar10-c-bar")  # generators of ImageNet-C-bar / CIFAR-10-C-bar (Mintun et al.)
CORRUPTION_PROTOCOLS = IMAGENET_C_PROTOCOLS + C_BAR_PROTOCOLS
CORRUPTION_BACKENDS = ("native", "reference")
CORRUPTION_SOURCES = ("generated", "imagenet-c", "cifar10-c")
SHIFT_SOURCES = ("imagenet-a", "imagenet-r", "imagenet-sketch", "imagenetv2")  # natural distribution shifts
V2_VARIANTS = ("matched-frequency", "threshold0.7", "top-images")
DECODERS = ("pil", "device")
PERTURBATION_PROTOCOLS = ("imagenet-p", "cifar10-p")
VIDEO_SOURCES = ("generated", "imagenet-p", "cifar10-p")
ATTACK_NAMES = ("fgsm", "linf-pgd", "l2-pgd", "l2-cw", "linf-deepfool", "l2-deepfool", "autoattack", "autoattack-plus",
                "autoattack-rand", "apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
ATTACK_BACKENDS = ("foolbox", "native", "reference")
NORMS = ("linf", "l2")
QUERIES = 5000  # Square's queries, as in AutoAttack's standard version
LR_MODES = ("LRnorm", "LRfast", "LRadju", "cosine")
DEVICE_KINDS = ("h200", "cpu")  # what a sweep's estimate can assume
EXECUTORS = ("slurm", "local")

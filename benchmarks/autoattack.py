"""AutoAttack throughput: native vs the pyautoattack reference at equal settings, and native bf16
vs fp32 (GPU), with the robust accuracy of each, as ratios measured in one run.

Default: ResNet-50 GCP at 224 px and the CIFAR ResNet-20 on a GPU, the CIFAR ResNet-20 at 32 px
on the CPU (pretrained weights and real test images when the test data is there). The ε default
leaves the pretrained ResNet-20 partly robust, so every stage of the cascade has work to do.

    python benchmarks/autoattack.py
    python benchmarks/autoattack.py --model CIFAR10_ResNet20_GAP --batch 100 --eps 1/510 --queries 5000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attacks import load  # noqa: E402
from timing import synchronize  # noqa: E402

from robustbench_gcp.attacks import parse_epsilons  # noqa: E402
from robustbench_gcp.attacks.autoattack import QUERIES, AutoAttackSettings, cascade  # noqa: E402
from robustbench_gcp.attacks.rows import logits_function  # noqa: E402
from robustbench_gcp.rng import image_streams  # noqa: E402


def timed(fn, device: torch.device):
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - start


def reference(model, images, labels, eps: float, norm: str, settings: AutoAttackSettings) -> float:
    """Robust accuracy (%) of pyautoattack's standard version at the same settings."""
    from pyautoattack import AutoAttack

    from robustbench_gcp.attacks.autoattack import VERSIONS, configure_reference

    attack = AutoAttack(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, version="standard", seed=0,
                        device=images.device)
    attack.logger.disabled = True
    configure_reference(attack, VERSIONS["autoattack"][0], settings)  # 1 restart, 9 targets, the iterations
    attack.attacks_to_run = [c.attack for c in VERSIONS["autoattack"]]
    adversarial, _ = attack.run_standard_evaluation(images, labels, batch_size=len(images))
    with torch.no_grad():
        return float((model(adversarial).argmax(1) == labels).float().mean() * 100)


def measure(model_name: str, args, device: torch.device) -> None:
    args.model = model_name
    model, images, labels, origin = load(args, device)
    eps = parse_epsilons(args.eps)[0].value
    settings = AutoAttackSettings(norm=args.norm, steps=args.steps, queries=args.queries)
    rows = {}
    for label, autocast in [("native fp32", False), *([("native bf16", True)] if device.type == "cuda" else [])]:
        flags, seconds = timed(lambda autocast=autocast: cascade(
            "autoattack", logits_function(model, autocast), images, labels, eps,
            lambda cell: image_streams(0, range(len(images)), cell, 0, device), settings), device)
        rows[label] = (len(images) / seconds, float(flags["autoattack/square"].float().mean() * 100))
    robust, seconds = timed(lambda: reference(model, images, labels, eps, args.norm, settings), device)
    rows["reference (pyautoattack 0.2.0)"] = (len(images) / seconds, robust)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\nAutoAttack standard, {args.norm} eps {args.eps}, {args.steps or 100} iterations, {args.queries} "
          f"queries, {model_name}, {len(images)} images, {name}; {origin}\n")
    print("| variant | images/s | × reference | robust accuracy (%) |")
    print("|---|---|---|---|")
    base = rows["reference (pyautoattack 0.2.0)"][0]
    for label, (rate, accuracy) in rows.items():
        print(f"| {label} | {rate:.2f} | {rate / base:.2f} | {accuracy:.1f} |")
    if "native bf16" in rows:
        print(f"\nbf16 vs fp32: {rows['native bf16'][0] / rows['native fp32'][0]:.2f}× throughput, robust accuracy "
              f"{rows['native bf16'][1] - rows['native fp32'][1]:+.1f} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="default: resnet50_gcp and CIFAR10_ResNet20_GAP on a GPU, the latter on CPU")
    parser.add_argument("--batch", type=int, help="images (default: 64 on the CPU, 256 on a GPU)")
    parser.add_argument("--eps", default="1/510")
    parser.add_argument("--norm", choices=("linf", "l2"), default="linf")
    parser.add_argument("--steps", type=int, help="APGD and FAB iterations (default: 100)")
    parser.add_argument("--queries", type=int, default=QUERIES)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.batch = args.batch or (256 if device.type == "cuda" else 64)
    models = [args.model] if args.model else (
        ["resnet50_gcp", "CIFAR10_ResNet20_GAP"] if device.type == "cuda" else ["CIFAR10_ResNet20_GAP"])
    for model_name in models:
        measure(model_name, args, device)


if __name__ == "__main__":
    main()

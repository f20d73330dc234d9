"""PGD-10 throughput: native fp32, native bf16 (GPU) and foolbox LinfPGD, at equal settings.

Also reports how far bf16 robust accuracy is from fp32 (same images, same random starts).
Default: ResNet-50 GCP at 224 px on a GPU, CIFAR ResNet-20 at 32 px on the CPU (pretrained
weights and real test images when ROBUSTBENCH_GCP_TEST_DATA or ../shared/data has them).

    python benchmarks/attacks.py
    python benchmarks/attacks.py --model resnet50_gcp --batch 128 --eps 4/255
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corruptions import sample_images  # noqa: E402
from timing import median_seconds  # noqa: E402

import robustbench_gcp as rg  # noqa: E402
from robustbench_gcp.attacks import AttackSettings, parse_epsilons, run_attack  # noqa: E402
from robustbench_gcp.devices import prepare  # noqa: E402
from robustbench_gcp.rng import image_streams  # noqa: E402

DATA = Path(os.environ.get("ROBUSTBENCH_GCP_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def load(args, device: torch.device):
    """Model and a labelled batch: real CIFAR data and weights when available, else random."""
    weights = DATA / "cifar10_resnet_akamaster" / "resnet20-12fca82f.th"
    if args.model == "CIFAR10_ResNet20_GAP" and weights.is_file():
        from robustbench_gcp.data import balanced_subset, image_folder

        model = rg.create_model(args.model, checkpoint=weights)
        dataset = balanced_subset(image_folder(DATA / "cifar10_test_jpg" / "test", 32), args.batch, seed=0)
        images = torch.stack([dataset[i][0] for i in range(len(dataset))]).float() / 255
        labels = torch.tensor([dataset[i][1] for i in range(len(dataset))])
        origin = "pretrained weights, real CIFAR-10 images"
    else:
        model = rg.create_model(args.model.replace("CIFAR10_ResNet20_GAP", "cifar_resnet20_gap")).eval()
        size = model.architecture.input_size
        images = sample_images(args.batch, size)
        with torch.no_grad():
            labels = model(images).argmax(1)  # random weights: attack the model's own predictions
        origin = "random weights, synthetic images labelled by the model"
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return prepare(model, device), images.to(device), labels.to(device), origin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--eps", default="4/255")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.model = args.model or ("resnet50_gcp" if device.type == "cuda" else "CIFAR10_ResNet20_GAP")
    args.batch = args.batch or (128 if device.type == "cuda" else 200)
    model, images, labels, origin = load(args, device)
    eps = [parse_epsilons(args.eps)[0][1]]
    common = dict(steps=args.steps, rel_stepsize=2.5 / args.steps)

    def generators():
        return image_streams(0, range(len(images)), "linf-pgd", 0, device)

    variants = {"native fp32": AttackSettings(backend="native", **common)}
    if device.type == "cuda":
        variants["native bf16"] = AttackSettings(backend="native", autocast=True, **common)
    variants["foolbox LinfPGD"] = AttackSettings(backend="foolbox", **common)
    rates, robust = {}, {}
    for label, settings in variants.items():
        def attack(settings=settings):
            torch.manual_seed(0)
            return run_attack("linf-pgd", model, images, labels, eps, settings, generators())

        rates[label] = len(images) / median_seconds(attack, device, repeats=args.repeats, warmup=1)
        adversarial = attack()[0]
        with torch.no_grad():
            robust[label] = float((model(adversarial).argmax(1) == labels).float().mean() * 100)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"PGD-{args.steps} Linf eps {args.eps}, {args.model}, batch {args.batch}, {name}; {origin}\n")
    print("| variant | images/s | × foolbox | robust accuracy (%) |")
    print("|---|---|---|---|")
    for label in variants:
        print(f"| {label} | {rates[label]:.0f} | {rates[label] / rates['foolbox LinfPGD']:.2f} | {robust[label]:.1f} |")
    if "native bf16" in rates:
        print(f"\nbf16 vs fp32: {rates['native bf16'] / rates['native fp32']:.2f}× throughput, "
              f"robust accuracy {robust['native bf16'] - robust['native fp32']:+.1f} points")


if __name__ == "__main__":
    main()

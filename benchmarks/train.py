"""Training images/s, GAP vs GCP, in one run: ResNet-50 at 224 px on a GPU (bf16, channels_last),
a CIFAR ResNet-20 at 32 px on the CPU. Synthetic batches: speed does not depend on the data.

    python benchmarks/train.py
    python benchmarks/train.py --models resnet50_gap,resnet50_gcp --batch 256
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_seconds  # noqa: E402

import robustbench_gcp as rg  # noqa: E402
from robustbench_gcp.devices import as_model_input, prepare  # noqa: E402


def rate(name: str, batch: int, device: torch.device, repeats: int) -> float:
    model = prepare(rg.create_model(name), device).train()
    size = model.architecture.input_size
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    images = as_model_input(torch.rand(batch, 3, size, size, device=device))
    labels = torch.randint(0, model.architecture.num_classes, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = F.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return batch / median_seconds(step, device, repeats=repeats, warmup=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    default = "resnet50_gap,resnet50_gcp" if gpu else "cifar_resnet20_gap,cifar_resnet20_gcp"
    models = (args.models or default).split(",")
    batch = args.batch or (256 if gpu else 128)
    rates = {name: rate(name, batch, device, args.repeats) for name in models}
    print(f"training step, batch {batch}, {torch.cuda.get_device_name(device) if gpu else 'CPU'}"
          f"{', bf16 autocast, channels_last' if gpu else ''}\n")
    print("| model | images/s | × first |")
    print("|---|---|---|")
    for name, value in rates.items():
        print(f"| {name} | {value:.0f} | {value / rates[models[0]]:.2f} |")


if __name__ == "__main__":
    main()

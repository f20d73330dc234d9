"""Forward+backward cost of the GCP head against the GAP head and an eigendecomposition root.

Prints a markdown table per device: ms per batch, ratio to the iSQRT closed-form head and peak
GPU memory; then, with --train-step, the share of a whole ResNet-50 GCP training step that the
head (1×1 reduction from 2048 channels + iSQRT-COV + fc) takes.

    python benchmarks/gcp_head.py                   # CPU (and GPU when present), batch 128
    python benchmarks/gcp_head.py --batch 16 --train-step
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import default_devices, median_seconds, peak_memory_mib  # noqa: E402

import robustbench_gcp as rg  # noqa: E402
from robustbench_gcp.models.gcp import _newton_schulz, covariance, upper_triangle  # noqa: E402


def _autograd_isqrt(features: Tensor) -> Tensor:
    """iSQRT-COV differentiated by autograd through the iterations (no closed-form backward)."""
    cov = covariance(features.float())
    trace = cov.diagonal(dim1=1, dim2=2).sum(-1) + 1e-5
    root, _, _ = _newton_schulz(cov / trace[:, None, None], 5)
    return upper_triangle(root * trace.sqrt()[:, None, None])


def _eigh_sqrt(features: Tensor) -> Tensor:
    """Exact square root by eigendecomposition (what iSQRT avoids)."""
    values, vectors = torch.linalg.eigh(covariance(features.float()))
    root = vectors @ torch.diag_embed(values.clamp_min(0).sqrt()) @ vectors.mT
    return upper_triangle(root)


def _heads(channels: int, classes: int) -> dict[str, tuple[Callable[[Tensor], Tensor], nn.Module]]:
    dim = rg.representation_dim(channels)
    closed = rg.CovarianceSqrt()
    return {
        "GCP iSQRT (closed-form backward)": (closed, nn.Linear(dim, classes)),
        "GCP iSQRT (autograd backward)": (_autograd_isqrt, nn.Linear(dim, classes)),
        "GCP eigendecomposition": (_eigh_sqrt, nn.Linear(dim, classes)),
        "GAP": (lambda x: x.mean(dim=(2, 3)), nn.Linear(channels, classes)),
    }


def bench_heads(device: torch.device, batch: int, channels: int, sizes: list[int], repeats: int) -> None:
    print(f"\n### Heads on {device} (batch {batch}, {channels} channels, fwd+bwd)\n")
    print("| map | head | ms / batch | × closed-form | peak MiB |")
    print("|---|---|---|---|---|")
    for size in sizes:
        features = torch.randn(batch, channels, size, size, device=device).relu_().requires_grad_(True)
        steps = {}
        for name, (pool, fc) in _heads(channels, 1000).items():
            fc = fc.to(device)

            def step(pool=pool, fc=fc, features=features) -> None:
                fc(pool(features)).sum().backward()

            step()  # warm every head first, so the first one measured pays no start-up cost
            steps[name] = step
        results = {name: (median_seconds(step, device, repeats), peak_memory_mib(step, device))
                   for name, step in steps.items()}
        base = results["GCP iSQRT (closed-form backward)"][0]
        for name, (seconds, memory) in results.items():
            mem = f"{memory:.0f}" if memory is not None else "n/a"
            print(f"| {size}×{size} | {name} | {seconds * 1e3:.2f} | {seconds / base:.2f} | {mem} |")


def bench_train_step(device: torch.device, batch: int, repeats: int) -> None:
    """Share of a ResNet-50 GCP training step spent in its head (reduction + iSQRT-COV + fc)."""
    model = rg.create_model("resnet50_gcp").to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images = torch.rand(batch, 3, 224, 224, device=device).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    with torch.no_grad():
        features = model.features(images[:1])
    head_input = torch.randn(batch, *features.shape[1:], device=device).relu_()
    head_input = head_input.to(memory_format=torch.channels_last).requires_grad_(True)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(**autocast):
            loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    def head_step() -> None:
        with torch.autocast(**autocast):
            x = model.layer_reduce_relu(model.layer_reduce_bn(model.layer_reduce(head_input)))
            logits = model.fc(model.representation(x))
        logits.float().sum().backward()

    step = median_seconds(train_step, device, repeats)
    head = median_seconds(head_step, device, repeats)
    print(f"\n### ResNet-50 GCP training step on {device} (batch {batch}, bf16 autocast on GPU)\n")
    print("| whole step ms | head fwd+bwd ms | head share | images/s |")
    print("|---|---|---|---|")
    print(f"| {step * 1e3:.1f} | {head * 1e3:.1f} | {head / step:.1%} | {batch / step:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--sizes", type=int, nargs="+", default=[14, 7])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: CPU and the GPU when present")
    parser.add_argument("--train-step", action="store_true", help="also measure the head's share of a train step")
    parser.add_argument("--train-batch", type=int, default=None, help="default: 128 on GPU, 8 on CPU")
    args = parser.parse_args()
    devices = [torch.device(args.device)] if args.device else default_devices()
    print(f"torch {torch.__version__}; devices: {', '.join(str(d) for d in devices)}")
    for device in devices:
        if device.type == "cuda":
            print(f"GPU: {torch.cuda.get_device_name(device)}")
        bench_heads(device, args.batch, args.channels, args.sizes, args.repeats)
        if args.train_step:
            bench_train_step(device, args.train_batch or (128 if device.type == "cuda" else 8), args.repeats)


if __name__ == "__main__":
    main()

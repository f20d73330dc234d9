"""CUDA behaviour of the GCP layer and the models (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

import robustbench_gcp as rg

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_gcp_layer_on_cuda_matches_cpu():
    features = torch.randn(4, 64, 7, 7, dtype=torch.float64).relu()
    pool = rg.CovarianceSqrt()
    torch.testing.assert_close(pool(features.cuda()).cpu(), pool(features), rtol=1e-9, atol=1e-9)
    grad_input = features.clone().requires_grad_(True)
    pool(grad_input).sum().backward()
    grad_cuda = features.cuda().requires_grad_(True)
    pool(grad_cuda).sum().backward()
    torch.testing.assert_close(grad_cuda.grad.cpu(), grad_input.grad, rtol=1e-8, atol=1e-8)


def test_bf16_autocast_keeps_the_square_root_in_float32_on_cuda():
    model = rg.create_model("resnet50_gcp").cuda().eval()
    seen = []
    model.representation.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    images = torch.rand(8, 3, 224, 224, device="cuda")
    with torch.no_grad(), torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        logits = model(images)
    assert seen == [torch.float32] and torch.isfinite(logits).all()
    with torch.no_grad():
        reference = model(images)
    assert (logits.float().argmax(1) == reference.argmax(1)).float().mean() >= 0.75


def test_checkpoint_saved_on_cuda_loads_on_cpu(tmp_path):
    source = rg.create_model("cifar_resnet20_gcp").cuda()
    path = tmp_path / "cuda.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()},
                "best_acc1": torch.tensor(50.0, device="cuda"), "epoch": 1}, path)
    model = rg.create_model("cifar_resnet20_gcp", checkpoint=path)
    assert next(model.parameters()).device.type == "cpu"

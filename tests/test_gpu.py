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


def test_every_corruption_runs_on_cuda_like_on_cpu():
    from robustbench_gcp.corruptions import corrupt, names

    images = torch.rand(4, 3, 224, 224)
    for name in names("all"):
        out = corrupt(images.cuda(), name, 3, protocol="imagecorruptions",
                      generator=torch.Generator(device="cuda").manual_seed(0))
        assert out.is_cuda and out.shape == images.shape and 0 <= out.min() and out.max() <= 1
        if name in ("brightness", "contrast", "saturate", "pixelate", "gaussian_blur", "defocus_blur", "zoom_blur"):
            cpu = corrupt(images, name, 3, protocol="imagecorruptions")
            torch.testing.assert_close(out.cpu(), cpu, rtol=0, atol=2e-3)
    generator = torch.Generator(device="cuda").manual_seed(0)
    jpeg = corrupt(images.cuda(), "fog", 2, protocol="imagenet-c", generator=generator)
    assert jpeg.is_cuda


def test_native_pgd_runs_in_bf16_on_cuda():
    from robustbench_gcp.attacks import AttackSettings, run_attack

    model = rg.create_model("cifar_resnet20_gcp").cuda().eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    images = torch.rand(8, 3, 32, 32, device="cuda")
    labels = model(images).argmax(1)
    adversarial = run_attack("linf-pgd", model, images, labels, [0.0, 4 / 255],
                             AttackSettings(steps=3, autocast=True),
                             [torch.Generator(device="cuda").manual_seed(i) for i in range(16)])
    assert adversarial.shape == (2, 8, 3, 32, 32) and torch.equal(adversarial[0], images)
    assert (adversarial[1] - images).abs().max() <= 4 / 255 + 1e-6

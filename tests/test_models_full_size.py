"""Every ImageNet architecture at full size: an original-format file round-trips exactly."""

from __future__ import annotations

import pytest
import torch

import robustbench_gcp as rg

IMAGENET_ARCHITECTURES = [name for name in rg.list_models() if not name.startswith("cifar_")]


@pytest.mark.slow
@pytest.mark.parametrize("name", IMAGENET_ARCHITECTURES)
def test_original_format_round_trip_at_224(tmp_path, name):
    torch.manual_seed(0)
    source = rg.create_model(name).eval()
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        expected = source(images)
    assert expected.shape == (2, 1000) and torch.isfinite(expected).all()
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 100, "arch": name, "best_acc1": torch.tensor(70.0),
                "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    loaded = rg.create_model(name, checkpoint=path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), expected, rtol=0, atol=0)

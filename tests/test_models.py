"""The zoo: layouts of the original release, aliases, checkpoint loading and its errors."""

from __future__ import annotations

import pytest
import torch

import robustbench_gcp as rg
from robustbench_gcp.models.catalog import parameter_count
from robustbench_gcp.models.zoo import _signature

# Parameter counts of the original constructors (instantiated from the release's code).
ORIGINAL_PARAMS_M = {
    "resnet18_gap": 11.69, "resnet18_gcp": 44.21, "resnet34_gap": 21.80, "resnet34_gcp": 54.31,
    "resnet50_gap": 25.56, "resnet50_gcp": 56.93, "resnet50_gcp128": 32.03, "resnet101_gap": 44.55,
    "resnet101_gcp": 75.92, "mobilenet_v2_gap": 3.50, "mobilenet_v2_gcp": 35.45,
    "mobilenet_v2_gcp128": 10.64, "shufflenet_v2_x1_0_gap": 2.28, "shufflenet_v2_x1_0_gcp": 34.41,
}
ORIGINAL_KEY_COUNTS = {"resnet50_gcp": 326, "resnet101_gcp": 632, "resnet18_gcp": 128,
                       "mobilenet_v2_gcp": 320, "shufflenet_v2_x1_0_gcp": 344}


@pytest.mark.parametrize("name, millions", sorted(ORIGINAL_PARAMS_M.items()))
def test_parameter_counts_equal_the_original(name, millions):
    assert round(parameter_count(name) / 1e6, 2) == millions


@pytest.mark.parametrize("name, count", sorted(ORIGINAL_KEY_COUNTS.items()))
def test_state_dict_sizes_equal_the_original(name, count):
    assert len(_signature(name)) == count


def test_gcp_resnet_layout():
    sig = _signature("resnet50_gcp")
    assert sig["layer_reduce.weight"] == (256, 2048, 1, 1)
    assert sig["layer_reduce_bn.running_var"] == (256,)
    assert sig["fc.weight"] == (1000, 32896) and sig["fc.bias"] == (1000,)
    assert sig["layer4.0.downsample.0.weight"] == (2048, 1024, 1, 1)
    assert "layer4.2.bn3.num_batches_tracked" in sig
    assert _signature("resnet50_gcp128")["fc.weight"] == (1000, 8256)
    assert _signature("resnet18_gcp")["layer_reduce.weight"] == (256, 512, 1, 1)
    gap = _signature("resnet50_gap")
    assert set(sig) - set(gap) == {f"layer_reduce_bn.{k}" for k in
                                   ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
                                   } | {"layer_reduce.weight"}


def test_gcp_mobilenet_and_shufflenet_layouts():
    mobile = _signature("mobilenet_v2_gcp")
    assert mobile["features.0.0.weight"] == (32, 3, 3, 3)
    assert mobile["features.1.conv.1.weight"] == (16, 32, 1, 1)
    assert mobile["features.17.conv.2.weight"] == (320, 960, 1, 1)
    assert mobile["features.18.0.weight"] == (1280, 320, 1, 1)
    assert mobile["dimension_reduction.0.weight"] == (256, 1280, 1, 1)
    assert mobile["classifier.1.weight"] == (1000, 32896)
    assert _signature("mobilenet_v2_gcp128")["classifier.1.weight"] == (1000, 8256)
    assert _signature("mobilenet_v2_gap")["classifier.1.weight"] == (1000, 1280)
    shuffle = _signature("shufflenet_v2_x1_0_gcp")
    assert shuffle["stage2.0.branch1.0.weight"] == (24, 1, 3, 3)
    assert shuffle["stage4.3.branch2.6.num_batches_tracked"] == ()
    assert shuffle["dimension_reduction.0.weight"] == (256, 1024, 1, 1)
    assert shuffle["fc.weight"] == (1000, 32896)


def test_normalisation_is_not_part_of_the_state_dict():
    assert not any("normalize" in key for name in rg.list_models() for key in _signature(name))


def test_aliases_and_records_build_the_same_architecture():
    assert rg.architecture_info("resnet50_mpncov").name == "resnet50_gcp"
    assert rg.architecture_info("mobilenet_v2_mpncov_128").name == "mobilenet_v2_gcp128"
    assert rg.architecture_info("shufflenet_v2_mpncov_x1_0").name == "shufflenet_v2_x1_0_gcp"
    assert rg.architecture_info("resnet101").name == "resnet101_gap"
    with torch.device("meta"):
        model = rg.create_model("MobileNetV2_GCP_LRadju_128")
    assert model.architecture.name == "mobilenet_v2_gcp128"


def test_checkpoint_table_has_the_40_released_models():
    imagenet = [r for r in rg.CHECKPOINTS.values() if r.dataset == "imagenet"]
    assert len(imagenet) == 40
    record = rg.CHECKPOINTS["ResNet50_GCP_LRnorm"]
    assert (record.architecture, record.top1, record.top5, record.filename) == (
        "resnet50_gcp", 78.56, 94.09, "ResNet50_GCP_LRnorm.pth.tar")
    assert rg.CHECKPOINTS["ShuffleNetV2_GAP_LRfast"].top1 == 66.13
    assert rg.CHECKPOINTS["MobileNetV2_GCP_LRadju_128"].reduction_dim == 128
    assert {r.lr_mode for r in imagenet} == {"LRnorm", "LRfast", "LRadju"}


def test_class_count_of_a_classifier_without_a_final_linear_layer():
    import torchvision
    from torch import nn

    from robustbench_gcp.evaluate.common import EvaluationError, model_classes

    assert model_classes(torchvision.models.squeezenet1_0(num_classes=7)) == 7  # a 1×1 conv, then global pooling
    assert model_classes(rg.build_architecture("torchvision:squeezenet1_0", num_classes=7)) == 7
    assert model_classes(rg.build_architecture("cifar_resnet20_gap", num_classes=7)) == 7
    with pytest.raises(EvaluationError, match="cannot tell how many classes Sequential outputs"):
        model_classes(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()))


def test_unknown_name_suggests_close_ones():
    with pytest.raises(rg.UnknownModelError, match="resnet50_gcp"):
        rg.create_model("resnet50_gpc")


@pytest.mark.parametrize(
    "name, size, feature_map",
    [("resnet18_gcp", 224, (512, 14, 14)), ("resnet18_gap", 224, (512, 7, 7))],
)
def test_gcp_resnet_keeps_14x14_maps(name, size, feature_map):
    model = rg.create_model(name).eval()
    with torch.no_grad():
        assert model.features(torch.rand(1, 3, size, size)).shape[1:] == feature_map


@pytest.mark.parametrize(
    "name, size",
    [("resnet18_gcp", 64), ("resnet18_gap", 64), ("mobilenet_v2_gcp128", 64),
     ("shufflenet_v2_x1_0_gcp", 64), ("cifar_resnet20_gcp", 32), ("cifar_resnet20_gap", 32)],
)
def test_fabricated_original_checkpoint_reproduces_the_saving_model(tmp_path, name, size):
    torch.manual_seed(0)
    source = rg.create_model(name, num_classes=7)
    with torch.no_grad():  # training-like BN statistics, so a wrong load would show
        source.train()(torch.rand(8, 3, size, size))
    source.eval()
    images = torch.rand(2, 3, size, size)
    with torch.no_grad():
        expected = source(images)
    optimizer = torch.optim.SGD(source.parameters(), lr=0.1, momentum=0.9)
    path = tmp_path / "model_best.pth.tar"
    torch.save({
        "epoch": 30, "arch": name,
        "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()},
        "best_acc1": torch.tensor(71.5), "optimizer": optimizer.state_dict(),
    }, path)
    loaded = rg.create_model(name, num_classes=7, checkpoint=path)
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), expected, rtol=0, atol=0)
    info = rg.load_checkpoint(rg.create_model(name, num_classes=7), path)
    assert (info.epoch, info.arch, info.best_acc1) == (30, name, pytest.approx(71.5))


def test_bare_state_dict_loads(tmp_path):
    source = rg.create_model("cifar_resnet20_gcp")
    path = tmp_path / "bare.pt"
    torch.save(source.state_dict(), path)
    assert rg.load_checkpoint(rg.create_model("cifar_resnet20_gcp"), path).epoch is None


def test_real_cifar_checkpoint_with_cuda_tensors_loads_strictly(resnet20_file):
    model = rg.create_model("CIFAR10_ResNet20_GAP", checkpoint=resnet20_file)
    assert sum(p.numel() for p in model.parameters()) == 269_722
    info = rg.load_checkpoint(model, resnet20_file)
    assert info.sha256.startswith("12fca82f") and info.best_acc1 == pytest.approx(91.78, abs=0.01)


def test_checkpoint_of_another_architecture_names_the_right_one(resnet44_file):
    with pytest.raises(rg.CheckpointError) as error:
        rg.create_model("cifar_resnet20_gap", checkpoint=resnet44_file)
    message = str(error.value)
    assert "unexpected keys (144)" in message and "cifar_resnet44_gap" in message


def test_class_count_mismatch_is_reported_as_a_shape_mismatch(tmp_path):
    path = tmp_path / "ten.pt"
    torch.save(rg.create_model("cifar_resnet20_gcp").state_dict(), path)
    with pytest.raises(rg.CheckpointError, match=r"linear.weight: file \(10, 2080\) vs model \(100, 2080\)"):
        rg.create_model("cifar_resnet20_gcp", num_classes=100, checkpoint=path)


@pytest.mark.parametrize("content", [b"not a checkpoint", b""])
def test_unreadable_file_gives_a_clear_error(tmp_path, content):
    path = tmp_path / "broken.pth.tar"
    path.write_bytes(content)
    with pytest.raises(rg.CheckpointError, match="not a readable PyTorch checkpoint"):
        rg.create_model("cifar_resnet20_gap", checkpoint=path)

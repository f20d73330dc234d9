"""Every device path on CUDA (skipped without a GPU): the GCP layer, corruptions, nvJPEG decode,
chunked and bf16 evaluation, PGD in bf16, DDP training on one GPU, and ``corrupt`` on the GPU.
Measured differences are printed (``pytest -s``) as well as checked."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import shared_path

import robustbench_gcp as rg

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustbench_gcp.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


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


def _photos(count: int, size: int = 224) -> torch.Tensor:
    from PIL import Image

    from robustbench_gcp.data.folders import eval_transform

    paths = sorted(shared_path("imagenet_val_acuity/data").glob("*.JPEG"))[:count]
    transform = eval_transform(size)
    return torch.stack([transform(Image.open(p).convert("RGB")) for p in paths]).float() / 255


@pytest.mark.parametrize("protocol", ["imagecorruptions", "imagenet-c"])
def test_every_corruption_on_cuda_matches_the_cpu(protocol):
    """The same per-image streams on both devices: what differs is float arithmetic (and, for
    imagenet-c, nvJPEG against libjpeg in the storage step)."""
    from robustbench_gcp.corruptions import corrupt, names
    from robustbench_gcp.rng import image_streams

    images = _photos(4)
    for name in names("all"):
        streams = image_streams(0, range(4), name, 3)
        cpu = corrupt(images, name, 3, protocol=protocol, generator=streams)
        cuda = corrupt(images.cuda(), name, 3, protocol=protocol, generator=streams.to("cuda"))
        assert cuda.is_cuda and cuda.shape == images.shape
        difference = (cuda.cpu() - cpu).abs()
        far = float((difference > 2 / 255).float().mean())
        print(f"{protocol} {name}: mean |cuda-cpu| {float(difference.mean()) * 255:.3f} levels, "
              f"share > 2 levels {100 * far:.3f} %")
        assert float(difference.mean()) < 1.5 / 255 and far < 0.02, name


def test_nvjpeg_decode_agrees_with_pil():
    from PIL import Image

    from robustbench_gcp.data.decode import EncodedFiles, collate_encoded, decode_batch
    from robustbench_gcp.data.folders import eval_geometry

    paths = sorted(shared_path("imagenet_val_acuity/data").glob("*.JPEG"))[:128]
    geometry = eval_geometry(224)
    files = EncodedFiles([(str(p), 0) for p in paths])
    decoded, readable = decode_batch(collate_encoded(list(files))[0], geometry, 224, torch.device("cuda"))
    assert decoded.is_cuda and readable.all()
    pil = torch.stack([geometry.pil_transform()(Image.open(p).convert("RGB")) for p in paths])
    difference = (decoded.cpu().int() - pil.int()).abs().float()
    print(f"nvJPEG + device resize vs PIL on {len(paths)} photos: mean {difference.mean():.3f} levels, "
          f"max {difference.max():.0f}, share > 2 levels {100 * (difference > 2).float().mean():.3f} %")
    # nvJPEG's inverse DCT and chroma upsampling are not libjpeg's: about 0.8 levels on average,
    # 8 % of values more than 2 levels off (strong edges in the chroma); docs/eval-corruption.md states it
    assert difference.mean() < 1.5 and (difference > 2).float().mean() < 0.15


def test_device_decode_changes_the_pretrained_resnet20_error_little(tmp_path):
    """The accuracy cost of nvJPEG against PIL on 10,000 real CIFAR-10 test JPEGs."""
    from robustbench_gcp.evaluate.corruption import CorruptionEvalConfig, evaluate_corruptions

    errors = {}
    for decode in ("pil", "device"):
        config = CorruptionEvalConfig(
            model="CIFAR10_ResNet20_GAP", checkpoint=shared_path("cifar10_resnet_akamaster/resnet20-12fca82f.th"),
            data=shared_path("cifar10_test_jpg/test"), corruptions=["contrast"], severities=[1], batch_size=500,
            device="cuda", precision="fp32", db=tmp_path / f"{decode}.sqlite", decode=decode, workers=4)
        summary = evaluate_corruptions(config, progress=False)
        errors[decode] = (summary["clean_error"], summary["errors"]["contrast"][0])
    print(f"pretrained ResNet-20 on 10,000 CIFAR-10 JPEGs, (clean, contrast-1) error %: PIL {errors['pil']}, "
          f"nvJPEG {errors['device']}")
    assert all(abs(a - b) <= 0.5 for a, b in zip(errors["pil"], errors["device"]))


def test_jpeg_storage_step_on_cuda_is_libjpeg_bit_for_bit():
    from torchvision.io import decode_jpeg, encode_jpeg

    from robustbench_gcp.corruptions.jpeg import jpeg_round_trip_exact
    from robustbench_gcp.corruptions.ops import quiet_torchvision_codecs

    images = (_photos(32) * 255).round().to(torch.uint8)
    with quiet_torchvision_codecs():
        expected = torch.stack([decode_jpeg(encode_jpeg(image, quality=85)) for image in images])
    assert torch.equal(jpeg_round_trip_exact(images.cuda(), 85).cpu(), expected)


def test_corruption_staged_on_a_side_stream_equals_the_sequential_loop():
    """The overlapped loop of eval-corruption (corrupt batch k+1 on a side stream while the model
    classifies batch k) gives exactly the logits of corrupting and classifying in turn."""
    from robustbench_gcp.corruptions import corrupt
    from robustbench_gcp.data.batches import staged
    from robustbench_gcp.rng import image_streams

    images = _photos(96).cuda()
    model = rg.create_model("cifar_resnet20_gcp").cuda().eval()
    batches = [(images[i : i + 32], torch.arange(i, i + 32, device="cuda")) for i in range(0, 96, 32)]

    def work(batch):
        x, index = batch
        streams = image_streams(0, index, "shot_noise", 3, "cuda")
        return corrupt(x, "shot_noise", 3, protocol="imagenet-c", generator=streams, check_input=False)

    with torch.inference_mode():
        overlapped = [model(x) for x in staged(batches, work, torch.device("cuda"))]
        sequential = [model(work(batch)) for batch in batches]
    assert all(torch.equal(a, b) for a, b in zip(overlapped, sequential))


def _cells(db) -> dict:
    from robustbench_gcp.results import ResultStore

    store = ResultStore(db)
    (run,) = store.runs("corruption")
    return {key: (c.n, c.top1_errors, c.top5_errors) for key, c in store.cells(run).items()}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_chunked_eval_on_cuda_matches_one_chunk(tmp_path, precision):
    from robustbench_gcp.evaluate.corruption import CorruptionEvalConfig, evaluate_corruptions

    def run(db: str, chunk: int | None) -> dict:
        config = CorruptionEvalConfig(
            model="CIFAR10_ResNet20_GAP", checkpoint=shared_path("cifar10_resnet_akamaster/resnet20-12fca82f.th"),
            data=shared_path("cifar10_test_jpg/test"), limit=500, corruptions=["gaussian_noise", "fog", "glass_blur"],
            severities=[3], batch_size=64, device="cuda", precision=precision, db=tmp_path / db, chunk_size=chunk,
            workers=2)
        summary = evaluate_corruptions(config, progress=False)
        assert 10 <= summary["clean_error"] <= 30
        return _cells(tmp_path / db)

    whole, chunked = run("whole.sqlite", None), run("chunked.sqlite", 77)  # 77: rounded up to two batches
    print(f"{precision}: one chunk {whole}; chunks of 128 {chunked}")
    assert chunked == whole


def test_native_pgd_runs_in_bf16_on_cuda():
    from robustbench_gcp.attacks import AttackSettings, run_attack
    from robustbench_gcp.rng import image_streams

    model = rg.create_model("cifar_resnet20_gcp").cuda().eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    images = torch.rand(8, 3, 32, 32, device="cuda")
    labels = model(images).argmax(1)
    adversarial = run_attack("linf-pgd", model, images, labels, [0.0, 4 / 255],
                             AttackSettings(steps=3, autocast=True), image_streams(0, range(16), "pgd", 0, "cuda"))
    assert adversarial.shape == (2, 8, 3, 32, 32) and torch.equal(adversarial[0], images)
    assert (adversarial[1] - images).abs().max() <= 4 / 255 + 1e-6


@pytest.mark.parametrize("norm, eps", [("linf", 1 / 510), ("l2", 0.1)])
def test_autoattack_on_cuda_agrees_with_the_cpu_and_runs_in_bf16(resnet20, cifar_test_dir, norm, eps):
    from conftest import labelled_cifar

    from robustbench_gcp.attacks.autoattack import AutoAttackSettings, cascade
    from robustbench_gcp.attacks.rows import logits_function
    from robustbench_gcp.rng import image_streams

    images, labels = labelled_cifar(cifar_test_dir, 64)
    settings = AutoAttackSettings(norm=norm, steps=20, queries=200)
    last = {}
    for device, autocast in (("cpu", False), ("cuda", False), ("cuda", True)):
        model = copy.deepcopy(resnet20).to(device)
        flags = cascade("autoattack", logits_function(model, autocast), images.to(device), labels.to(device), eps,
                        lambda cell, device=device: image_streams(0, range(len(images)), cell, 0, device), settings)
        last[device, autocast] = flags["autoattack/square"].cpu()
    differ = int((last["cuda", False] != last["cpu", False]).sum())
    differ_bf16 = int((last["cuda", True] != last["cuda", False]).sum())
    print(f"AutoAttack {norm} {eps:.4f}: CUDA vs CPU {differ} of 64 flags differ, bf16 vs fp32 {differ_bf16}; robust "
          f"{int(last['cpu', False].sum())} / {int(last['cuda', False].sum())} / {int(last['cuda', True].sum())}")
    assert differ <= 2 and differ_bf16 <= 6


def test_ddp_training_step_on_one_gpu_with_torchrun(tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", "29547",
                "-m", "robustbench_gcp.cli", "train", "--model", "cifar_resnet20_gcp", "--data", "builtin",
                "--epochs", "1", "--batch-size", "128", "--device", "cuda", "--out", str(tmp_path / "train"),
                "--quiet"]
    result = subprocess.run(launcher, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "4"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "train" / "log.jsonl").is_file()


def test_corrupt_on_cuda_writes_readable_files_close_to_the_cpu(tmp_path):
    from PIL import Image

    data = tmp_path / "data" / "n01440764"
    data.mkdir(parents=True)
    for path in sorted(shared_path("imagenet_val_acuity/data").glob("*.JPEG"))[:16]:
        (data / path.name).symlink_to(path)
    for device in ("cuda", "cpu"):
        result = cli("corrupt", "--data", str(tmp_path / "data"), "--out", str(tmp_path / device), "--corruptions",
                     "fog,glass_blur", "--severities", "2", "--device", device, "--quiet")
        assert result.returncode == 0, result.stderr
    for name in ("fog", "glass_blur"):
        files = sorted((tmp_path / "cuda" / name / "2" / "n01440764").iterdir())
        assert len(files) == 16
        gpu = torch.stack([torch.from_numpy(np.asarray(Image.open(f))) for f in files]).float()
        cpu = torch.stack([torch.from_numpy(np.asarray(Image.open(
            tmp_path / "cpu" / name / "2" / "n01440764" / f.name))) for f in files]).float()
        print(f"corrupt {name}: mean |cuda-cpu| {float((gpu - cpu).abs().mean()):.3f} levels")
        assert float((gpu - cpu).abs().mean()) < 2.0


def test_perturbation_sequences_on_cuda_match_the_cpu_and_eval_runs_in_bf16(cifar_photos, resnet20_file, tmp_path):
    from robustbench_gcp.perturbations import names, perturb_to_uint8, sequence_streams

    for protocol, images in (("cifar10-p", cifar_photos[:8]),
                             ("imagenet-p", torch.nn.functional.interpolate(cifar_photos[:4], size=352))):
        for name in names("all"):
            index = torch.arange(len(images))
            cpu = perturb_to_uint8(images, name, protocol=protocol, difficulty=2,
                                   generator=sequence_streams(0, index, name, 2, torch.device("cpu")))
            cuda = perturb_to_uint8(images.cuda(), name, protocol=protocol, difficulty=2,
                                    generator=sequence_streams(0, index, name, 2, torch.device("cuda"))).cpu()
            difference = (cpu.int() - cuda.int()).abs()
            print(f"{protocol} {name}: mean {difference.float().mean():.4f}, max {difference.max()}")
            assert difference.float().mean() < 0.05 and difference.max() <= 2 or name == "spatter", name
    root = shared_path("cifar10_test_jpg/test")
    result = cli("eval-perturbation", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file),
                 "--data", str(root), "--limit", "200", "--difficulties", "1,2", "--device", "cuda", "--quiet",
                 "--db", str(tmp_path / "r.sqlite"), "--json", str(tmp_path / "s.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    import json

    summary = json.loads((tmp_path / "s.json").read_text())
    flips = summary["flip_probability"]
    assert len(flips) == 10 and all(list(by) == ["1", "2"] and all(0 < v < 1 for v in by.values())
                                    for by in flips.values())
    assert all(0 < value < 1 for value in summary["flip_probability_summed"].values())

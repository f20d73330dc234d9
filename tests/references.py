"""Reference outcomes recorded once: what pyautoattack, foolbox and imagecorruptions give on fixed inputs.

The native attacks and corruptions are checked against these packages. Running them live takes
most of an hour on two cores (AutoAttack alone over 20 minutes), so each case runs its reference
once, on fixed real inputs, and stores the outcomes in ``tests/baselines/references/<case>.json``
with the versions of the packages that made them and a fingerprint of the inputs. The tests
compare the native code with the records in seconds; the ``reference`` tests (``tox -e
reference``) run the packages live and fail when they no longer reproduce a record.

    python tests/record_references.py --write [CASE ...]   # rerun the references, rewrite the records

A case's outcomes are JSON: per-sample flags as strings of 0/1 (``flag_string``), or numbers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from conftest import DATA_ROOT, labelled_cifar, run_cli_in_process, shared_path

RECORDS = Path(__file__).resolve().parent / "baselines" / "references"


# ---- inputs -------------------------------------------------------------------------------------

@cache
def resnet20() -> torch.nn.Module:
    import robustbench_gcp as rg

    return rg.create_model("CIFAR10_ResNet20_GAP", checkpoint=resnet20_file()).eval()


def resnet20_file() -> Path:
    return shared_path("cifar10_resnet_akamaster/resnet20-12fca82f.th")


def cifar_dir() -> Path:
    return shared_path("cifar10_test_jpg/test")


@cache
def cifar(limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The class-balanced CIFAR-10 test photos the attack tests use (float in [0, 1]) and labels."""
    return labelled_cifar(cifar_dir(), limit)


@cache
def imagenet_photos() -> torch.Tensor:
    """The conftest fixture's 24 ImageNet photos at 224 px, for the corruption cases."""
    from conftest import _load_images

    return _load_images(sorted(shared_path("imagenet_val_acuity/data").glob("*.JPEG"))[:24], 224)


def fingerprint(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def flag_string(flags: torch.Tensor | np.ndarray) -> str:
    return "".join("1" if flag else "0" for flag in np.asarray(flags).reshape(-1).tolist())


def flags_of(text: str) -> torch.Tensor:
    return torch.tensor([c == "1" for c in text])


# ---- cases --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One reference run: the inputs it is fingerprinted by, and the run itself (JSON outcomes)."""

    name: str
    packages: tuple[str, ...]
    inputs: Callable[[], str]  # the inputs' fingerprint (building them on the way)
    run: Callable[[], dict]
    settings: dict


CASES: dict[str, Case] = {}


def case(name: str, packages: tuple[str, ...], inputs: Callable[[], str], **settings) -> Callable:
    def register(run: Callable[[], dict]) -> Callable[[], dict]:
        CASES[name] = Case(name, packages, inputs, run, settings)
        return run

    return register


# foolbox PGD on 200 photos at three radii: robust flags per ε (correct before and after).
PGD = {"linf-pgd": [1 / 255, 2 / 255, 4 / 255], "l2-pgd": [0.1, 0.25, 0.5]}
PGD_SETTINGS = dict(steps=10, rel_stepsize=0.25)


def _pgd_inputs() -> str:
    return fingerprint(*cifar(200))


def _foolbox_pgd(name: str) -> dict:
    from robustbench_gcp.attacks import AttackSettings, run_attack

    images, labels = cifar(200)
    model = resnet20()
    torch.manual_seed(0)  # foolbox draws its random starts from torch's global generator
    adversarial = run_attack(name, model, images, labels, PGD[name], AttackSettings(backend="foolbox", **PGD_SETTINGS))
    with torch.no_grad():
        clean = model(images).argmax(1) == labels
        robust = {repr(eps): flag_string((model(adversarial[k]).argmax(1) == labels) & clean)
                  for k, eps in enumerate(PGD[name])}
    return {"robust": robust}


for _name in PGD:
    case(f"foolbox-{_name}", ("foolbox",), _pgd_inputs, eps=PGD[_name], **PGD_SETTINGS)(
        lambda name=_name: _foolbox_pgd(name))


# pyautoattack's FAB-T (deterministic without restarts) and untargeted FAB's distances.
FAB_T = {"linf": 0.5 / 255, "l2": 0.05}


def _fab_inputs() -> str:
    return fingerprint(*cifar(64))


def reference_fab(norm: str, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int,
                  targets: int = 0) -> torch.Tensor:
    from pyautoattack.fab_pt import FABAttack_PT

    attack = FABAttack_PT(resnet20(), norm={"linf": "Linf", "l2": "L2"}[norm], n_restarts=1, n_iter=steps, eps=eps,
                          seed=0, targeted=targets > 0, n_target_classes=max(targets, 1), device="cpu", verbose=False)
    attack.targeted = targets > 0
    return attack.perturb(images, labels)


def _fab_t(norm: str) -> dict:
    images, labels = cifar(64)
    adversarial = reference_fab(norm, images, labels, FAB_T[norm], steps=15, targets=3)
    with torch.no_grad():
        clean = resnet20()(images).argmax(1) == labels
        robust = (resnet20()(adversarial).argmax(1) == labels) & clean
    return {"robust": flag_string(robust)}


for _norm in FAB_T:
    case(f"pyautoattack-fab-t-{_norm}", ("pyautoattack",), _fab_inputs, eps=FAB_T[_norm], steps=15, targets=3)(
        lambda norm=_norm: _fab_t(norm))


@case("pyautoattack-fab-linf-distances", ("pyautoattack",), _fab_inputs, images=16, eps=1e6, steps=8)
def _fab_distances() -> dict:
    images, labels = cifar(64)
    images, labels = images[:16], labels[:16]
    adversarial = reference_fab("linf", images, labels, 1e6, steps=8)
    return {"linf_distance": (adversarial - images).flatten(1).abs().amax(1).tolist()}


# pyautoattack's Square on the (up to 64) correctly classified of 80 photos, 300 queries.
SQUARE = {"linf": 8 / 255, "l2": 1.0}
SQUARE_QUERIES = 300


def square_rows() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = cifar(80)
    with torch.no_grad():
        correct = resnet20()(images).argmax(1) == labels
    return images[correct][:64], labels[correct][:64]


def _square_inputs() -> str:
    return fingerprint(*square_rows())


def _square(norm: str) -> dict:
    from pyautoattack.square import SquareAttack

    x, y = square_rows()
    attack = SquareAttack(resnet20(), p_init=0.8, n_queries=SQUARE_QUERIES, eps=SQUARE[norm],
                          norm={"linf": "Linf", "l2": "L2"}[norm], n_restarts=1, seed=0, verbose=False, device="cpu",
                          resc_schedule=False)
    adversarial = attack.perturb(x, y)
    with torch.no_grad():
        return {"robust": flag_string(resnet20()(adversarial).argmax(1) == y)}


for _norm in SQUARE:
    case(f"pyautoattack-square-{_norm}", ("pyautoattack",), _square_inputs, eps=SQUARE[_norm],
         queries=SQUARE_QUERIES)(lambda norm=_norm: _square(norm))


# eval-attack --backend reference: the standard AutoAttack cascade on 100 photos, the per-sample
# flags of every stage as the store holds them. A quarter of the iterations and a fifth of
# Square's queries keep the native side of the comparison to minutes; the implementations are
# compared at equal settings, which is the point.
AUTOATTACK = {"linf": "1/1020,1/510", "l2": "0.1"}
AUTOATTACK_SETTINGS = dict(limit=100, steps=25, queries=1000)


def eval_attack_args(norm: str, eps: str | None = None) -> list[str]:
    """eval-attack's arguments for the case of ``norm``, at ``eps`` (default: the case's): a
    cell does not depend on the other ε of a run, so any of them can be compared alone."""
    s = AUTOATTACK_SETTINGS
    return ["--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file()), "--data", str(cifar_dir()),
            "--attacks", "autoattack", "--eps", eps or AUTOATTACK[norm], "--norm", norm, "--limit", str(s["limit"]),
            "--steps", str(s["steps"]), "--queries", str(s["queries"]), "--workers", "0", "--quiet"]


def eval_attack_outcomes(db: Path, json_path: Path, *args: str) -> dict:
    """Run ``gcp-robust eval-attack ARGS`` and return its stored cells' flags and its summary."""
    from robustbench_gcp.summaries import unpack_flags

    result = run_cli_in_process("eval-attack", *args, "--db", str(db), "--json", str(json_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(json_path.read_text())
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT name, level, mask FROM cells").fetchall()
    flags = {f"{name}/{level}": flag_string(unpack_flags(mask)[: summary["n"]]) for name, level, mask in rows}
    return {"clean_accuracy": summary["clean_accuracy"], "robust_accuracy": summary["robust_accuracy"],
            "worst_case": summary["worst_case"], "flags": dict(sorted(flags.items()))}


def _autoattack(norm: str) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return eval_attack_outcomes(Path(folder) / "aa.sqlite", Path(folder) / "aa.json", *eval_attack_args(norm),
                                    "--backend", "reference")


def _autoattack_inputs() -> str:
    return fingerprint(*cifar(AUTOATTACK_SETTINGS["limit"]))


for _norm in AUTOATTACK:
    case(f"pyautoattack-autoattack-{_norm}", ("pyautoattack",), _autoattack_inputs, eps=AUTOATTACK[_norm],
         **AUTOATTACK_SETTINGS)(lambda norm=_norm: _autoattack(norm))


# imagecorruptions: deterministic corruptions' pixels (sampled) and every corruption's quality
# (mean PSNR to the clean photo) per severity.
DETERMINISTIC = ["brightness", "contrast", "saturate", "pixelate", "gaussian_blur", "defocus_blur", "zoom_blur",
                 "jpeg_compression"]
DETERMINISTIC_IMAGES = 8
# name -> repeats of the 20 photos (more draws where one draw varies a lot: frost picks one of
# six textures, fog one plasma map)
RANDOM = {
    "gaussian_noise": 1, "shot_noise": 1, "impulse_noise": 1, "speckle_noise": 1, "glass_blur": 1,
    "motion_blur": 2, "snow": 2, "fog": 10, "frost": 30, "elastic_transform": 1, "spatter": 3,
}
SAMPLED_PIXELS = 256  # per photo, at fixed positions: a PSNR to about 0.4 dB, far from the 40 dB bound


def pixel_positions(images: torch.Tensor) -> torch.Tensor:
    """Fixed flat positions (C·H·W) sampled in every photo of a deterministic case."""
    return torch.randperm(images[0].numel(), generator=torch.Generator().manual_seed(0))[:SAMPLED_PIXELS]


def sampled_pixels(images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The 8-bit values (N, positions) of a batch at the sampled positions (as the packages store them)."""
    return (images.flatten(1)[:, positions] * 255).round().to(torch.uint8)


def recorded_pixels(text: str, images: int) -> torch.Tensor:
    """Sampled pixels back from a record, as floats in [0, 1] (N, positions)."""
    values = np.frombuffer(base64.b64decode(text), dtype=np.uint8).reshape(images, -1)
    return torch.from_numpy(values.copy()).float() / 255


def psnr_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a.double() - b.double()) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1 / mse)


def random_inputs(name: str) -> torch.Tensor:
    return imagenet_photos()[:20].repeat(RANDOM[name], 1, 1, 1)


def reference_corrupt(images: torch.Tensor, name: str, severity: int) -> torch.Tensor:
    from robustbench_gcp.corruptions import corrupt

    return corrupt(images, name, severity, protocol="imagecorruptions", backend="reference",
                   generator=torch.Generator().manual_seed(0))


def _deterministic(name: str) -> dict:
    """Pixels sampled from the first photos, and the PSNR to the clean photo of all 20."""
    images = imagenet_photos()[:20]
    positions = pixel_positions(images)
    pixels, quality = {}, {}
    for severity in range(1, 6):
        out = reference_corrupt(images, name, severity)
        sampled = sampled_pixels(out[:DETERMINISTIC_IMAGES], positions)
        pixels[str(severity)] = base64.b64encode(sampled.numpy().tobytes()).decode()
        quality[str(severity)] = psnr_per_image(out, images).tolist()
    return {"sampled_pixels": pixels, "psnr_to_clean": quality}


def _random(name: str) -> dict:
    images = random_inputs(name)
    return {"mean_psnr_to_clean": {str(s): float(psnr_per_image(reference_corrupt(images, name, s), images).mean())
                                   for s in range(1, 6)}}


for _name in DETERMINISTIC:
    case(f"imagecorruptions-{_name}", ("imagecorruptions-imaug",),
         lambda: fingerprint(imagenet_photos()[:20]), images=20, sampled_images=DETERMINISTIC_IMAGES,
         sampled_pixels=SAMPLED_PIXELS)(lambda name=_name: _deterministic(name))
for _name in RANDOM:
    case(f"imagecorruptions-{_name}", ("imagecorruptions-imaug",), lambda name=_name: fingerprint(random_inputs(name)),
         images=20 * RANDOM[_name])(lambda name=_name: _random(name))


# ---- records ------------------------------------------------------------------------------------

def packages(names: tuple[str, ...]) -> dict[str, str]:
    return {name: version(name) for name in ("torch", *names)}


def record_path(name: str) -> Path:
    return RECORDS / f"{name}.json"


def make_record(name: str) -> dict:
    """Run a case's reference live: the record it gives."""
    c = CASES[name]
    return {"case": name, "packages": packages(c.packages), "inputs": c.inputs(), "settings": c.settings,
            "outcomes": c.run()}


def write_record(record: dict) -> None:
    RECORDS.mkdir(parents=True, exist_ok=True)
    record_path(record["case"]).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def recorded(name: str) -> dict:
    """A case's recorded outcomes, after checking that the inputs are still the ones it was made on."""
    path = record_path(name)
    assert path.exists(), f"no record {path}; make it with: python tests/record_references.py --write {name}"
    record = json.loads(path.read_text())
    inputs = CASES[name].inputs()
    assert record["inputs"] == inputs, (f"{path} was recorded on other inputs ({record['inputs']}, now {inputs}): "
                                        f"is {DATA_ROOT} the shared test data? Rewrite it with "
                                        f"tests/record_references.py --write {name} if the inputs changed on purpose")
    return record["outcomes"]

"""Released arrays, videos and results databases that are not what they claim to be: each is one
line on stderr naming the file, exit status 2, no traceback, and the results store untouched.
The inputs are tiny copies of the real CIFAR-10 test photos, built here."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_per_class
from conftest import run_cli_in_process as cli
from PIL import Image

from robustbench_gcp.report import ReportError, read_training_log
from robustbench_gcp.results import Cell, ResultStore
from robustbench_gcp.summaries import pack_flags


def refused(result, *phrases: str) -> str:
    """Exit 2, one line on stderr naming what is wrong, no traceback; the line."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stdout[-1000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    return lines[0]


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def photos(tmp_path_factory, cifar_test_dir) -> tuple[np.ndarray, np.ndarray]:
    """10 real CIFAR-10 test photos, one per class (uint8 (10, 32, 32, 3)), and their labels."""
    folder = copy_per_class(cifar_test_dir, tmp_path_factory.mktemp("photos") / "data", 1)
    paths = sorted(folder.glob("*/*.jpg"))
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    return images, np.arange(len(paths), dtype=np.int64)


@pytest.fixture
def store(tmp_path) -> tuple[Path, bytes]:
    """An empty results store and its bytes, which a refused command must leave as they are."""
    path = tmp_path / "r.sqlite"
    ResultStore(path)
    return path, path.read_bytes()


def cifar10_p(folder: Path, photos) -> Path:
    """A CIFAR-10-P folder: rotate.npy (videos of 31 frames of the real photos) and labels.npy."""
    images, labels = photos
    folder.mkdir()
    np.save(folder / "rotate.npy", np.repeat(images[:, None], 31, axis=1))
    np.save(folder / "labels.npy", labels)
    return folder


def eval_perturbation(folder: Path, db: Path, resnet20_file: Path):
    return cli("eval-perturbation", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file),
               "--data", str(folder), "--source", "cifar10-p", "--perturbations", "rotate", "--workers", "0",
               "--quiet", "--db", str(db))


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1000])


def _header_only(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def _text(path: Path) -> None:
    path.write_text("0 1 2 3 4 5 6 7\n")


def _object_dtype(path: Path) -> None:
    np.save(path, np.array([{"frames": 1}, None], dtype=object), allow_pickle=True)


def _pickled(path: Path) -> None:
    path.write_bytes(pickle.dumps(np.load(path)))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _string_labels(path: Path) -> None:
    np.save(path, np.array(["cat", "dog"] * 5))


@pytest.mark.parametrize("damage, name, phrase", [
    (_truncated, "rotate.npy", "is truncated"),
    (_header_only, "rotate.npy", "damaged .npy header"),
    (_random_bytes, "rotate.npy", "not a .npy file"),
    (_text, "labels.npy", "not a .npy file"),
    (_object_dtype, "rotate.npy", "Python objects"),
    (_pickled, "rotate.npy", "not a .npy file"),
    (_empty, "labels.npy", "not a .npy file"),
    (_string_labels, "labels.npy", "integer class indices"),
], ids=["truncated", "header-only", "random-bytes", "text", "object-dtype", "pickled", "empty", "string-labels"])
def test_malformed_npy_files(tmp_path, photos, resnet20_file, store, damage, name, phrase):
    folder = cifar10_p(tmp_path / "CIFAR-10-P", photos)
    damage(folder / name)
    before = files_of(folder)
    refused(eval_perturbation(folder, store[0], resnet20_file), str(folder / name), phrase)
    assert store[0].read_bytes() == store[1] and files_of(folder) == before


@pytest.mark.parametrize("rewrite, name, phrase", [
    (lambda v, labels: (v.astype(np.float32) / 255, labels), "rotate.npy", "float32 pixels"),
    (lambda v, labels: (v.astype(np.int16), labels), "rotate.npy", "int16 pixels"),
    (lambda v, labels: ((v / 255).astype(np.uint8), labels), "rotate.npy", "0 and 1 only"),
    (lambda v, labels: (v[:, 0], labels), "rotate.npy", "expected (videos, frames, 32, 32, 3)"),
    (lambda v, labels: (v[:, :, :16, :16], labels), "rotate.npy", "expected (videos, frames, 32, 32, 3)"),
    (lambda v, labels: (v[:-1], labels), "rotate.npy", "holds 9 videos where the other files"),
    (lambda v, labels: (v, labels.astype(np.float64)), "labels.npy", "float64"),
    (lambda v, labels: (v, labels[None]), "labels.npy", "of shape (1, 10)"),
    (lambda v, labels: (v, labels - 1), "labels.npy", "the label -1"),
], ids=["float32", "int16", "unscaled-uint8", "frames-not-videos", "16-px", "fewer-videos", "float-labels",
        "2-d-labels", "negative-labels"])
def test_cifar10_p_arrays_of_the_wrong_type_or_shape(tmp_path, photos, resnet20_file, store, rewrite, name, phrase):
    folder = cifar10_p(tmp_path / "CIFAR-10-P", photos)
    videos, labels = rewrite(np.load(folder / "rotate.npy"), np.load(folder / "labels.npy"))
    np.save(folder / "rotate.npy", videos)
    np.save(folder / "labels.npy", labels)
    refused(eval_perturbation(folder, store[0], resnet20_file), str(folder / name), phrase)
    assert store[0].read_bytes() == store[1]


@pytest.fixture
def cifar10_c(tmp_path, photos, cifar_test_dir) -> tuple[Path, Path]:
    """A CIFAR-10-C folder (fog.npy: 5 severities of the real photos; labels.npy) and its clean set."""
    images, labels = photos
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    np.save(folder / "fog.npy", np.concatenate([images] * 5))
    np.save(folder / "labels.npy", np.tile(labels, 5))
    clean = tmp_path / "clean"
    for i, (image, label) in enumerate(zip(images, labels)):
        (clean / f"class{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(clean / f"class{label}" / f"{i}.png")
    return folder, clean


def eval_corruption(folder: Path, clean: Path, db: Path, resnet20_file: Path):
    return cli("eval-corruption", "--model", "CIFAR10_ResNet20_GAP", "--checkpoint", str(resnet20_file),
               "--data", str(folder), "--source", "cifar10-c", "--protocol", "cifar10-c", "--clean-data", str(clean),
               "--corruptions", "fog",
               "--severities", "2", "--workers", "0", "--quiet", "--db", str(db))


@pytest.mark.parametrize("rewrite, name, phrase", [
    (lambda a, labels: (a.astype(np.float32) / 255, labels), "fog.npy", "float32 pixels"),
    (lambda a, labels: (a.astype(np.int16), labels), "fog.npy", "int16 pixels"),
    (lambda a, labels: ((a / 255).astype(np.uint8), labels), "fog.npy", "0 and 1 only"),
    (lambda a, labels: (a[:-1], labels), "fog.npy", "holds 49 images where labels.npy describes 5 severities × 10"),
    (lambda a, labels: (a[:, :16], labels), "fog.npy", "expected (images, 32, 32, 3)"),
    (lambda a, labels: (a, labels[:10]), "labels.npy", "not the same N labels once per severity"),
    (lambda a, labels: (a, np.concatenate([labels[:40], labels[40:][::-1]])), "labels.npy",
     "not the same N labels once per severity"),
    (lambda a, labels: (a, labels.astype(bool)), "labels.npy", "integer class indices"),
], ids=["float32", "int16", "unscaled-uint8", "rows", "16-px", "one-severity-of-labels", "labels-differ-per-severity",
        "bool-labels"])
def test_cifar10_c_arrays_of_the_wrong_type_or_shape(cifar10_c, resnet20_file, store, rewrite, name, phrase):
    folder, clean = cifar10_c
    images, labels = rewrite(np.load(folder / "fog.npy"), np.load(folder / "labels.npy"))
    np.save(folder / "fog.npy", images)
    np.save(folder / "labels.npy", labels)
    refused(eval_corruption(folder, clean, store[0], resnet20_file), str(folder / name), phrase)
    assert store[0].read_bytes() == store[1]


def test_cifar10_c_with_a_clean_set_of_other_images(cifar10_c, resnet20_file, store):
    folder, clean = cifar10_c
    next(clean.glob("*/*.png")).unlink()
    refused(eval_corruption(folder, clean, store[0], resnet20_file), str(clean), "holds 9 images",
            "10 per severity")
    assert store[0].read_bytes() == store[1]


def test_imagenet_p_video_missing_from_one_sequence_is_named(tmp_path, store):
    """The released tree with one gaussian_noise video missing: that file is named, not another sequence.
    Nothing is decoded before the check, so empty files stand in for the videos."""
    root = tmp_path / "imagenet-p"
    for name in ("gaussian_noise", "translate"):
        for video in ("ILSVRC2012_val_00000001.mp4", "ILSVRC2012_val_00000002.mp4"):
            (root / name / "n01440764").mkdir(parents=True, exist_ok=True)
            (root / name / "n01440764" / video).touch()
    missing = root / "gaussian_noise" / "n01440764" / "ILSVRC2012_val_00000002.mp4"
    missing.unlink()
    result = cli("eval-perturbation", "--model", "torchvision:alexnet", "--data", str(root), "--source", "imagenet-p",
                 "--perturbations", "gaussian_noise,translate", "--workers", "0", "--quiet", "--db", str(store[0]))
    line = refused(result, "is missing")
    assert line.split(": error: ", 1)[1].startswith(f"{missing} is missing"), line
    assert store[0].read_bytes() == store[1]


def test_imagenet_c_cell_missing_an_image_is_refused_before_the_first_cell(tmp_path, store):
    root = tmp_path / "imagenet-c"
    for severity in (1, 2):
        for image in ("a.JPEG", "b.JPEG"):
            (root / "fog" / str(severity) / "n01440764").mkdir(parents=True, exist_ok=True)
            (root / "fog" / str(severity) / "n01440764" / image).touch()
    (root / "fog" / "2" / "n01440764" / "b.JPEG").unlink()
    result = cli("eval-corruption", "--model", "resnet18_gcp", "--num-classes", "1", "--data", str(root),
                 "--source", "imagenet-c", "--corruptions", "fog", "--severities", "1,2", "--workers", "0",
                 "--quiet", "--db", str(store[0]))
    refused(result, str(root / "fog" / "2"), "holds 1 images where the other cells")
    assert store[0].read_bytes() == store[1]


CONFIG = {"dataset": "/data/cifar10", "dataset_size": 16, "source": "generated", "protocol": "cifar10-c",
          "input_size": 32, "model_classes": 10, "limit": None, "seed": 0}


def _stored_runs(db: Path, names: tuple[str | None, str | None] = (None, None)) -> None:
    """Two corruption runs over the same 16 images (clean and fog/1..5 cells with per-image outcomes)."""
    rng = np.random.default_rng(0)
    store = ResultStore(db)
    for model, name in zip(("CIFAR10_ResNet20_GAP", "CIFAR10_ResNet44_GAP"), names):
        run = store.run("corruption", model, {**CONFIG, "model": model}, name)
        for cell, level in [("clean", "0"), *(("fog", str(s)) for s in range(1, 6))]:
            correct = rng.random(16) < 0.7
            store.add_cell(run, Cell(cell, level, 16, int((~correct).sum()), 0, 0, pack_flags(correct)))


def _zeroed_page(db: Path) -> None:
    connection = sqlite3.connect(db)
    (page,) = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'cells'").fetchone()
    (size,) = connection.execute("PRAGMA page_size").fetchone()
    connection.close()
    data = bytearray(db.read_bytes())
    data[(page - 1) * size : page * size] = bytes(size)
    db.write_bytes(bytes(data))


def _execute(db: Path, statement: str) -> None:
    connection = sqlite3.connect(db)
    with connection:
        connection.execute(statement)
    connection.close()


def _config_not_json(db: Path) -> None:
    _execute(db, "UPDATE runs SET config = 'model: resnet' WHERE id = 1")


def _one_byte_mask(db: Path) -> None:
    _execute(db, "UPDATE cells SET mask = x'ff' WHERE run_id = 1 AND name = 'fog' AND level = '3'")


@pytest.mark.parametrize("damage, phrases, commands", [
    (_zeroed_page, ("malformed",), ("table", "runs", "compare")),
    (_config_not_json, ("run 1",), ("table", "runs", "compare")),
    (_one_byte_mask, ("run 1", "fog/3", "1-byte", "--delete 1"), ("table", "compare")),
], ids=["zeroed-page", "config-not-json", "one-byte-mask"])
def test_damaged_database(tmp_path, damage, phrases, commands):
    db = tmp_path / "r.sqlite"
    _stored_runs(db)
    damage(db)
    before = db.read_bytes()
    calls = {"table": ("table", "--db", str(db)), "runs": ("runs", "--db", str(db)),
             "compare": ("compare", "--db", str(db), "--run", "1", "--run", "2")}
    for command in commands:
        line = refused(cli(*calls[command]), *phrases)
        assert str(db) in line or damage is _one_byte_mask, line
        assert db.read_bytes() == before, command


def test_a_run_with_a_damaged_configuration_can_be_deleted_as_the_error_says(tmp_path):
    db = tmp_path / "r.sqlite"
    _stored_runs(db)
    _config_not_json(db)
    deleted = cli("runs", "--db", str(db), "--delete", "1")
    assert deleted.returncode == 0 and "deleted run 1 and its 6 cells" in deleted.stdout, deleted.stderr
    assert cli("table", "--db", str(db)).returncode == 0


@pytest.mark.parametrize("fmt", ["github", "plain", "latex"])
def test_names_cannot_add_rows_or_columns_to_tables(tmp_path, fmt):
    """The same tables as with plain names: as many lines, and in markdown as many columns."""
    outputs = {}
    for names in (("gap", "gcp"), ("gap\n| fake | row |", "gcp | x")):
        db = tmp_path / f"{len(outputs)}.sqlite"
        _stored_runs(db, names)
        outputs[names] = cli("table", "--db", str(db), "--format", fmt), cli("runs", "--db", str(db))
    (plain_table, plain_runs), (table, runs) = outputs.values()
    assert table.returncode == 0 and runs.returncode == 0, table.stderr + runs.stderr
    assert "fake" in table.stdout and "fake" in runs.stdout
    for plain, odd in ((plain_table.stdout, table.stdout), (plain_runs.stdout, runs.stdout)):
        assert len(odd.splitlines()) == len(plain.splitlines()), odd
        if fmt == "github" or plain is plain_runs.stdout:
            assert [line.count("|") - line.count("\\|") for line in odd.splitlines()] == \
                [line.count("|") for line in plain.splitlines()], odd


def test_names_are_shown_literally_in_plot_legends(tmp_path):
    db = tmp_path / "r.sqlite"
    _stored_runs(db, ("_baseline", "cost $x^$"))  # hidden by matplotlib; a formula that does not parse
    plot = cli("plot", "--db", str(db), "--out", str(tmp_path / "fog.png"))
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "fog.png").stat().st_size > 1000


def test_training_log_that_is_not_one(tmp_path):
    log = tmp_path / "other" / "log.jsonl"
    log.parent.mkdir()
    log.write_text('{"epoch": 0, "loss": 2.1}\n')
    with pytest.raises(ReportError, match="is not a training log"):
        read_training_log(log)

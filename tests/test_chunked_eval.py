"""Decode once, corrupt many: chunked evaluation gives the counts of one whole chunk (the per-cell
loop) at every chunk size, also after an interruption inside a chunk; the device-decode path
agrees with PIL; per-image streams draw the same numbers in any batch."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import torch
from conftest import copy_per_class, shared_path

from robustbench_gcp.data.batches import staged
from robustbench_gcp.data.decode import EncodedFiles, collate_encoded, decode_batch
from robustbench_gcp.data.folders import eval_geometry
from robustbench_gcp.evaluate.corruption import CorruptionEvalConfig, evaluate_corruptions
from robustbench_gcp.results import ResultStore
from robustbench_gcp.rng import Draws, image_streams


def cells_of(db) -> dict:
    store = ResultStore(db)
    (run,) = store.runs("corruption")
    return {key: (c.n, c.top1_errors, c.top5_errors, c.skipped, c.mask) for key, c in store.cells(run).items()}


@pytest.fixture
def cifar_config(tmp_path, cifar_test_dir, resnet20_file):
    def make(db: str, **options) -> CorruptionEvalConfig:
        return CorruptionEvalConfig(
            model="CIFAR10_ResNet20_GAP", checkpoint=resnet20_file, data=cifar_test_dir, limit=150,
            corruptions=["gaussian_noise", "shot_noise", "fog", "pixelate"], severities=[2, 5], batch_size=32,
            workers=0, db=tmp_path / db, **options)
    return make


def test_chunk_sizes_give_the_counts_of_one_chunk_on_the_pretrained_resnet20(cifar_config):
    whole = evaluate_corruptions(cifar_config("whole.sqlite"), progress=False)
    assert 10 <= whole["clean_error"] <= 30
    reference = cells_of(cifar_config("whole.sqlite").db)
    assert len(reference) == 9
    for size in (1, 37, 64):
        evaluate_corruptions(cifar_config(f"c{size}.sqlite", chunk_size=size), progress=False)
        assert cells_of(cifar_config(f"c{size}.sqlite").db) == reference, size


def test_interruption_inside_a_chunk_resumes_to_the_same_counts(cifar_config, monkeypatch):
    evaluate_corruptions(cifar_config("whole.sqlite"), progress=False)
    written = []
    real_add_part = ResultStore.add_part

    def add_part_then_die(self, run, part):
        real_add_part(self, run, part)
        written.append(part)
        if len(written) == 13:  # the second chunk, in the middle of its cells
            raise KeyboardInterrupt

    monkeypatch.setattr(ResultStore, "add_part", add_part_then_die)
    config = cifar_config("killed.sqlite", chunk_size=60)
    with pytest.raises(KeyboardInterrupt):
        evaluate_corruptions(config, progress=False)
    monkeypatch.setattr(ResultStore, "add_part", real_add_part)
    with sqlite3.connect(config.db) as db:
        assert db.execute("SELECT COUNT(*) FROM parts").fetchone()[0] > 0
    evaluate_corruptions(cifar_config("killed.sqlite", chunk_size=100), progress=False)
    assert cells_of(config.db) == cells_of(cifar_config("whole.sqlite").db)
    with sqlite3.connect(config.db) as db:
        assert db.execute("SELECT COUNT(*) FROM parts").fetchone()[0] == 0


def test_imagenet_photos_with_a_small_model_at_two_chunk_sizes(tmp_path):
    photos = sorted(shared_path("imagenet_val_acuity/data").glob("*.JPEG"))[:12]
    for i, path in enumerate(photos):  # three stand-in classes, so that a prediction can be wrong
        folder = tmp_path / "val" / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / path.name).symlink_to(path)

    def run(db: str, chunk: int) -> dict:
        config = CorruptionEvalConfig(model="mobilenet_v2_gap", num_classes=3, data=tmp_path / "val",
                                      corruptions=["glass_blur", "frost"], severities=[3], batch_size=4, workers=0,
                                      db=tmp_path / db, chunk_size=chunk)
        with pytest.warns(UserWarning, match="random weights"):
            evaluate_corruptions(config, progress=False)
        return cells_of(tmp_path / db)

    whole = run("a.sqlite", 12)
    assert all(0 < top1 < 12 for _, top1, *_ in whole.values())  # some right, some wrong: the masks say which
    assert run("b.sqlite", 5) == whole


def test_device_decode_on_the_cpu_agrees_with_pil(tmp_path, cifar_config):
    paths = sorted(shared_path("imagenet_val_acuity/data").glob("*.JPEG"))[:64]
    geometry = eval_geometry(224)
    files = EncodedFiles([(str(p), 0) for p in paths])
    decoded, readable = decode_batch(collate_encoded(list(files))[0], geometry, 224, torch.device("cpu"))
    assert readable.all()
    from PIL import Image

    pil = torch.stack([geometry.pil_transform()(Image.open(p).convert("RGB")) for p in paths])
    difference = (decoded.int() - pil.int()).abs()
    assert difference.max() <= 1 and (difference > 0).float().mean() < 0.25  # resize rounding only
    # 32-px files need no resize: the two paths read the same pixels, so the counts are equal
    evaluate_corruptions(cifar_config("pil.sqlite", decode="pil"), progress=False)
    evaluate_corruptions(cifar_config("device.sqlite", decode="device"), progress=False)
    assert cells_of(cifar_config("pil.sqlite").db) == cells_of(cifar_config("device.sqlite").db)


def test_device_decode_falls_back_and_reports_unreadable(tmp_path, cifar_test_dir):
    data = copy_per_class(cifar_test_dir, tmp_path / "data", 1)
    Image = pytest.importorskip("PIL.Image")
    Image.open(next((data / "cat").iterdir())).save(data / "cat" / "as.png")
    (data / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    files = EncodedFiles([(str(p), 0) for p in sorted(data.rglob("*.*"))])
    batch, readable = decode_batch(collate_encoded(list(files))[0], eval_geometry(32), 32,
                                   torch.device("cpu"))
    names = [p.name for p in sorted(data.rglob("*.*"))]
    assert batch.shape == (len(names), 3, 32, 32)
    assert readable.tolist() == [name != "broken.jpg" for name in names]


def test_a_batch_of_file_bytes_flags_whole_jpegs_at_once(cifar_test_dir):
    """The files of a batch travel as one tensor; the JPEG markers are checked on all of them
    together, next to empty, tiny, truncated and non-JPEG files."""
    jpeg = next(cifar_test_dir.rglob("*.jpg")).read_bytes()
    datas = [jpeg, b"", b"\xff\xd8\xff", jpeg[:-2], b"\x89PNG\r\n\x1a\n....", jpeg, b"\xff\xd8", jpeg[:-1]]
    encoded, *_ = collate_encoded([(data, 0, i, bool(data)) for i, data in enumerate(datas)])
    assert [bytes(f.tolist()) for f in encoded.files()] == datas
    assert encoded.whole_jpegs().tolist() == [True, False, False, False, False, True, False, False]
    empty, *_ = collate_encoded([(b"", 0, 0, False)])
    assert empty.whole_jpegs().tolist() == [False] and [len(f) for f in empty.files()] == [0]


def test_image_streams_draw_the_same_numbers_in_any_batch():
    streams = image_streams(3, range(10), "fog", 2)
    whole, part = Draws(10, torch.device("cpu"), streams), Draws(4, torch.device("cpu"), streams[6:])
    for draw in (lambda d: d.uniform((5, 7)), lambda d: d.normal((9,), dtype=torch.float64),
                 lambda d: d.randint(0, 5, (3,)), lambda d: d.poisson(torch.full((d.n, 50), 4.5))):
        assert torch.equal(draw(whole)[6:], draw(part))
    big = Draws(4, torch.device("cpu"), image_streams(0, range(4), "x", 1))
    assert abs(big.uniform((100_000,)).mean() - 0.5) < 0.005
    normal = big.normal((100_000,))
    assert abs(normal.mean()) < 0.01 and abs(normal.std() - 1) < 0.01
    for rate in (0.05, 3.0, 60.0):
        counts = big.poisson(torch.full((4, 100_000), rate))
        assert abs(counts.mean() - rate) < 0.02 * rate + 0.005 and abs(counts.var() - rate) < 0.05 * rate + 0.01
        assert counts.dtype == torch.float32 and bool((counts == counts.round()).all())
    assert not torch.equal(image_streams(3, [0], "fog", 2).keys, image_streams(3, [0], "fog", 3).keys)
    assert np.unique(image_streams(0, range(100_000), "fog", 2).keys.numpy()).size == 100_000


def test_a_database_from_before_chunks_opens_and_resumes(tmp_path, cifar_config):
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as connection:  # the tables of version 0.2.0, without "parts"
        connection.executescript(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, model TEXT NOT "
            "NULL, config TEXT NOT NULL, created TEXT NOT NULL DEFAULT (datetime('now')), name TEXT);"
            "CREATE TABLE cells (run_id INTEGER NOT NULL REFERENCES runs(id), name TEXT NOT NULL, level TEXT NOT NULL,"
            " n INTEGER NOT NULL, top1_errors INTEGER NOT NULL, top5_errors INTEGER NOT NULL, skipped INTEGER NOT NULL"
            " DEFAULT 0, mask BLOB, PRIMARY KEY (run_id, name, level));")
    evaluate_corruptions(cifar_config("old.sqlite", chunk_size=64), progress=False)
    assert len(cells_of(db)) == 9


@pytest.mark.slow
def test_compiled_model_counts_like_the_eager_one(cifar_config):
    eager = evaluate_corruptions(cifar_config("eager.sqlite"), progress=False)
    compiled = evaluate_corruptions(cifar_config("compiled.sqlite", compile=True), progress=False)
    assert compiled["errors"] == eager["errors"] and compiled["clean_error"] == eager["clean_error"]


def test_a_list_of_generators_gets_a_clear_error(imagenet_photos):
    from robustbench_gcp.corruptions import corrupt

    with pytest.raises(TypeError, match="image_streams"):
        corrupt(imagenet_photos[:2], "fog", 1, generator=[torch.Generator(), torch.Generator()])
    with pytest.raises(ValueError, match="one per image"):
        corrupt(imagenet_photos[:2], "fog", 1, generator=image_streams(0, [0, 1, 2], "fog", 1))


def test_a_stop_between_the_last_part_and_the_cell_is_merged_on_the_rerun(cifar_config, monkeypatch):
    evaluate_corruptions(cifar_config("whole.sqlite"), progress=False)

    def stop(self, run, cell):
        raise KeyboardInterrupt

    monkeypatch.setattr(ResultStore, "add_cell", stop)
    with pytest.raises(KeyboardInterrupt):  # the clean cell's only part is stored, the cell is not
        evaluate_corruptions(cifar_config("stopped.sqlite"), progress=False)
    monkeypatch.undo()
    evaluate_corruptions(cifar_config("stopped.sqlite"), progress=False)
    assert cells_of(cifar_config("stopped.sqlite").db) == cells_of(cifar_config("whole.sqlite").db)


def test_overlapping_parts_are_counted_once():
    from robustbench_gcp.evaluate.corruption import merge_parts
    from robustbench_gcp.results import CellPart
    from robustbench_gcp.summaries import pack_flags

    def part(first: int, stop: int, errors: int) -> CellPart:
        covered = np.zeros(10, dtype=bool)
        covered[first:stop] = True
        correct = covered.copy()
        correct[first : first + errors] = False
        return CellPart("fog", "1", stop - first, errors, 0, 0, pack_flags(correct), pack_flags(covered))

    merged = merge_parts("fog", "1", [part(0, 5, 1), part(0, 5, 1), part(5, 10, 2)], 10)
    assert (merged.n, merged.top1_errors) == (10, 3)
    assert merge_parts("fog", "1", [part(0, 6, 1), part(4, 10, 1)], 10) is None  # cannot be made whole


def test_staged_work_comes_back_in_order_and_raises_where_it_failed():
    """The loop eval-corruption runs its batches through (a side stream ahead on CUDA): on the
    CPU it is the plain map, and an error in one item's work reaches the consumer at that item."""
    items = [torch.arange(i, i + 3) for i in range(4)]
    assert [t.tolist() for t in staged(items, lambda t: t * 2, torch.device("cpu"))] == \
        [[2 * v for v in range(i, i + 3)] for i in range(4)]

    def fail_on_third(t: torch.Tensor) -> torch.Tensor:
        if int(t[0]) == 2:
            raise ValueError("third")
        return t

    seen = []
    with pytest.raises(ValueError, match="third"):
        for t in staged(items, fail_on_third, torch.device("cpu")):
            seen.append(int(t[0]))
    assert seen == [0, 1]

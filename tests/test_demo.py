"""The demo's own code at a size the default suite affords (the ``--quick`` CLI run is a slow test)."""

from __future__ import annotations

import json
import warnings

import pytest

from robustbench_gcp.demo import MODELS, DemoConfig, DemoSize, run_demo

TINY = DemoSize(train_per_class=6, test_per_class=3, epochs=1, corruptions=("gaussian_noise", "contrast"),
                severities=(1,), perturbation_videos=4, attack_images=8, attack_steps=2)


def test_a_tiny_demo_prints_both_models_and_raises_no_flag(tmp_path, capsys):
    pytest.importorskip("skimage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = run_demo(DemoConfig(out=tmp_path / "demo", size=TINY, progress=False))
    printed = capsys.readouterr().out
    assert [str(w.message) for w in caught if "robustbench_gcp" in w.filename] == []
    assert printed.startswith("torch uses ") and "== training GAP ResNet-20 (1/8)" in printed
    assert "== L-inf PGD-2 on GCP ResNet-20 (8/8)" in printed and "left" in printed
    for model in MODELS:
        assert f"{model} · cifar10-c" in printed and f"{model} · cifar10-p · n=4" in printed
        attack = json.loads((tmp_path / "demo" / f"{model}-attack.json").read_text())
        assert attack["report"] == [] and list(attack["robust_accuracy"]) == ["linf-pgd"]
        corruptions = json.loads((tmp_path / "demo" / f"{model}-corruptions.json").read_text())
        assert list(corruptions["errors"]) == ["gaussian_noise", "contrast"]
    assert "linf-pgd (robust accuracy %)" in printed and "2×1.25 · n=8" in printed
    assert "mean error (%)" in printed and "(CE)" not in printed and "mCE" not in printed
    for path in written.values():
        assert path.stat().st_size > 1000, path
    assert written["report"].name == "report.html" and "GAP vs GCP" in written["report"].read_text()

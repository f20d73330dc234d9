"""A real pretrained model on real images, through the zoo and the data pipeline."""

from __future__ import annotations

import robustbench_gcp as rg
from robustbench_gcp.data import balanced_subset, image_folder
from robustbench_gcp.evaluate import evaluate_clean


def test_pretrained_cifar_resnet20_reaches_80_percent(resnet20_file, cifar_test_dir):
    model = rg.create_model("CIFAR10_ResNet20_GAP", checkpoint=resnet20_file)
    dataset = balanced_subset(image_folder(cifar_test_dir, input_size=32), limit=1000, seed=0)
    counts = evaluate_clean(model, dataset, batch_size=250)
    assert counts.n == 1000
    # The JPEG q75 copy costs ~10 points against the published 91.7 %; ~81 % is expected.
    assert 80.0 <= counts.top1_accuracy <= 84.0
    assert counts.top5_errors < counts.top1_errors


def test_balanced_subset_is_balanced_and_seeded(cifar_test_dir):
    dataset = image_folder(cifar_test_dir, input_size=32)
    subset = balanced_subset(dataset, limit=105, seed=3)
    labels = [dataset.targets[i] for i in subset.indices]
    assert sorted(set(labels)) == list(range(10))
    assert max(labels.count(c) for c in range(10)) - min(labels.count(c) for c in range(10)) <= 1
    assert subset.indices == balanced_subset(dataset, limit=105, seed=3).indices
    assert subset.indices != balanced_subset(dataset, limit=105, seed=4).indices

"""The iSQRT-COV layer: gradients, convergence, edge cases, precision, and the original's layout."""

from __future__ import annotations

import pytest
import torch

from robustbench_gcp.models.gcp import (
    CovarianceSqrt,
    GCPHead,
    _newton_schulz,
    covariance,
    matrix_sqrt,
    representation_dim,
    upper_triangle,
)


def _spd_batch(batch: int, size: int, samples: int, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, size, samples, generator=generator, dtype=dtype)
    return x @ x.mT / samples


def _original_pipeline(features: torch.Tensor, iterations: int) -> torch.Tensor:
    """A literal transcription of the original forward: X Î Xᵀ, trace via Σ ⊙ I, NS loop, triu."""
    batch, channels, h, w = features.shape
    m = h * w
    x = features.reshape(batch, channels, m)
    i_hat = (-1.0 / m / m) * torch.ones(m, m, dtype=x.dtype) + (1.0 / m) * torch.eye(m, dtype=x.dtype)
    cov = x @ i_hat @ x.mT
    eye = torch.eye(channels, dtype=x.dtype).expand(batch, channels, channels)
    trace = (cov * eye).sum(dim=(1, 2))
    a = cov / trace[:, None, None]
    z = 0.5 * (3 * eye - a)
    y = a @ z
    for _ in range(iterations - 2):
        t = 0.5 * (3 * eye - z @ y)
        y, z = y @ t, t @ z
    y = 0.5 * y @ (3 * eye - z @ y)
    root = y * trace.sqrt()[:, None, None]
    index = torch.ones(channels, channels).triu().flatten().nonzero().flatten()
    return root.reshape(batch, -1)[:, index]


def test_full_chain_passes_gradcheck_in_float64():
    features = torch.randn(2, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(CovarianceSqrt(iterations=5), (features,))


@pytest.mark.parametrize("iterations", [1, 2, 3, 5])
def test_square_root_backward_passes_gradcheck_alone(iterations):
    # Unlike the original, the backward is exact for non-symmetric perturbations too.
    cov = _spd_batch(2, 4, 9).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c: matrix_sqrt(c, iterations), (cov,))


def test_closed_form_backward_equals_autograd_through_the_iterations():
    cov = _spd_batch(3, 6, 20)
    upstream = torch.randn(3, 6, 6, dtype=torch.float64)
    closed = cov.clone().requires_grad_(True)
    (matrix_sqrt(closed, 5, eps=0.0) * upstream).sum().backward()
    plain = cov.clone().requires_grad_(True)
    trace = plain.diagonal(dim1=1, dim2=2).sum(-1)
    root, _, _ = _newton_schulz(plain / trace[:, None, None], 5)
    (root * trace.sqrt()[:, None, None] * upstream).sum().backward()
    torch.testing.assert_close(closed.grad, plain.grad, rtol=1e-9, atol=1e-12)


def test_newton_schulz_approaches_the_eigendecomposition_root():
    cov = _spd_batch(2, 8, 64) + 0.1 * torch.eye(8, dtype=torch.float64)
    values, vectors = torch.linalg.eigh(cov)
    exact = vectors @ torch.diag_embed(values.sqrt()) @ vectors.mT
    errors = [
        float((matrix_sqrt(cov, n, eps=0.0) - exact).norm() / exact.norm()) for n in (1, 3, 5, 10, 30)
    ]
    # each step closer until converged; converged values sit at machine precision, where they may jitter
    assert all(later < earlier or later < 1e-12 for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-6, errors
    assert 1e-4 < errors[2] < 0.1, errors  # 5 iterations: close, not exact, as the original


def test_matches_a_literal_transcription_of_the_original():
    features = torch.relu(torch.randn(2, 16, 7, 7, dtype=torch.float64))
    ours = CovarianceSqrt(iterations=5, eps=0.0)(features)
    torch.testing.assert_close(ours, _original_pipeline(features, 5), rtol=1e-10, atol=1e-12)


def test_covariance_is_centered_and_divided_by_m():
    features = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    flat = features.reshape(2, 3, 20)
    expected = torch.stack([torch.cov(sample, correction=0) for sample in flat])
    torch.testing.assert_close(covariance(features), expected)


def test_upper_triangle_is_row_major_with_the_diagonal():
    matrix = torch.arange(9.0).reshape(1, 3, 3)
    assert upper_triangle(matrix).tolist() == [[0.0, 1.0, 2.0, 4.0, 5.0, 8.0]]
    assert representation_dim(256) == 32896 and representation_dim(128) == 8256


def test_zero_feature_map_gives_finite_outputs_and_gradients():
    features = torch.zeros(2, 8, 4, 4, requires_grad=True)
    out = CovarianceSqrt()(features)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(features.grad).all()
    head = GCPHead(8, reduction_dim=4)
    out = head(torch.zeros(2, 8, 4, 4))
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())


def test_square_root_stays_float32_under_bf16_autocast():
    head = GCPHead(32, reduction_dim=16)
    seen = []
    head[3].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    features = torch.randn(4, 32, 5, 5)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = head(features)
        logits = torch.nn.Linear(head.out_features, 10)(out)
    assert seen == [torch.float32] and out.dtype == torch.float32
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(out, head(features), rtol=0.05, atol=0.05)


def test_rejects_a_non_square_batch():
    with pytest.raises(ValueError, match=r"\(B, C, C\)"):
        matrix_sqrt(torch.ones(2, 3, 4))

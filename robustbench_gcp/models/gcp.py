"""Global covariance pooling (iSQRT-COV), as in the original GCP / fast-MPN-COV code.

The pipeline is: centered covariance divided by M (the number of spatial positions),
trace pre-normalisation, N coupled Newton–Schulz iterations, post-compensation by
sqrt(trace), and the row-major upper triangle (diagonal included) as the representation.

Differences from the original, all deliberate:
- The covariance is computed as ``Xc Xcᵀ / M`` with ``Xc`` the centered features instead of
  ``X Î Xᵀ`` with an M×M matrix Î: the same quantity, without the M×M buffer.
- ``eps`` is added to the trace, so an all-zero feature map gives finite outputs and gradients
  (the original divides by zero there).
- The covariance and the square root always run in float32 (float64 stays float64), also under
  bf16/fp16 autocast: Newton–Schulz does not converge in half precision.
- The square-root backward uses the exact (transposed) chain rule, so it is also correct for
  non-symmetric perturbations; on symmetric inputs it equals the original closed form.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

DEFAULT_ITERATIONS = 5
DEFAULT_EPS = 1e-5


def covariance(features: Tensor) -> Tensor:
    """Centered covariance (B, C, C) of a feature map (B, C, H, W), normalised by M = H·W."""
    batch, channels = features.shape[:2]
    x = features.reshape(batch, channels, -1)
    centered = x - x.mean(dim=2, keepdim=True)
    return centered @ centered.transpose(1, 2) / x.shape[2]


def _newton_schulz(normalized: Tensor, iterations: int) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Coupled Newton–Schulz on a trace-normalised batch; returns Y_N and the Y/Z histories."""
    eye = torch.eye(normalized.shape[-1], dtype=normalized.dtype, device=normalized.device)
    if iterations < 2:
        return 0.5 * normalized @ (3.0 * eye - normalized), [], []
    z = 0.5 * (3.0 * eye - normalized)
    y = normalized @ z
    ys, zs = [y], [z]
    for _ in range(iterations - 2):
        t = 0.5 * (3.0 * eye - z @ y)
        y, z = y @ t, t @ z
        ys.append(y)
        zs.append(z)
    root = 0.5 * y @ (3.0 * eye - z @ y)
    return root, ys, zs


def _newton_schulz_backward(
    grad: Tensor, normalized: Tensor, ys: list[Tensor], zs: list[Tensor]
) -> Tensor:
    """Gradient with respect to the normalised input A, given the gradient of Y_N.

    The T = ½(3I − Z Y) of each step is recomputed instead of saved: one matmul per step buys
    a third less saved memory than autograd through the iterations (benchmarks/gcp_head.py).
    """
    eye = torch.eye(normalized.shape[-1], dtype=normalized.dtype, device=normalized.device)
    a_t = normalized.mT
    if not ys:  # Y = ½ A (3I − A)
        return 0.5 * (grad @ (3.0 * eye - a_t) - a_t @ grad)
    y_t, z_t = ys[-1].mT, zs[-1].mT
    # Y_N = ½ Y W with W = 3I − Z Y
    d_w = 0.5 * y_t @ grad
    d_y = 0.5 * grad @ (3.0 * eye - y_t @ z_t) - z_t @ d_w
    d_z = -d_w @ y_t
    for y, z in zip(reversed(ys[:-1]), reversed(zs[:-1])):
        # Y' = Y T, Z' = T Z with T = ½ (3I − Z Y)
        y_t, z_t = y.mT, z.mT
        t_t = 0.5 * (3.0 * eye - y_t @ z_t)
        d_t = y_t @ d_y + d_z @ z_t
        d_y, d_z = d_y @ t_t - 0.5 * z_t @ d_t, t_t @ d_z - 0.5 * d_t @ y_t
    # Z0 = ½ (3I − A), Y0 = A Z0
    z0_t = zs[0].mT
    return d_y @ z0_t - 0.5 * (d_z + a_t @ d_y)


class _MatrixSqrt(torch.autograd.Function):
    """iSQRT: trace-normalised Newton–Schulz square root with a closed-form backward."""

    @staticmethod
    def forward(ctx, cov: Tensor, iterations: int, eps: float) -> Tensor:  # type: ignore[override]
        trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1) + eps
        normalized = cov / trace[:, None, None]
        root, ys, zs = _newton_schulz(normalized, iterations)
        ctx.save_for_backward(cov, normalized, root, trace, *ys, *zs)
        ctx.history = len(ys)
        return root * trace.sqrt()[:, None, None]

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        cov, normalized, root, trace, *history = ctx.saved_tensors
        ys, zs = history[: ctx.history], history[ctx.history :]
        sqrt_trace = trace.sqrt()[:, None, None]
        grad_trace = (grad * root).sum(dim=(1, 2)) / (2.0 * sqrt_trace[:, 0, 0])
        d_a = _newton_schulz_backward(grad * sqrt_trace, normalized, ys, zs)
        # A = Σ / tr(Σ): dΣ = dA / tr − <dA, Σ> / tr² · I, plus the post-compensation term.
        trace_term = grad_trace - (d_a * cov).sum(dim=(1, 2)) / trace**2
        grad_cov = d_a / trace[:, None, None]
        grad_cov = grad_cov + torch.diag_embed(trace_term[:, None].expand(-1, cov.shape[-1]))
        return grad_cov, None, None


def matrix_sqrt(cov: Tensor, iterations: int = DEFAULT_ITERATIONS, eps: float = DEFAULT_EPS) -> Tensor:
    """Square root of a batch of SPD matrices (B, C, C) by iSQRT (Newton–Schulz)."""
    if cov.dim() != 3 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(f"matrix_sqrt expects a (B, C, C) batch, got shape {tuple(cov.shape)}")
    return _MatrixSqrt.apply(cov, iterations, eps)


def upper_triangle(matrices: Tensor) -> Tensor:
    """Row-major upper triangle including the diagonal: (B, C, C) -> (B, C(C+1)/2)."""
    size = matrices.shape[-1]
    rows, cols = torch.triu_indices(size, size, device=matrices.device)
    return matrices.flatten(1)[:, rows * size + cols]


def representation_dim(channels: int) -> int:
    """Length of the triu vector of a channels×channels covariance."""
    return channels * (channels + 1) // 2


class CovarianceSqrt(nn.Module):
    """Covariance → iSQRT → triu vector; parameter-free, always float32 (or float64)."""

    def __init__(self, iterations: int = DEFAULT_ITERATIONS, eps: float = DEFAULT_EPS) -> None:
        super().__init__()
        self.iterations = iterations
        self.eps = eps

    def forward(self, features: Tensor) -> Tensor:
        dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=features.device.type, enabled=False):
            cov = covariance(features.to(dtype))
            return upper_triangle(matrix_sqrt(cov, self.iterations, self.eps))

    def extra_repr(self) -> str:
        return f"iterations={self.iterations}, eps={self.eps}"


def reduction_layers(
    in_channels: int, out_channels: int, activation: type[nn.Module], kaiming_init: bool = True
) -> list[nn.Module]:
    """The original 1×1 dimension reduction: conv (no bias), BN, activation.

    ``kaiming_init`` mirrors the backbone's own init (ShuffleNetV2 keeps PyTorch's default).
    """
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
    if kaiming_init:
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return [conv, nn.BatchNorm2d(out_channels), activation(inplace=True)]


class GCPHead(nn.Sequential):
    """1×1 reduction + BN + activation + iSQRT-COV; indices 0/1 match the original state_dict.

    Used under the original attribute name ``dimension_reduction`` by MobileNetV2 and
    ShuffleNetV2, whose checkpoints hold ``dimension_reduction.{0,1}.*``.
    """

    def __init__(
        self,
        in_channels: int,
        reduction_dim: int = 256,
        activation: type[nn.Module] = nn.ReLU,
        iterations: int = DEFAULT_ITERATIONS,
        eps: float = DEFAULT_EPS,
        kaiming_init: bool = True,
    ) -> None:
        super().__init__(
            *reduction_layers(in_channels, reduction_dim, activation, kaiming_init),
            CovarianceSqrt(iterations, eps),
        )
        self.out_features = representation_dim(reduction_dim)

"""A per-image NumPy version of the 15 ImageNet-C-bar / CIFAR-10-C-bar corruptions, written for
the tests from the published definitions (Mintun et al. 2021, facebookresearch/augmentation-
corruption, imagenet_c_bar/corrupt.py): the oracle the batched tensor code is measured against.

Every corruption is ``sample_<name>(rs, size, value)`` — the generator's parameter draws from a
``numpy.random.RandomState``, including the seeded inner generators it uses for rays, grids,
phases and gradient tables — and ``apply_<name>(image, value, **params)`` on one uint8
(size, size, 3) image, vectorised over its pixels, returning uint8 as the generator stores it.
SciPy's ``ndimage`` and scikit-image's ``line_aa`` are called where the generator calls them.
``value`` is the generator's severity value (its CSV tables).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.fftpack import ifft2
from skimage.draw import line_aa

LUMA = np.array([0.2126, 0.7152, 0.0722])


def level(value: float, maximum: float) -> float:
    return float(value) * maximum / 10.0


def store(out: np.ndarray) -> np.ndarray:
    """The generators' last step: np.clip(…, 0, 255).astype(np.uint8)."""
    return np.clip(out, 0, 255).astype(np.uint8)


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row (y) and column (x) of every pixel, (size, size) each."""
    return np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")


def bilinear(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """utils/image.py's bilinear_interpolation at every (row, col): corners outside are 0."""
    h, w = image.shape[:2]
    top, left = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    out = np.zeros(rows.shape + image.shape[2:])
    for dr in (0, 1):
        for dc in (0, 1):
            r, c = top + dr, left + dc
            weight = (1 - np.abs(rows - r)) * (1 - np.abs(cols - c))
            inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            value = np.where(inside[..., None], image[r.clip(0, h - 1), c.clip(0, w - 1)], 0.0)
            out += weight[..., None] * value
    return out


# --------------------------------------------------------------------------- ImageNet-C-bar only

def sample_single_frequency_greyscale(rs, size, value):
    freq_mag = rs.uniform(low=-np.pi, high=np.pi)
    freq_2 = rs.uniform(low=-abs(freq_mag), high=abs(freq_mag))
    freq = np.array([freq_mag, freq_2])[rs.permutation(2)]
    return {"freq": freq, "phase": rs.uniform(low=0, high=2 * np.pi)}


def apply_single_frequency_greyscale(image, value, freq, phase):
    y, x = grid(image.shape[0])
    noise = np.sin(x * freq[0] + y * freq[1] + phase)
    return store(image + level(value, 196) * noise[..., None])


def sample_cocentric_sine_waves(rs, size, value):
    return {"offset": rs.uniform(low=0, high=size, size=2), "freq": rs.uniform(low=0, high=10),
            "amplitude": rs.uniform(low=0, high=size / 10), "ring_width": rs.uniform(low=0, high=size / 10)}


def apply_cocentric_sine_waves(image, value, offset, freq, amplitude, ring_width):
    y, x = grid(image.shape[0])
    angle = np.arctan2(x - offset[0], y - offset[1]) * freq
    distance = ((np.sqrt((x - offset[0]) ** 2 + (y - offset[1]) ** 2) + np.sin(angle) * amplitude) % ring_width) \
        / ring_width - 0.5
    return store(image + level(value, 128) * distance[..., None])


def sample_plasma_noise(rs, size, value):
    return {"time": rs.uniform(low=0.0, high=6 * np.pi), "iterations": rs.randint(low=4, high=7),
            "sharpness": rs.uniform(low=0.5, high=1.0), "scale": rs.uniform(low=0.075, high=0.2) * size}


def apply_plasma_noise(image, value, time, iterations, sharpness, scale):
    y, x = grid(image.shape[0])
    x, y = x / scale, y / scale
    i = [1.0, 1.0, 1.0, 0.0]
    for _ in range(int(iterations)):
        r0 = np.cos(y * i[0] - i[3] + time / i[1]) / i[2]
        r1 = np.sin(x * i[0] - i[3] + time / i[1]) / i[2]
        r0, r1 = r0 - 0.3 * r1, r1 + 0.3 * r0
        x, y = x + r0, y + r1
        i = [i[0] * 1.93, i[1] * 1.15, i[2] * (2.25 - sharpness), i[3] * time * i[1]]
    noise = np.stack((np.sin(x - time), np.sin((x + y + np.sin(time)) * 0.5), np.sin(y + time)), axis=-1)
    intensity = level(value, 64)
    return store((1 - intensity / 255) * image + intensity * noise)


def caustic_light(size, time, scale):
    y, x = grid(size)
    p0 = (y / scale % 1) * 6.28318530718 - 250
    p1 = (x / scale % 1) * 6.28318530718 - 250
    i0, i1, c, inten = p0.copy(), p1.copy(), 1.0, 0.005
    for n in range(5):
        t = time * (1.0 - (3.5 / (n + 1)))
        i0, i1 = p0 + np.cos(t - i0) + np.sin(t + i1), p1 + np.sin(t - i1) + np.cos(t + i0)
        length = np.sqrt((p0 / (np.sin(i0 + t) / inten)) ** 2 + (p1 / (np.cos(i1 + t) / inten)) ** 2)
        c = c + 1.0 / length
    c = 1.17 - (c / 5.0) ** 1.4
    return np.clip(np.abs(c) ** 8.0, 0, 1)


def sample_caustic_refraction(rs, size, value):
    return {"time": rs.uniform(low=0.5, high=2.0), "size": rs.uniform(low=0.75, high=1.25) * size}


def apply_caustic_refraction(image, value, time, size):
    n = image.shape[0]
    eta, lens_scale, lighting = 4.0, level(value, 0.5 * n), level(value, 2.0)
    light = caustic_light(n, time, size)
    light = ndimage.gaussian_filter(np.stack([light] * 3, axis=2), sigma=1)  # the generator filters (H, W, 3)
    luma = np.pad(light @ LUMA, 1)  # outside the image: a black pixel
    north, south = luma[1:-1, :-2], luma[1:-1, 2:]
    west, east = luma[:-2, 1:-1], luma[2:, 1:-1]
    normal = np.stack((east - west, south - north, np.ones_like(east)), axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    # refract((0, 0, 1), normal, eta): Snell's law in the plane of the view and the normal
    cos_in = normal[..., 2]
    angle = np.arccos(np.clip(cos_in, -1, 1))
    bent = np.arcsin(np.sin(angle) / eta)
    spectator = np.cross(np.array([0.0, 0.0, 1.0]), normal)
    with np.errstate(invalid="ignore", divide="ignore"):
        spectator /= np.linalg.norm(spectator, axis=-1, keepdims=True)
    orthogonal = np.cross(normal, spectator)
    refracted = np.cos(bent)[..., None] * normal + np.sin(bent)[..., None] * orthogonal
    refracted = np.where((np.abs(cos_in) >= 1.0 - 1e-3)[..., None], np.array([0.0, 0.0, 1.0]), refracted)
    shift = np.round(refracted * lens_scale, 3)
    y, x = grid(n)
    out = bilinear(image.astype(np.float32) / 255, y + shift[..., 0], x + shift[..., 1])
    out += ((north - south) * lighting + (east - west) * lighting)[..., None]
    return np.clip((np.clip(out, 0, 1) * 255).astype(np.uint8), 0, 255)


def sample_perlin_noise(rs, size, value):
    """The generator's PerlinNoiseGenerator(RandomState(seed)): 514 gradients (only the first 256
    survive its table copy) and 256 swaps; a zero gradient stays zero, as in the tensor code."""
    state = np.random.RandomState(seed=rs.randint(low=0, high=2**32))
    raw = np.array([(state.randint(low=0, high=2**31, size=2) % 512 - 256) / 256 for _ in range(514)])
    norm = np.linalg.norm(raw, axis=1, keepdims=True)
    gradients = np.where(norm > 0, raw / np.where(norm > 0, norm, 1), 0.0)[:256]
    table = np.arange(514)
    for i in np.arange(255, -1, -1):
        j = state.randint(low=0, high=2**31) % 256
        table[i], table[j] = table[j], table[i]
    return {"gradients": gradients, "permutation": table[:256]}


def perlin(x, y, permutation, gradients):
    """PerlinNoiseGenerator.noise(x, y) on arrays, with the tables extended as the generator does."""
    p = np.concatenate((permutation, permutation, permutation[:2]))
    g = np.concatenate((gradients, gradients, gradients[:2]))
    t = x + 4096
    bx0 = t.astype(np.int64) % 256
    bx1, rx0 = (bx0 + 1) % 256, t % 1
    rx1 = rx0 - 1.0
    t = y + 4096
    by0 = t.astype(np.int64) % 256
    by1, ry0 = (by0 + 1) % 256, t % 1
    ry1 = ry0 - 1.0
    i, j = p[bx0], p[bx1]
    b00, b10, b01, b11 = p[i + by0], p[j + by0], p[i + by1], p[j + by1]
    sx, sy = rx0**2 * (3.0 - 2.0 * rx0), ry0**2 * (3.0 - 2.0 * ry0)
    u, v = rx0 * g[b00, 0] + ry0 * g[b00, 1], rx1 * g[b10, 0] + ry0 * g[b10, 1]
    a = u + sx * (v - u)
    u, v = rx0 * g[b01, 0] + ry1 * g[b01, 1], rx1 * g[b11, 0] + ry1 * g[b11, 1]
    b = u + sx * (v - u)
    return 1.5 * (a + sy * (b - a))


def apply_perlin_noise(image, value, gradients, permutation):
    n = image.shape[0]
    y, x = grid(n)
    m = 32 * n / 224
    nx, ny = y / m, x / m  # np.matmul([y, x], I / m)
    turbulence, f = 0.0, 1.0
    while f <= 16.0:
        turbulence = turbulence + np.abs(perlin(f * nx, f * ny, permutation, gradients)) / f
        f *= 2
    noise = np.clip(0.5 * turbulence + 0.5, 0, 1.0)[..., None]
    alpha = level(value, 0.50)
    return store((1 - alpha) * image.astype(np.float32) + 255 * alpha * noise)


# --------------------------------------------------------------------------- both sets

def spectrum_phases(state, size):
    phases = state.uniform(low=0, high=2 * np.pi, size=(size, size // 2))
    if size % 2 == 0:
        return phases
    center = state.uniform(low=0, high=2 * np.pi, size=(size // 2, 1))
    return phases, center


def spectral_noise(phases, power):
    size = power.shape[0]
    if isinstance(phases, tuple):
        half, center = phases
        center = np.concatenate((center, np.array([[0.0]]), center[::-1, :]), axis=0)
        full = np.concatenate((half, center, half[::-1, ::-1]), axis=1)
    else:
        full = np.concatenate((phases, phases[::-1, ::-1]), axis=1)
    spectrum = power * (np.cos(full) + np.sin(full) * 1j)
    spectrum = np.roll(np.roll(spectrum, size // 2, axis=0), size // 2, axis=1)
    noise = np.real(ifft2(spectrum))
    return noise / np.std(noise)


def distances(size):
    y, x = grid(size)
    return np.sqrt((x - size / 2) ** 2 + (y - size / 2) ** 2)


def _phase_params(phases):
    return {"phases": phases[0], "center_freq": phases[1][:, 0]} if isinstance(phases, tuple) else {"phases": phases}


def _phase_arg(phases, center_freq):
    return phases if center_freq is None else (phases, center_freq[:, None])


def sample_blue_noise_sample(rs, size, value):
    state = np.random.RandomState(seed=rs.randint(low=0, high=2**32))
    return _phase_params(spectrum_phases(state, size))


def apply_blue_noise_sample(image, value, phases, center_freq=None):
    noise = spectral_noise(_phase_arg(phases, center_freq), distances(image.shape[0]))
    mask = noise > level(value, 3.0) - 2.5
    return store(image * mask[..., None])


def sample_brownish_noise(rs, size, value):
    state = np.random.RandomState(seed=rs.randint(low=0, high=2**32))
    channels = [spectrum_phases(state, size) for _ in range(3)]
    if size % 2 == 0:
        return {"phases": np.stack(channels)}
    return {"phases": np.stack([c[0] for c in channels]), "center_freq": np.stack([c[1][:, 0] for c in channels])}


def apply_brownish_noise(image, value, phases, center_freq=None):
    power = 1 / (distances(image.shape[0]) ** 2 + 1)
    noise = np.stack([spectral_noise(_phase_arg(phases[c], None if center_freq is None else center_freq[c]), power)
                      for c in range(3)], axis=2)
    return store(image + level(value, 64) * noise)


def _cells(size, scale):
    return int(4 * size // scale)


def sample_checkerboard_cutout(rs, size, value):
    angle = rs.uniform(low=0, high=2 * np.pi)
    scale = max(rs.uniform(low=0.1, high=0.25) * size, 1)
    state = np.random.RandomState(seed=rs.randint(low=0, high=2**32))
    cells = _cells(size, scale)
    return {"angle": angle, "scale": scale, "grid": state.uniform(size=(cells, cells)) < level(value, 1.0)}


def apply_checkerboard_cutout(image, value, angle, scale, grid):
    """``grid``: at least the generator's cells × cells; its top-left block is the grid."""
    n = image.shape[0]
    cells = _cells(n, scale)
    grid = grid[:cells, :cells]
    y, x = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="ij")
    nx = (np.cos(angle) * y + np.sin(angle) * x) / scale
    ny = (-np.sin(angle) * y + np.cos(angle) * x) / scale
    other = (nx % 2).astype(np.int64) != (ny % 2).astype(np.int64)
    cut = grid[np.trunc(nx).astype(np.int64), np.trunc(ny).astype(np.int64)]  # negative: Python wrap-around
    keep = other | ~cut
    return store(np.where(keep[..., None], image, 128))


def star_shares(n, center, ray_lengths, exponent):
    """The sparkle kernel's f at every pixel, for one star."""
    y, x = grid(n)
    d0, d1 = y - center[0], x - center[1]
    dist = np.sqrt(d0**2 + d1**2)
    rays = len(ray_lengths)
    d = (np.arctan2(d1, d0) + np.pi) / (2 * np.pi) * rays
    i = d.astype(np.int64)
    f = d - i
    lengths = np.asarray(ray_lengths)
    length = lengths[i % rays] + f * (lengths[(i + 1) % rays] - lengths[i % rays])
    g = (length**2 / (dist**2 + 1e-4)) ** exponent
    return np.clip((1 - (f - 0.5) ** 2) * g, 0, 1)


def sample_sparkles(rs, size, value):
    centers = rs.uniform(low=0, high=size, size=(5, 2))
    radius = level(value, 0.1) * size
    seed = rs.randint(low=0, high=2**32)
    nrays = rs.randint(low=50, high=200, size=5)
    state = np.random.RandomState(seed=seed)
    lengths = np.zeros((5, 199))
    for k, rays in enumerate(nrays):
        lengths[k, :rays] = [max(1, radius + 25 / 100.0 * radius * state.randn()) for _ in range(rays)]
    return {"centers": centers, "nrays": nrays, "ray_lengths": lengths}


def apply_sparkles(image, value, centers, nrays, ray_lengths):
    out = image.astype(np.float32)
    for center, rays, lengths in zip(centers, nrays, ray_lengths):
        f = star_shares(image.shape[0], center, lengths[: int(rays)], (100 - 50) / 50.0)
        out = out.astype(np.float32) + f[..., None] * (255 - out.astype(np.float32))
    return store(out)


def sample_inverse_sparkles(rs, size, value):
    center = rs.uniform(low=0.25, high=0.75, size=2) * size
    radius = 0.25 * size
    seed = rs.randint(low=0, high=2**32)
    rays = rs.randint(low=50, high=200)
    state = np.random.RandomState(seed=seed)
    lengths = np.zeros(199)
    lengths[:rays] = [radius + 25 / 100.0 * radius * state.randn() for _ in range(rays)]
    return {"center": center, "rays": rays, "ray_lengths": lengths}


def apply_inverse_sparkles(image, value, center, rays, ray_lengths):
    amount = 100 - level(value, 65)
    f = star_shares(image.shape[0], center, ray_lengths[: int(rays)], (100 - amount) / 50.0)
    return store(255 + f[..., None] * (image.astype(np.float32) - 255))


# --------------------------------------------------------------------------- CIFAR-10-C-bar only

def _twirl_cells(size):
    return 5 if size == 224 else 3


def sample_pinch_and_twirl(rs, size, value):
    cells = _twirl_cells(size)
    angles = np.array([rs.choice([1, -1]) * level(value, np.pi / 2) for _ in range(cells**2)])
    return {"angles": angles.reshape(cells, cells)}


def apply_pinch_and_twirl(image, value, angles):
    """The generator warps cell after cell of ``out`` in place; each cell is computed from
    ``out`` as it is when the cell's turn comes."""
    n = image.shape[0]
    cells = _twirl_cells(n)
    amount = level(value, 0.4) + 0.1
    out = image.copy().astype(np.float32)
    step = n // cells
    radius = step / 2
    for i in range(cells):
        for j in range(cells):
            left, up = i * step, j * step
            center = np.array([up + radius, left + radius])
            y, x = np.meshgrid(np.arange(up, up + step, dtype=np.float64), np.arange(left, left + step,
                                                                                      dtype=np.float64), indexing="ij")
            dx, dy = y - center[0], x - center[1]
            dist = np.sqrt(dx**2 + dy**2)
            warp = (dist <= radius) & (np.round(dist, 3) != 0.0)
            d = dist / radius
            with np.errstate(divide="ignore"):
                t = np.where(warp, np.sin(np.pi * 0.5 * d) ** (-amount), 1.0)
            dx, dy = dx * t, dy * t
            a = angles[i, j] * (1 - d) ** 2
            rows = np.where(warp, center[0] + dx * np.cos(a) - dy * np.sin(a), y)
            cols = np.where(warp, center[1] + dx * np.sin(a) + dy * np.cos(a), x)
            out[up : up + step, left : left + step] = bilinear(out, rows, cols)
    return store(out)


def sample_ripple(rs, size, value):
    return {"wavelengths": rs.uniform(low=0.1, high=0.3, size=2) * size,
            "phases": rs.uniform(low=0, high=2 * np.pi, size=2)}


def apply_ripple(image, value, wavelengths, phases):
    n = image.shape[0]
    amplitudes = np.array([level(value, 0.025)] * 2) * n
    y, x = grid(n)
    rows = y + amplitudes[0] * np.sin(2 * np.pi * y / wavelengths[0] + phases[0])
    cols = x + amplitudes[1] * np.sin(2 * np.pi * x / wavelengths[1] + phases[1])
    return store(bilinear(image, rows, cols))


def sample_circular_motion_blur(rs, size, value):
    return {}


def apply_circular_motion_blur(image, value):
    amount = level(value, 15)
    num = 21
    work = image.astype(np.float32) / 255
    out = np.zeros_like(work)
    factors = []
    for i in range(num):
        angle = (2 * i / (num - 1) - 1) * amount
        factor = np.exp(-2 * (2 * i / (num - 1) - 1) ** 2)
        out += factor * ndimage.rotate(work, angle, reshape=False)
        factors.append(factor)
    out /= sum(factors)
    return np.clip(out * 255, 0, 255).astype(np.uint8)


def sample_lines(rs, size, value):
    angle = rs.uniform(low=0.0, high=2 * np.pi)
    variation = rs.uniform(low=0.1, high=1.0)
    state = np.random.RandomState(seed=rs.randint(low=0, high=2**32))
    count = int(level(value, 1.0) * size)
    return {"angle": angle, "angle_variation": variation, "line_draws": state.uniform(size=(count, 3))}


def apply_lines(image, value, angle, angle_variation, line_draws):
    n = image.shape[0]
    out = image.copy()
    for u_x, u_y, u_a in line_draws:
        x, y = n * u_x, n * u_y
        a = angle + 2 * np.pi * angle_variation * (u_a - 0.5)
        s, c = np.sin(a) * n, np.cos(a) * n
        rows, cols, val = line_aa(int(x - c), int(y - s), int(x + c), int(y + s))
        keep = (rows >= 0) & (cols >= 0) & (rows < n) & (cols < n)
        rows, cols, val = rows[keep], cols[keep], val[keep]
        alpha = val.reshape(-1, 1)
        out[rows, cols, :] = (1.0 - alpha) * out[rows, cols, :].astype(np.float32) + alpha * 128  # uint8: truncates
    return out.astype(np.uint8)


def sample_transverse_chromatic_abberation(rs, size, value):
    return {"order": rs.permutation(3)}


def apply_transverse_chromatic_abberation(image, value, order):
    scale = level(value, 0.5)
    scales = np.array([1.0, 1.0 + scale / 2, 1.0 + scale])[order]
    n = image.shape[0]
    out = image.copy()
    for c in range(3):
        zoomed = ndimage.zoom(image[:, :, c], scales[c], prefilter=False)
        edge = (zoomed.shape[0] - n) // 2
        out[:, :, c] = zoomed[edge : edge + n, edge : edge + n]
    return out.astype(np.uint8)


# --------------------------------------------------------------------------- driving them

def sample(name: str, rs: np.random.RandomState, size: int, value: float) -> dict:
    return globals()[f"sample_{name}"](rs, size, value)


def apply(name: str, image: np.ndarray, value: float, params: dict) -> np.ndarray:
    return globals()[f"apply_{name}"](image, value, **params)


def jpeg_q85(image: np.ndarray) -> np.ndarray:
    """ImageNet-C-bar's files: Image.fromarray(np.uint8(image)).save(path, quality=85, optimize=True)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=85, optimize=True)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def corrupt_one(name: str, image: np.ndarray, value: float, seed: int, jpeg: bool) -> np.ndarray:
    """One uint8 image corrupted as the generator does it: its own draws, then the storage step."""
    rs = np.random.RandomState(seed)
    out = apply(name, image, value, sample(name, rs, image.shape[0], value))
    return jpeg_q85(out) if jpeg else out

"""The 15 corruptions of ImageNet-C-bar and CIFAR-10-C-bar (Mintun et al., "On Interaction
Between Augmentations and Corruptions in Natural Corruption Robustness", NeurIPS 2021) as
batched tensor functions, written from the published definitions
(facebookresearch/augmentation-corruption, ``imagenet_c_bar/corrupt.py``). Names are the
generator's, misspellings included, so they match the released files."""

from .common import CBarCorruption, level
from .occlusions import checkerboard_cutout, lines
from .patterns import cocentric_sine_waves, plasma_noise, single_frequency_greyscale
from .perlin import perlin_noise
from .sparkles import inverse_sparkles, sparkles
from .spectral import blue_noise_sample, brownish_noise
from .splines import circular_motion_blur, transverse_chromatic_abberation
from .warps import caustic_refraction, pinch_and_twirl, ripple

CORRUPTIONS: dict[str, CBarCorruption] = {
    "blue_noise_sample": blue_noise_sample, "brownish_noise": brownish_noise,
    "caustic_refraction": caustic_refraction, "checkerboard_cutout": checkerboard_cutout,
    "circular_motion_blur": circular_motion_blur, "cocentric_sine_waves": cocentric_sine_waves,
    "inverse_sparkles": inverse_sparkles, "lines": lines, "perlin_noise": perlin_noise,
    "pinch_and_twirl": pinch_and_twirl, "plasma_noise": plasma_noise, "ripple": ripple,
    "single_frequency_greyscale": single_frequency_greyscale, "sparkles": sparkles,
    "transverse_chromatic_abberation": transverse_chromatic_abberation,
}

__all__ = ["CORRUPTIONS", "CBarCorruption", "level"]

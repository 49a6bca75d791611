"""Structural similarity (SSIM, Wang et al. 2004), the image metric the IIS's visual dimension uses.

The reference definition: luma of 8-bit images, an 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
K2 = 0.03, L = 255, the mean of the SSIM map over the valid (unpadded) region. No scikit-image here,
so it is written out with ``scipy.ndimage``.

    ssim(frame_a, frame_b)   # (H, W, 3) or (H, W) uint8 -> float in [-1, 1]
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

SIGMA = 1.5
TRUNCATE = 3.5  # an 11x11 window, as in the reference implementation
K1, K2, L = 0.01, 0.03, 255.0


def luma(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an RGB image, or the image itself if it is grey. (H, W[, 3]) -> (H, W) float64"""
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 3 and x.shape[2] == 3:
        return x @ np.array([0.299, 0.587, 0.114])
    if x.ndim != 2:
        raise ValueError(f"ssim: expected an (H, W) or (H, W, 3) image, got shape {x.shape}")
    return x


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two images of the same shape (8-bit range)."""
    x, y = luma(a), luma(b)
    if x.shape != y.shape:
        raise ValueError(f"ssim: images differ in shape: {x.shape} vs {y.shape}")
    if min(x.shape) < 11:
        raise ValueError(f"ssim: images must be at least 11x11, got {x.shape}")

    def blur(z: np.ndarray) -> np.ndarray:
        return gaussian_filter(z, SIGMA, truncate=TRUNCATE)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (K1 * L) ** 2, (K2 * L) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    pad = 5  # drop the border where the window runs off the image
    return float(s[pad:-pad, pad:-pad].mean())

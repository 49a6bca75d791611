"""The log-mel front end of the talker's judges (phoneme recogniser and speaker encoder).

Both judges read 80-band log-mel frames at 100 Hz from 24 kHz audio. The numbers come from the
face's feature code (``anima.face.audio_features.log_mel``: causal Hann windows, HTK mel, dB scaled
to about [-2, 2]) with one row per 10 ms hop instead of the face's 40 ms ticks, so there is one
log-mel implementation in the project. What this module adds is the input contract: the judges
score other models' output, so bad audio must fail loudly (wrong type, wrong shape, empty) rather
than be scored as silence.

    python -c "import numpy as np; from anima.talker.model.features import judge_features; \
print(judge_features(np.zeros(24000, 'float32')).shape)"   # (100, 80)
"""

from __future__ import annotations

import numpy as np

from anima.face.audio_features import AudioFeatureConfig, log_mel

SAMPLE_RATE = 24_000
FRAME_RATE = 100  # feature frames per second (10 ms hop)
N_MELS = 80
FEATURES = AudioFeatureConfig(sample_rate=SAMPLE_RATE, fps=FRAME_RATE, subframes=1, n_fft=1024, n_mels=N_MELS)
FLOOR = (FEATURES.floor_db + FEATURES.offset_db) / FEATURES.scale_db  # the feature value of digital silence


def check_samples(samples: object, who: str) -> np.ndarray:
    """``samples`` as a (N,) float32 array, or a clear error naming ``who`` and what was wrong."""
    if not isinstance(samples, np.ndarray):
        raise TypeError(f"{who}: expected samples as a numpy array (N,) float32 at {SAMPLE_RATE} Hz, "
                        f"got {type(samples).__name__}")
    if samples.dtype.kind not in "fiu":
        raise TypeError(f"{who}: expected real-valued samples, got dtype {samples.dtype}")
    if samples.ndim != 1:
        raise ValueError(f"{who}: expected mono samples of shape (N,), got shape {samples.shape}")
    if samples.size == 0:
        raise ValueError(f"{who}: the audio is empty (0 samples)")
    if samples.dtype.kind in "iu":
        raise TypeError(f"{who}: expected float samples in [-1, 1], got integer dtype {samples.dtype} "
                        "(divide int16 PCM by 32768)")
    return samples.astype(np.float32, copy=False)


def judge_features(samples: np.ndarray, who: str = "judge_features") -> np.ndarray:
    """Log-mel frames of 24 kHz mono audio. # (ceil(N / 240), 80) float32"""
    return log_mel(check_samples(samples, who), FEATURES)

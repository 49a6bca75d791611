"""The shared learning-rate schedule: linear warm-up, cosine down to the floor."""

import math

import pytest

from anima.train.schedule import lr_at

pytestmark = pytest.mark.unit


def test_warmup_then_cosine_to_the_floor():
    assert lr_at(0, 1000, 1e-3, 100) == pytest.approx(1e-5)
    assert lr_at(99, 1000, 1e-3, 100) == pytest.approx(1e-3)
    assert lr_at(100, 1000, 1e-3, 100) == pytest.approx(1e-3)
    assert lr_at(550, 1000, 1e-3, 100) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(1000, 1000, 1e-3, 100) == pytest.approx(1e-4)
    assert lr_at(5000, 1000, 1e-3, 100, floor=0.05) == pytest.approx(5e-5)  # past the end: held at the floor
    values = [lr_at(s, 1000, 1.0, 100) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False)) and not any(math.isnan(v) for v in values)

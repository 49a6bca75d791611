"""``anima body import`` and the body CLI's handling of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from anima.body.cli import main
from anima.testing.bvh import MOCAP, bvh_text

pytestmark = pytest.mark.unit


def test_import_synthetic_bvh(tmp_path, capsys):
    frames = np.zeros((30, 69))
    frames[:, 1] = 93.0
    frames[:, 2] = np.arange(30) * 4.0  # walking forward 1.2 m/s at 30 fps
    src = tmp_path / "walk.bvh"
    src.write_text(bvh_text(frames=frames))
    assert main(["body", "import", str(src)]) == 0
    out = np.load(tmp_path / "walk.npz")
    assert out["features"].shape == (19, 263)  # 30 frames at 30 fps -> 20 at 20 fps -> 19 feature frames
    assert out["joints"].shape == (19, 22, 3)
    assert "rig generic" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("Frame Time: 0.0333333", "Frame Time: -1"), "wrong frame time"),
        (lambda t: t.replace("Frames: 3", "Frames: 0"), "zero-length clip"),
        (lambda t: t.replace("OFFSET", "OFFSE", 1), "unexpected 'OFFSE'"),
        (lambda t: t[: t.rindex("\n", 0, len(t) - 1)] + "\n0 nan" + " 0" * 67 + "\n", "is nan"),
        (lambda t: t.replace("mixamorig:Left", "mixamorig:Port").replace("mixamorig:Right", "mixamorig:Starboard"),
         "could not find joints for left_hip"),
    ],
    ids=["frame-time", "zero-length", "malformed", "nan", "unknown-rig"],
)
def test_import_bad_input_exits_2_with_file_and_reason(tmp_path, capsys, edit, message):
    src = tmp_path / "bad.bvh"
    src.write_text(edit(bvh_text()))
    assert main(["body", "import", str(src)]) == 2
    err = capsys.readouterr().err
    assert message in err and "bad.bvh" in err
    assert not (tmp_path / "bad.npz").exists()


def test_import_one_frame_clip_is_too_short(tmp_path, capsys):
    frames = np.zeros((1, 69))
    src = tmp_path / "one.bvh"
    src.write_text(bvh_text(frames=frames))
    assert main(["body", "import", str(src)]) == 2
    assert "too short" in capsys.readouterr().err


@pytest.mark.skipif(not MOCAP.is_dir(), reason="../shared/data/mocap not present")
def test_import_real_bandai_clip(tmp_path):
    src = MOCAP / "bandai-namco-1" / "data" / "dataset-1_bye_normal_001.bvh"
    out = tmp_path / "bye.npz"
    assert main(["body", "import", str(src), "-o", str(out)]) == 0
    joints = np.load(out)["joints"]
    assert joints[:, :, 1].min() == pytest.approx(0.0, abs=1e-6)  # on the floor
    assert 1.3 < joints[:, 15, 1].max() < 1.8


def test_train_rejects_unknown_config_key(capsys):
    assert main(["body", "train", "dit", "--set", "wdth=3", "--steps", "1"]) == 2
    assert "unknown key" in capsys.readouterr().err

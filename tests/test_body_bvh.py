"""BVH reader, forward kinematics and rig mapping: synthetic files and both real mocap rigs."""

from __future__ import annotations

import numpy as np
import pytest

from anima.body.data.bvh import BVHError, read_bvh
from anima.body.data.rigs import RigError, detect_rig, to_humanml_joints
from anima.body.skeleton import REST_JOINTS
from anima.testing.bvh import MOCAP, bvh_text

pytestmark = pytest.mark.unit

BANDAI_CLIP = MOCAP / "bandai-namco-1" / "data" / "dataset-1_bow_normal_001.bvh"
CMU_CLIP = MOCAP / "cmu-iclone" / "005" / "005_01.bvh"
CMU_ZUP_CLIP = MOCAP / "cmu-iclone" / "002" / "002_01.bvh"  # RL_BoneRoot variant
needs_mocap = pytest.mark.skipif(not MOCAP.is_dir(), reason="../shared/data/mocap not present")


def _replace(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def test_reads_synthetic_file_and_fk_matches_rest_pose():
    bvh = read_bvh("synthetic.bvh", text=bvh_text())
    assert bvh.num_frames == 3 and abs(bvh.fps - 30.0) < 1e-3
    assert len(bvh.joint_names) == 22
    rig = detect_rig(bvh)
    joints = to_humanml_joints(bvh, rig)  # cm -> m detected, Y up kept
    np.testing.assert_allclose(joints[0], REST_JOINTS, atol=1e-9)
    np.testing.assert_allclose(joints[2, 0] - joints[0, 0], [0, 0, 0.04], atol=1e-9)


def test_rotation_channel_order_is_intrinsic():
    frames = np.zeros((1, 6 + 63))
    frames[0, 1] = 93.0
    # Left hip (joint index 1 in file order below the root) rotated 90 deg about Z: the thigh
    # (pointing down, -Y) swings to +X.
    frames[0, 6 + 0] = 90.0  # LeftUpLeg Zrotation
    bvh = read_bvh("rot.bvh", text=bvh_text(frames=frames))
    _, pos = bvh.global_transforms()
    hip, knee = pos[0, bvh.index("mixamorig:LeftUpLeg")], pos[0, bvh.index("mixamorig:LeftLeg")]
    d = knee - hip
    assert d[0] > 30 and abs(d[1]) < 5


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("HIERARCHY", "HIERACHY", "expected HIERARCHY"),
        ("OFFSET 0.0000 0.0000 0.0000", "OFFSET 0 zero 0", "OFFSET values must be numbers"),
        ("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 4 Zrotation Xrotation Yrotation", "CHANNELS says 4"),
        ("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 3 Zrotation Wrotation Yrotation", "unknown channel"),
        ("Frames: 3", "Frames: 0", "zero-length clip"),
        ("Frames: 3", "Frames: 5", "header says Frames: 5"),
        ("Frame Time: 0.0333333", "Frame Time: 0", "wrong frame time"),
        ("Frame Time: 0.0333333", "Frame Time: 25", "wrong frame time"),
        ("Frame Time: 0.0333333", "Frame Time: fast", "Frame Time must be a number"),
        ("MOTION", "MOTON", "unexpected 'MOTON'"),
    ],
)
def test_malformed_files_name_file_and_line(old, new, message):
    text = _replace(bvh_text(), old, new)
    with pytest.raises(BVHError) as err:
        read_bvh("bad.bvh", text=text)
    assert message in str(err.value)
    assert str(err.value).startswith("bad.bvh:")
    line = int(str(err.value).split(":")[1])
    assert line >= 1


def test_error_line_points_at_the_bad_line():
    text = bvh_text()
    lines = text.splitlines()
    k = len(lines) - 2  # second frame line
    lines[k] = lines[k] + " 1.0"
    with pytest.raises(BVHError, match=rf"^bad\.bvh:{k + 1}: frame 1 has 70 values, expected 69"):
        read_bvh("bad.bvh", text="\n".join(lines))


def test_nan_channel_names_joint_and_channel():
    text = bvh_text()
    lines = text.splitlines()
    values = lines[-1].split()
    values[7] = "nan"  # LeftUpLeg Xrotation (root has 6 channels, then Z X Y of the first child)
    lines[-1] = " ".join(values)
    with pytest.raises(BVHError, match=r"channel Xrotation of joint 'mixamorig:LeftUpLeg' is nan"):
        read_bvh("nan.bvh", text="\n".join(lines))


def test_missing_braces_and_file():
    with pytest.raises(BVHError, match="missing"):
        read_bvh("cut.bvh", text=bvh_text().replace("}\nMOTION", "MOTION"))
    with pytest.raises(BVHError, match=r"^/no/such\.bvh:0: cannot read file"):
        read_bvh("/no/such.bvh")


def test_unknown_rig_lists_missing_joints():
    names = tuple(f"bone{i}" for i in range(22))
    bvh = read_bvh("robot.bvh", text=bvh_text(names=names, prefix=""))
    with pytest.raises(RigError) as err:
        detect_rig(bvh)
    msg = str(err.value)
    assert "unknown rig" in msg and "pelvis" in msg and "left_wrist" in msg and "bone0" in msg


def test_generic_rig_detects_units_and_z_up():
    # The same skeleton in metres with Z up: (x, y, z) -> (x, -z, y).
    text = bvh_text(prefix="", scale=1.0)
    bvh = read_bvh("zup.bvh", text=text)
    for j in bvh.joints:
        x, y, z = j.offset
        j.offset = np.array([x, -z, y])
    bvh.motion[:, [1, 2]] = np.stack([-bvh.motion[:, 2], bvh.motion[:, 1]], axis=-1)
    joints = to_humanml_joints(bvh)
    np.testing.assert_allclose(joints[0] - joints[0, :1], REST_JOINTS - REST_JOINTS[:1], atol=1e-6)


@needs_mocap
@pytest.mark.parametrize("path", [BANDAI_CLIP, CMU_CLIP, CMU_ZUP_CLIP], ids=["bandai", "cmu", "cmu-root-variant"])
def test_real_rigs_map_to_a_standing_person(path):
    bvh = read_bvh(path)
    rig = detect_rig(bvh)
    assert rig.name in ("bandai", "cmu-iclone")
    joints = to_humanml_joints(bvh, rig)
    assert np.isfinite(joints).all()
    height = np.median(joints[:, 15, 1] - joints[:, [7, 8], 1].mean(-1))
    assert 1.2 < height < 1.8  # metres, Y up
    # Left joints on the subject's left: +X when facing +Z (forward = up x (right - left)).
    across = joints[:, 2] - joints[:, 1]
    forward = np.cross([0.0, 1.0, 0.0], across)
    toes = joints[:, 10] - joints[:, 7]
    assert np.median(np.sign((forward * toes).sum(-1))) > 0
    # Bones keep their length through the motion (rigid FK): thigh length spread < 1 mm.
    thigh = np.linalg.norm(joints[:, 4] - joints[:, 1], axis=-1)
    assert thigh.std() < 1e-3

"""BVH motion-capture files: a strict reader and forward kinematics.

    bvh = read_bvh("clip.bvh")               # raises BVHError("clip.bvh:LINE: what is wrong")
    positions = bvh.global_positions()       # (T, J, 3) in the file's own units and axes
    names = bvh.joint_names                  # J names, in file order (end sites excluded)

Conventions (the common ones; Holden's and Blender's readers agree on the rotations):
- A joint's local transform is a translation followed by its rotation channels applied in the
  listed order as *intrinsic* rotations ("Zrotation Xrotation Yrotation" means R = Rz Rx Ry),
  angles in degrees; a child's world transform is its parent's world transform times its own.
- The translation is the joint's OFFSET, except on axes that have a position channel, where the
  channel value replaces the offset. That is right for rigs that key every joint's position (the
  Bandai Namco files repeat each bone's offset in its channels) and, for the root, differs from
  "offset + channel" only by a constant, which the HumanML3D processing removes (floor and
  origin alignment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

_POSITION = ("Xposition", "Yposition", "Zposition")
_ROTATION = ("Xrotation", "Yrotation", "Zrotation")
MIN_FRAME_TIME_S = 1e-4  # 10 kHz: anything faster is a broken header
MAX_FRAME_TIME_S = 1.0  # 1 fps: anything slower is not motion capture


class BVHError(ValueError):
    """A BVH file that cannot be read; the message starts with ``file:line:``."""


@dataclass
class BVHJoint:
    name: str
    parent: int  # index into BVH.joints, -1 for the root
    offset: np.ndarray  # (3,) translation from the parent in the rest pose
    channels: tuple[str, ...]  # e.g. ("Xposition", ..., "Zrotation", "Xrotation", "Yrotation")
    channel_start: int  # column of the first channel in BVH.motion
    line: int  # line of the ROOT/JOINT/End Site keyword (for messages)
    end_site: bool = False


@dataclass
class BVH:
    path: str
    joints: list[BVHJoint]
    frame_time_s: float
    motion: np.ndarray  # (T, C) channel values, one row per frame
    motion_line: int = 0  # line of the first frame (for messages)
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {j.name: i for i, j in enumerate(self.joints)}

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time_s

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def joint_names(self) -> list[str]:
        """Names of the real joints (end sites excluded), in file order."""
        return [j.name for j in self.joints if not j.end_site]

    def index(self, name: str) -> int:
        return self._index[name]

    def local_rotations(self, j: int) -> np.ndarray:
        """Rotation matrices of joint ``j`` relative to its parent, per frame. # (T, 3, 3)"""
        joint = self.joints[j]
        axes, columns = [], []
        for c, channel in enumerate(joint.channels):
            if channel in _ROTATION:
                axes.append(channel[0])
                columns.append(joint.channel_start + c)
        if not axes:
            return np.broadcast_to(np.eye(3), (self.num_frames, 3, 3))
        # Upper-case axes = intrinsic rotations in scipy: "ZXY" gives Rz @ Rx @ Ry.
        return Rotation.from_euler("".join(axes).upper(), self.motion[:, columns], degrees=True).as_matrix()

    def local_translations(self, j: int) -> np.ndarray:
        """Translation of joint ``j`` from its parent, per frame. # (T, 3)"""
        joint = self.joints[j]
        out = np.broadcast_to(joint.offset, (self.num_frames, 3)).copy()
        for c, channel in enumerate(joint.channels):
            if channel in _POSITION:
                out[:, _POSITION.index(channel)] = self.motion[:, joint.channel_start + c]
        return out

    def global_transforms(self) -> tuple[np.ndarray, np.ndarray]:
        """World rotations and positions of every joint (end sites included). # (T, J, 3, 3), (T, J, 3)"""
        T, J = self.num_frames, len(self.joints)
        rotations = np.zeros((T, J, 3, 3))
        positions = np.zeros((T, J, 3))
        for j, joint in enumerate(self.joints):
            local_r = self.local_rotations(j)
            local_t = self.local_translations(j)
            if joint.parent < 0:
                rotations[:, j] = local_r
                positions[:, j] = local_t
            else:
                parent_r = rotations[:, joint.parent]
                rotations[:, j] = parent_r @ local_r
                positions[:, j] = positions[:, joint.parent] + np.einsum("tij,tj->ti", parent_r, local_t)
        return rotations, positions

    def global_positions(self, names: list[str] | None = None) -> np.ndarray:
        """World positions of the named joints (default: all real joints), file units. # (T, J, 3)"""
        _, positions = self.global_transforms()
        names = self.joint_names if names is None else names
        return positions[:, [self.index(n) for n in names]]


def _tokens(text: str) -> list[tuple[int, list[str]]]:
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_bvh(path: str | Path, text: str | None = None) -> BVH:
    """Parse a BVH file strictly. Every problem raises ``BVHError`` naming ``file:line``.

    Checked: the HIERARCHY/MOTION structure and braces, OFFSET and CHANNELS syntax, the frame
    count (> 0 and equal to the number of frame lines), the frame time (a number between
    ``MIN_FRAME_TIME_S`` and ``MAX_FRAME_TIME_S``), the number of values per frame line, and that
    every value is a finite number (NaN or inf channels are rejected with their joint and channel).
    """
    path = str(path)
    if text is None:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise BVHError(f"{path}:0: cannot read file ({exc.strerror or exc})") from None
        text = raw.decode("utf-8", errors="replace")
    lines = _tokens(text)

    def fail(line: int, message: str) -> BVHError:
        return BVHError(f"{path}:{line}: {message}")

    if not lines or lines[0][1][0].upper() != "HIERARCHY":
        raise fail(lines[0][0] if lines else 1, "expected HIERARCHY at the start of a BVH file")
    joints: list[BVHJoint] = []
    stack: list[int] = []  # open joints
    pending: int | None = None  # joint declared, waiting for its "{"
    n_channels = 0
    i = 1
    while i < len(lines):
        line_no, tok = lines[i]
        key = tok[0]
        upper = key.upper()
        if upper == "MOTION":
            break
        if upper in ("ROOT", "JOINT"):
            if upper == "ROOT" and (joints and stack):
                raise fail(line_no, "ROOT inside another joint")
            if upper == "JOINT" and not stack:
                raise fail(line_no, "JOINT outside any ROOT")
            if len(tok) < 2:
                raise fail(line_no, f"{key} without a name")
            name = " ".join(tok[1:])
            if any(j.name == name for j in joints):
                raise fail(line_no, f"duplicate joint name {name!r}")
            joints.append(BVHJoint(name, stack[-1] if stack else -1, np.zeros(3), (), n_channels, line_no))
            pending = len(joints) - 1
        elif upper == "END":
            if not stack:
                raise fail(line_no, "End Site outside any joint")
            parent = joints[stack[-1]]
            joints.append(BVHJoint(f"{parent.name}_End", stack[-1], np.zeros(3), (), n_channels, line_no, True))
            pending = len(joints) - 1
        elif key == "{":
            if pending is None:
                raise fail(line_no, "'{' without a ROOT, JOINT or End Site before it")
            stack.append(pending)
            pending = None
        elif key == "}":
            if not stack:
                raise fail(line_no, "unbalanced '}'")
            stack.pop()
        elif upper == "OFFSET":
            if not stack or pending is not None:
                raise fail(line_no, "OFFSET outside a joint's braces")
            try:
                offset = np.array([float(v) for v in tok[1:]])
            except ValueError:
                raise fail(line_no, f"OFFSET values must be numbers, got {' '.join(tok[1:])!r}") from None
            if offset.shape != (3,) or not np.all(np.isfinite(offset)):
                raise fail(line_no, f"OFFSET needs 3 finite numbers, got {' '.join(tok[1:])!r}")
            joints[stack[-1]].offset = offset
        elif upper == "CHANNELS":
            if not stack or pending is not None:
                raise fail(line_no, "CHANNELS outside a joint's braces")
            joint = joints[stack[-1]]
            if joint.end_site:
                raise fail(line_no, "an End Site cannot have CHANNELS")
            try:
                count = int(tok[1])
            except (IndexError, ValueError):
                raise fail(line_no, "CHANNELS needs a count") from None
            channels = tuple(tok[2:])
            if len(channels) != count:
                raise fail(line_no, f"CHANNELS says {count} but lists {len(channels)}")
            bad = [c for c in channels if c not in _POSITION + _ROTATION]
            if bad:
                raise fail(line_no, f"unknown channel {bad[0]!r} (expected X/Y/Z position/rotation)")
            joint.channels = channels
            joint.channel_start = n_channels
            n_channels += count
        else:
            raise fail(line_no, f"unexpected {key!r} in HIERARCHY")
        i += 1
    if i >= len(lines):
        raise fail(lines[-1][0], "no MOTION section")
    if stack or pending is not None:
        raise fail(lines[i][0], "MOTION before all joints were closed (missing '}')")
    if not joints:
        raise fail(lines[i][0], "no joints in HIERARCHY")
    # Channels were numbered in declaration order; BVH frame lines list them in that order too.

    def header(offset: int, label: str) -> tuple[int, str]:
        if i + offset >= len(lines):
            raise fail(lines[-1][0], f"missing '{label}' line after MOTION")
        line_no, tok = lines[i + offset]
        joined = " ".join(tok)
        if not joined.lower().startswith(label.lower()):
            raise fail(line_no, f"expected '{label} ...', got {joined!r}")
        return line_no, joined[len(label):].strip()

    frames_line, frames_text = header(1, "Frames:")
    try:
        n_frames = int(frames_text)
    except ValueError:
        raise fail(frames_line, f"Frames must be an integer, got {frames_text!r}") from None
    if n_frames <= 0:
        raise fail(frames_line, f"zero-length clip (Frames: {n_frames})")
    time_line, time_text = header(2, "Frame Time:")
    try:
        frame_time = float(time_text)
    except ValueError:
        raise fail(time_line, f"Frame Time must be a number of seconds, got {time_text!r}") from None
    if not (math.isfinite(frame_time) and MIN_FRAME_TIME_S <= frame_time <= MAX_FRAME_TIME_S):
        raise fail(
            time_line,
            f"wrong frame time {time_text} s (expected {MIN_FRAME_TIME_S}..{MAX_FRAME_TIME_S} s, e.g. 0.0333333 for 30 fps)",
        )
    rows = lines[i + 3:]
    if len(rows) != n_frames:
        at = rows[-1][0] if rows else time_line
        raise fail(at, f"header says Frames: {n_frames} but the file has {len(rows)} frame lines")
    motion = np.empty((n_frames, n_channels))
    for r, (line_no, tok) in enumerate(rows):
        if len(tok) != n_channels:
            raise fail(line_no, f"frame {r} has {len(tok)} values, expected {n_channels} (one per channel)")
        try:
            motion[r] = [float(v) for v in tok]
        except ValueError:
            bad = next(v for v in tok if not _is_float(v))
            raise fail(line_no, f"frame {r}: {bad!r} is not a number") from None
    finite = np.isfinite(motion)
    if not finite.all():
        r, c = map(int, np.argwhere(~finite)[0])
        joint = next(j for j in joints if j.channel_start <= c < j.channel_start + len(j.channels))
        raise fail(
            rows[r][0],
            f"frame {r}: channel {joint.channels[c - joint.channel_start]} of joint {joint.name!r} is {motion[r, c]}",
        )
    return BVH(path, joints, frame_time, motion, rows[0][0])


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True

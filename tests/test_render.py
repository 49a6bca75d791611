"""Tests for the software character renderer, the MP4 writer/reader and the preview helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anima.body.skeleton import REST_JOINTS
from anima.face.params import ARKIT_INDEX, ArkitPose, from_arkit, neutral, set_weights
from anima.render import CharacterRenderer, MP4Writer, Overlay, probe
from anima.render.character import _wrap, load_font
from anima.render.mp4 import MediaError, read_audio, read_frames
from anima.render.preview import contact_sheet, make_gif

pytestmark = pytest.mark.unit

W, H = 960, 540


@pytest.fixture(scope="module")
def renderer() -> CharacterRenderer:
    return CharacterRenderer(W, H)


def face(weights: dict[str, float] | None = None, jaw: float = 0.0, head=(0.0, 0.0, 0.0), gaze=(0.0, 0.0)) -> np.ndarray:
    w = np.zeros(52, np.float32)
    w[ARKIT_INDEX["jawOpen"]] = jaw
    eyes = np.array(gaze, np.float32)
    params = from_arkit(ArkitPose(w, np.array(head, np.float32), eyes, eyes.copy()))
    return set_weights(params, weights or {})


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1].astype(np.int32)


def dark_pixels(image: np.ndarray, box: tuple[int, int, int, int]) -> int:
    return int((crop(image, box).max(axis=-1) < 100).sum())


def eye_box(renderer: CharacterRenderer) -> tuple[int, int, int, int]:
    cx, cy = renderer.layout.head_center
    u = renderer.layout.face_unit
    return round(cx - 0.6 * u), round(cy - 0.35 * u), round(cx + 0.6 * u), round(cy + 0.1 * u)


# -- renderer -------------------------------------------------------------------------------------


def test_draw_shape_dtype(renderer: CharacterRenderer) -> None:
    image = renderer.draw(REST_JOINTS, neutral(), Overlay())
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert image.std() > 10  # not a blank frame
    image[0, 0] = 0  # writeable, owned by the caller


def test_other_sizes() -> None:
    image = CharacterRenderer(640, 360).draw(REST_JOINTS, neutral(), Overlay(caption="hi", speaker="user"))
    assert image.shape == (360, 640, 3)


def test_jaw_open_changes_mouth(renderer: CharacterRenderer) -> None:
    closed = renderer.draw(REST_JOINTS, neutral(), Overlay())
    opened = renderer.draw(REST_JOINTS, face(jaw=1.0), Overlay())
    box = renderer.layout.mouth_box
    assert np.abs(crop(opened, box) - crop(closed, box)).mean() > 5
    # The eyes do not move when only the jaw does.
    assert np.abs(crop(opened, eye_box(renderer)) - crop(closed, eye_box(renderer))).mean() < 0.5


def test_blink_changes_eyes(renderer: CharacterRenderer) -> None:
    open_eyes = renderer.draw(REST_JOINTS, neutral(), Overlay())
    blink = renderer.draw(REST_JOINTS, face({"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}), Overlay())
    box = eye_box(renderer)
    assert np.abs(crop(blink, box) - crop(open_eyes, box)).mean() > 2
    # Fully closed: no iris / eye white left, so far fewer bright-white pixels.
    white = lambda img: int((crop(img, box).min(axis=-1) > 240).sum())  # noqa: E731
    assert white(open_eyes) > 200 and white(blink) < 0.05 * white(open_eyes)


def test_mouth_interior_open_vowel_vs_mbp(renderer: CharacterRenderer) -> None:
    box = renderer.layout.mouth_box
    vowel = renderer.draw(REST_JOINTS, face(jaw=1.0), Overlay())
    mbp = renderer.draw(REST_JOINTS, face({"mouthClose": 1.0}), Overlay())
    mbp_jaw = renderer.draw(REST_JOINTS, face({"mouthClose": 1.0}, jaw=0.5), Overlay())  # lips sealed, jaw down
    open_area, closed_area = dark_pixels(vowel, box), dark_pixels(mbp, box)
    assert open_area > 800
    assert closed_area < 0.15 * open_area  # only the lip seam line
    assert dark_pixels(mbp_jaw, box) < 0.15 * open_area


def test_expressions_move_features(renderer: CharacterRenderer) -> None:
    base = renderer.draw(REST_JOINTS, neutral(), Overlay())
    mouth, eyes = renderer.layout.mouth_box, eye_box(renderer)
    cases = {
        "smile": (face({"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}), mouth),
        "pucker": (face({"mouthPucker": 1.0}), mouth),
        "brows": (face({"browInnerUp": 1.0, "browOuterUpLeft": 1.0, "browOuterUpRight": 1.0}), eyes),
        "gaze": (face(gaze=(0.0, 0.5)), eyes),
    }
    for name, (params, box) in cases.items():
        diff = np.abs(crop(renderer.draw(REST_JOINTS, params, Overlay()), box) - crop(base, box)).mean()
        assert diff > 1.0, name
    turned = renderer.draw(REST_JOINTS, face(head=(0.0, 0.5, 0.0)), Overlay())
    assert np.abs(turned.astype(int) - base).mean() > 2


def test_body_follows_joints(renderer: CharacterRenderer) -> None:
    base = renderer.draw(REST_JOINTS, neutral(), Overlay())
    raised = REST_JOINTS.copy()
    raised[20] = [0.5, 1.5, 0.1]  # left wrist up and out
    raised[18] = [0.35, 1.3, 0.0]
    moved = renderer.draw(raised, neutral(), Overlay())
    body = renderer.layout.body
    assert np.abs(crop(moved, body) - crop(base, body)).mean() > 0.5
    face_panel = renderer.layout.face
    assert np.abs(crop(moved, face_panel) - crop(base, face_panel)).max() == 0


def test_unusual_poses_do_not_fail(renderer: CharacterRenderer) -> None:
    rng = np.random.default_rng(1)
    turned_away = REST_JOINTS * [-1.0, 1.0, -1.0]  # 180 degrees about Y: the back of the character
    extreme = face({"mouthFunnel": 1.0, "mouthStretchLeft": 1.0, "eyeWideLeft": 1.0}, jaw=1.0, head=(0.6, -0.6, 0.6))
    for joints in (np.zeros((22, 3)), turned_away, REST_JOINTS + rng.normal(0, 0.3, (22, 3)), REST_JOINTS + [5.0, 0, 0]):
        assert renderer.draw(joints, extreme, Overlay()).shape == (H, W, 3)


def test_caption_and_overlay_drawn(renderer: CharacterRenderer) -> None:
    blank = renderer.draw(REST_JOINTS, neutral(), Overlay())
    captioned = renderer.draw(REST_JOINTS, neutral(), Overlay(caption="Hello there, how are you?", speaker="agent"))
    box = renderer.layout.caption
    assert np.abs(crop(captioned, box) - crop(blank, box)).mean() > 1
    header = renderer.layout.header
    states = [renderer.draw(REST_JOINTS, neutral(), Overlay(agent_state=s)) for s in ("listening", "thinking", "speaking")]
    for state_image in states:
        assert np.abs(crop(state_image, header) - crop(blank, header)).mean() > 0.2
    loud = renderer.draw(REST_JOINTS, neutral(), Overlay(speaker="user", user_level=1.0))
    assert np.abs(crop(loud, header) - crop(blank, header)).mean() > 1


def test_caption_wrap_keeps_the_end() -> None:
    font = load_font(20)
    text = " ".join(f"word{i}" for i in range(60))
    lines = _wrap(text, font, 300, max_lines=2)
    assert len(lines) == 2 and lines[0].startswith("…") and lines[-1].endswith("word59")
    assert all(font.getlength(line) <= 300 for line in lines)
    assert _wrap("x" * 200, font, 100, 2)[-1].endswith("x")


def test_invalid_inputs(renderer: CharacterRenderer) -> None:
    with pytest.raises(ValueError, match=r"joints.*\(21, 3\)"):
        renderer.draw(REST_JOINTS[:21], neutral(), Overlay())
    with pytest.raises(ValueError, match=r"face.*\(100,\)"):
        renderer.draw(REST_JOINTS, np.zeros(100), Overlay())
    bad = REST_JOINTS.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="joints.*NaN"):
        renderer.draw(bad, neutral(), Overlay())
    nan_face = neutral()
    nan_face[5] = np.nan
    with pytest.raises(ValueError, match="face.*NaN"):
        renderer.draw(REST_JOINTS, nan_face, Overlay())
    with pytest.raises(ValueError, match="agent_state"):
        renderer.draw(REST_JOINTS, neutral(), Overlay(agent_state="dancing"))
    with pytest.raises(ValueError, match="speaker"):
        renderer.draw(REST_JOINTS, neutral(), Overlay(speaker="bob"))


# -- MP4 ------------------------------------------------------------------------------------------


def frames_and_audio(n: int = 50, fps: int = 25, rate: int = 24000) -> tuple[list[np.ndarray], list[np.ndarray]]:
    yy, xx = np.mgrid[0:H, 0:W]
    images, audio = [], []
    per_frame = rate // fps
    for i in range(n):
        image = np.stack([(xx + 8 * i) % 256, yy % 256, np.full_like(xx, 40 + 3 * i)], axis=-1).astype(np.uint8)
        images.append(image)
        t = (np.arange(per_frame) + i * per_frame) / rate
        audio.append((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    return images, audio


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    path = tmp_path_factory.mktemp("mp4") / "out.mp4"
    images, audio = frames_and_audio()
    with MP4Writer(path, W, H) as writer:
        for image, chunk in zip(images, audio, strict=True):
            writer.write(image, chunk)
    return path, images


def test_mp4_round_trip(written: tuple[Path, list[np.ndarray]]) -> None:
    path, images = written
    info = probe(path)
    assert info.video_frames == 50 and info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    assert (info.width, info.height) == (W, H)
    assert info.audio_sample_rate == 24000
    assert info.audio_duration_s == pytest.approx(info.duration_s, abs=1024 / 24000 + 1e-6)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".part")]  # no temp file left


def test_read_frames_match(written: tuple[Path, list[np.ndarray]]) -> None:
    path, images = written
    picked = read_frames(path, [1.0, 0.0, 1.96, 10.0])
    for frame, index in zip(picked, [25, 0, 49, 49], strict=True):
        assert frame.shape == (H, W, 3)
        assert np.abs(frame.astype(int) - images[index]).mean() < 4
    assert np.abs(picked[0].astype(int) - images[24]).mean() > np.abs(picked[0].astype(int) - images[25]).mean()


def test_read_audio(written: tuple[Path, list[np.ndarray]]) -> None:
    path, _ = written
    samples, rate = read_audio(path)
    assert rate == 24000 and samples.dtype == np.float32
    assert len(samples) / rate == pytest.approx(2.0, abs=1024 / 24000 + 1e-6)
    middle = samples[2400:45600]
    assert 0.3 < np.sqrt(np.mean(middle**2)) < 0.42  # a 0.5-amplitude sine has RMS 0.354
    assert np.abs(samples).max() <= 1.0 + 1e-3


def test_audio_any_chunking_and_clipping(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    image = np.zeros((64, 96, 3), np.uint8)
    rng = np.random.default_rng(0)
    with MP4Writer(path, 96, 64) as writer:
        for i in range(25):
            # Odd chunk sizes (sometimes none) must still give 1 s of audio in total.
            writer.write(image, None if i % 5 == 1 else np.full(rng.integers(100, 1500), 3.0, np.float32))
    info = probe(path)
    assert info.video_frames == 25
    assert info.audio_duration_s is not None and info.audio_duration_s >= 1.0 - 1024 / 24000
    samples, _ = read_audio(path)
    assert np.abs(samples).max() < 1.3  # clipped to 1 before encoding (AAC overshoots a little)


def test_audio_stays_in_sync(tmp_path: Path) -> None:
    path = tmp_path / "sync.mp4"
    image = np.zeros((64, 96, 3), np.uint8)
    with MP4Writer(path, 96, 64) as writer:
        for i in range(50):  # 1 s of silence, then 1 s of tone
            t = np.arange(960) / 24000
            writer.write(image, np.zeros(960, np.float32) if i < 25 else (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32))
    samples, rate = read_audio(path)
    onset = int(np.argmax(np.abs(samples) > 0.1)) / rate
    assert onset == pytest.approx(1.0, abs=0.01)  # AAC priming is compensated by the container


def test_failed_write_keeps_old_file(written: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    path = tmp_path / "keep.mp4"
    path.write_bytes(written[0].read_bytes())
    before = path.read_bytes()
    image = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(RuntimeError, match="boom"), MP4Writer(path, W, H) as writer:
        for i in range(10):
            writer.write(image, np.zeros(960, np.float32))
            if i == 5:
                raise RuntimeError("boom")
    assert path.read_bytes() == before
    assert probe(path).video_frames == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]


def test_writer_validates(tmp_path: Path) -> None:
    with MP4Writer(tmp_path / "v.mp4", 64, 48) as writer:
        with pytest.raises(ValueError, match="image"):
            writer.write(np.zeros((48, 64), np.uint8))
        with pytest.raises(ValueError, match="audio"):
            writer.write(np.zeros((48, 64, 3), np.uint8), np.full(10, np.nan, np.float32))
        writer.write(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="even"):
        MP4Writer(tmp_path / "odd.mp4", 65, 48)


def test_probe_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "missing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    with pytest.raises(MediaError, match="corrupt.mp4"):
        probe(corrupt)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(ValueError):
        probe(text)


def test_truncated_file_is_an_error(written: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(written[0].read_bytes()[: 4000])
    with pytest.raises(MediaError):
        probe(truncated)


# -- previews -------------------------------------------------------------------------------------


def test_contact_sheet_and_gif(written: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    path, _ = written
    sheet = contact_sheet(path, [0.0, 0.5, 1.0, 1.5, 1.9], tmp_path / "sheet.png", columns=3, thumb_width=160)
    with Image.open(sheet) as im:
        assert im.width == 3 * 160 + 4 * 4 and im.height == 2 * 90 + 3 * 4
    gif = make_gif(path, tmp_path / "clip.gif", start_s=0.5, duration_s=1.0, fps=10, width=120)
    with Image.open(gif) as im:
        assert im.n_frames == 10 and im.width == 120

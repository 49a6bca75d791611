"""The procedural face: visemes from phoneme timings, idle/listening behaviour, ProceduralFace."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anima.core.frames.audio import SpeechEvent
from anima.core.plan import EMOTIONS, GAZE_TARGETS
from anima.face import params
from anima.face.listening import IdleBehaviour, rms_level
from anima.face.procedural import ProceduralFace
from anima.face.viseme import (
    CHANNELS,
    DOMINANCE,
    VISEMES,
    CoarticulationConfig,
    VisemeTrack,
    phoneme_visemes,
)

pytestmark = pytest.mark.unit

FPS = 25
TICK = 24_000 // FPS
ARKIT = params.ARKIT_INDEX
SILENCE = np.zeros(TICK, dtype=np.float32)
JAW, CLOSE = CHANNELS.index("jawOpen"), CHANNELS.index("mouthClose")


def timeline(phonemes: str, start_s: float = 0.5, speed: float = 1.0) -> list[tuple[float, SpeechEvent]]:
    """Hand-built phoneme events: consonants 70 ms, vowels 120 ms, pauses 150 ms (scaled by 1/speed)."""
    events, t = [], start_s
    for ph in phonemes.split():
        events.append((t, SpeechEvent("phoneme", t - start_s, ph)))
        duration = 0.15 if ph.startswith("_") else 0.12 if phoneme_visemes(ph)[0][0].vowel else 0.07
        t += duration / speed
    events.append((t, SpeechEvent("end", t - start_s)))
    return events


def segments(events: list[tuple[float, SpeechEvent]]) -> list[tuple[str, float, float]]:
    """(phoneme text, start, end) of each phoneme event."""
    times = [t for t, _ in events]
    return [(e.text, times[k], times[k + 1]) for k, (_, e) in enumerate(events[:-1]) if e.kind == "phoneme"]


HELLO = "h @ l 'oU _: m 'aI n 'eI m I z b '0 b"
MAMA = "m 'A: m @ b 'aI z p 'eI p 3 _: 'a m a p a b a m a"


# -- phoneme table -------------------------------------------------------------------------------


def test_phoneme_classes() -> None:
    def first(text: str) -> str:
        return phoneme_visemes(text)[0][0].viseme

    for ph, viseme in [("m", "PP"), ("b", "PP"), ("p", "PP"), ("f", "FF"), ("v", "FF"), ("T", "TH"),
                       ("D", "TH"), ("t", "DD"), ("d", "DD"), ("k", "kk"), ("g", "kk"), ("tS", "CH"),
                       ("dZ", "CH"), ("S", "CH"), ("Z", "CH"), ("s", "SS"), ("z", "SS"), ("n", "nn"),
                       ("N", "nn"), ("l", "nn"), ("r", "RR"), ("w", "U"), ("'a", "aa"), ("A:", "aa"),
                       ("E", "E"), ("i:", "I"), ("0", "O"), ("u:", "U"), ("_:", "sil"), ("_", "sil")]:
        assert first(ph) == viseme, ph
    assert [p.viseme for p in phoneme_visemes("aI")[0]] == ["aa", "I"]
    assert [p.viseme for p in phoneme_visemes("aI@")[0]] == ["aa", "I", "E"]  # longest mnemonic wins
    packed = [[p.viseme for p in ph] for ph in phoneme_visemes("h@l'oU")]
    spaced = [[p.viseme for p in ph] for ph in phoneme_visemes("h @ l 'oU")]
    assert packed == spaced and len(packed) == 4
    stressed, unstressed = phoneme_visemes("'a")[0][0], phoneme_visemes("a")[0][0]
    assert stressed.amplitude > unstressed.amplitude
    assert phoneme_visemes("") == [] and phoneme_visemes("%%;;") == []
    with pytest.raises(ValueError, match="unknown espeak phoneme"):
        phoneme_visemes("m\u00e9", strict=True)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_every_espeak_mnemonic_is_known() -> None:
    text = ("The quick brown fox jumps over the lazy dog. Thought, thorough, bottle, button, pleasure, "
            "bird, fire, choir, boy, air, poor, beer, father, car, door, pure, rhythm, judge, singer, "
            "water, opportunity, hundred, twelfths, naive, genre, loch. Hello, my name is Bob.")
    for voice in ("en", "en-us"):
        out = subprocess.run(["espeak-ng", "-v", voice, "-q", "-x", text], capture_output=True, text=True,
                             check=True, timeout=20).stdout
        words = out.split()
        assert len(words) > 30
        for word in words:
            assert phoneme_visemes(word, strict=True), word


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12))
def test_phoneme_parser_never_raises(text: str) -> None:
    for phoneme in phoneme_visemes(text):
        assert phoneme and all(part.viseme in VISEMES for part in phoneme)


# -- viseme track ----------------------------------------------------------------------------------


@pytest.mark.parametrize("speed", [0.8, 1.0, 1.3])
def test_vowels_open_and_bilabials_close(speed: float) -> None:
    for sentence in (HELLO, MAMA):
        events = timeline(sentence, speed=speed)
        track = VisemeTrack()
        track.add(events)
        jaw_max = track.values_at(np.arange(0.0, events[-1][0] + 0.3, 0.005))[:, JAW].max()
        for text, start, end in segments(events):
            parts = phoneme_visemes(text)[0]
            centre = 0.5 * (start + end)
            weights = track.weights_at(centre)
            if parts[0].viseme == "PP":
                assert weights["jawOpen"] < 0.15 and weights["mouthClose"] > 0.5, (text, centre, weights)
            if text.strip("',") in ("a", "A:"):
                assert weights["jawOpen"] >= 0.5, (text, weights)
            if text.strip("',") == "aI":  # the open part of the diphthong
                assert track.weights_at(start + 0.33 * (end - start))["jawOpen"] >= 0.5
            if parts[0].vowel and parts[0].amplitude > 0.7:  # full vowels, not schwa
                first_part = track.weights_at(start + 0.5 * parts[0].share * (end - start))  # of a diphthong
                # Open and mid-open vowels open the jaw to at least half its maximum; mid-front
                # vowels (the E of "paper" between two closures) to at least a third of it.
                share = {"aa": 0.5, "O": 0.5, "E": 0.35}.get(parts[0].viseme, 0.0)
                assert first_part["jawOpen"] > share * jaw_max, (text, first_part["jawOpen"], jaw_max)


def test_lips_anticipate_a_bilabial() -> None:
    events = timeline("'a _: m 'a")
    track = VisemeTrack()
    track.add(events)
    m_start = next(start for text, start, _ in segments(events) if text == "m")
    close = track.values_at(np.array([m_start - 0.2, m_start - 0.09, m_start - 0.06, m_start + 0.035]))[:, CLOSE]
    assert close[0] < 0.01  # at rest well before
    assert close[1] > 0.02 and close[2] > 0.05  # moving 60-90 ms ahead of the sound
    assert close[3] > 0.8


def test_rest_without_speech_and_after_the_end() -> None:
    track = VisemeTrack()
    assert np.all(track.values_at(np.linspace(0, 5, 50)) == 0.0)
    events = timeline(HELLO, start_s=1.0)
    track.add(events)
    before = track.values_at(np.linspace(0.0, 1.0 - track.config.onset_s, 20))
    after = track.values_at(np.linspace(events[-1][0] + track.config.release_s, events[-1][0] + 3, 20))
    assert np.all(before == 0.0) and np.all(after == 0.0)
    assert set(track.weights_at(1.5)) == set(CHANNELS)


def test_frame_sampling_never_misses_a_closure() -> None:
    # Fast speech: 40 ms bilabials are shorter than a 25 fps frame; every one must still show.
    events = timeline("'a m 'a p 'a b 'a m 'a p 'a", speed=1.75)
    track = VisemeTrack()
    track.add(events)
    frames = np.arange(0.0, events[-1][0] + 0.3, 1.0 / FPS)
    values = track.values_at(frames, frame_period_s=1.0 / FPS)
    for text, start, end in segments(events):
        if text in ("m", "p", "b"):
            near = np.abs(frames - 0.5 * (start + end)) <= 0.5 / FPS + 1e-9
            assert np.any((values[near, JAW] < 0.15) & (values[near, CLOSE] > 0.5)), (text, start)


def test_smooth_between_frames() -> None:
    for sentence in (HELLO, MAMA):
        events = timeline(sentence)
        track = VisemeTrack()
        track.add(events)
        frames = track.values_at(np.arange(0.0, events[-1][0] + 0.4, 1.0 / FPS), frame_period_s=1.0 / FPS)
        assert np.abs(np.diff(frames, axis=0)).max() < 0.75
        fine = track.values_at(np.arange(0.0, events[-1][0] + 0.4, 0.001))
        assert np.abs(np.diff(fine, axis=0)).max() < 0.06  # continuous: no step in 1 ms


def test_cut_relaxes_within_release() -> None:
    events = timeline(MAMA)
    track = VisemeTrack()
    track.add(events)
    aI = next(s for s in segments(events) if s[0] == "'aI")
    cut_s = 0.5 * (aI[1] + aI[2])  # mid open vowel
    assert track.weights_at(cut_s)["jawOpen"] > 0.4
    track.cut(cut_s)
    assert np.all(track.values_at(np.linspace(cut_s + 0.1, cut_s + 2.0, 40)) == 0.0)
    before = track.values_at(np.linspace(0.0, cut_s - 0.01, 50))
    reference = VisemeTrack()
    reference.add(events)
    np.testing.assert_allclose(before[:-5], reference.values_at(np.linspace(0.0, cut_s - 0.01, 50))[:-5], atol=0.05)
    # Re-sent and late events of the interrupted utterance stay silent; a new utterance speaks.
    track.add(events)
    origin = events[0][0] - events[0][1].time_s
    track.add([(cut_s + 0.3, SpeechEvent("phoneme", cut_s + 0.3 - origin, "'a"))])
    assert np.all(track.values_at(np.linspace(cut_s + 0.1, cut_s + 2.0, 40)) == 0.0)
    track.add(timeline("m 'a", start_s=cut_s + 1.0))
    assert track.weights_at(cut_s + 1.0 + 0.07 + 0.06)["jawOpen"] > 0.4


def test_streamed_chunks_equal_whole_timeline() -> None:
    events = timeline(HELLO + " _: " + MAMA)
    whole, streamed = VisemeTrack(), VisemeTrack()
    whole.add(events)
    for k in range(0, len(events), 5):
        streamed.add(events[: k + 5])  # re-sending what is known so far, as PlayedAudioFrame does
    times = np.linspace(0.0, events[-1][0] + 0.5, 400)
    np.testing.assert_array_equal(whole.values_at(times), streamed.values_at(times))


def test_dominance_blend_matches_slow_reference() -> None:
    # No bilabials/labiodentals, so the closure constraint is idle: pure Cohen-Massaro blend.
    events = timeline("s 'a n d I k 'oU l _: 'i: t")
    config = CoarticulationConfig()
    track = VisemeTrack(config)
    track.add(events)
    times = np.linspace(0.3, events[-1][0] + 0.2, 97)
    fast = track.values_at(times)
    segs = []
    for text, start, end in segments(events):
        for parts in phoneme_visemes(text):
            edges = np.concatenate([[0.0], np.cumsum([p.share for p in parts])])
            for q, part in enumerate(parts):
                segs.append((start + (end - start) * edges[q], start + (end - start) * edges[q + 1], part))
    for i, t in enumerate(times):
        for k, channel in enumerate(CHANNELS):
            num, den = 0.0, config.rest_dominance
            for s0, s1, part in segs:
                margin = 0.5 * (1 - config.core_fraction) * (s1 - s0)
                before, after = max(s0 + margin - t, 0.0), max(t - (s1 - margin), 0.0)
                jaw_group = channel in ("jawOpen", "tongueOut")
                alpha = DOMINANCE[part.viseme][0 if jaw_group else 1] * part.dominance
                d = alpha * np.exp(-config.anticipation_rate * before - config.carryover_rate * after)
                num += d * VISEMES[part.viseme].get(channel, 0.0) * part.amplitude
                den += d
            gate = float(track.gate_at(t)[0])
            assert fast[i, k] == pytest.approx(num / den * gate, abs=1e-6)
    np.testing.assert_allclose(track.values_at(times[:10]), np.stack([track.values_at(t)[0] for t in times[:10]]))


# -- idle and listening --------------------------------------------------------------------------


def other_party(seconds: float, seed: int = 3) -> tuple[list[np.ndarray], np.ndarray]:
    """Noise bursts (2.5 s of 'speech' with a syllable rhythm) separated by 1 s pauses."""
    rng = np.random.default_rng(seed)
    chunks, talking = [], []
    for i in range(int(seconds * FPS)):
        t = i / FPS
        speaking = (t % 3.5) < 2.5
        envelope = 0.1 * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2) if speaking else 0.0
        chunks.append((rng.standard_normal(TICK) * envelope).astype(np.float32))
        talking.append(speaking)
    return chunks, np.array(talking)


def run_listening(seed: int = 0, seconds: float = 20.0) -> tuple[ProceduralFace, np.ndarray]:
    face = ProceduralFace(fps=FPS, seed=seed)
    chunks, _ = other_party(seconds)
    frames = np.stack([face.step(i / FPS, np.zeros(0, np.float32), chunk) for i, chunk in enumerate(chunks)])
    return face, frames


def test_listening_face_is_alive() -> None:
    face, frames = run_listening()
    params.check_ranges(frames)
    blink = frames[:, ARKIT["eyeBlinkLeft"]]
    blinks = int(np.sum((blink[1:] > 0.5) & (blink[:-1] <= 0.5)))
    assert 3 <= blinks <= 12
    np.testing.assert_array_equal(blink, frames[:, ARKIT["eyeBlinkRight"]])  # both eyes
    head = frames[:, params.HEAD]
    assert np.all(head.std(axis=0) > 0.005)
    assert frames[:, :52].std(axis=0).max() > 0.05
    assert frames[:, params.LEFT_EYE][:, :2].std(axis=0).min() > 0.005
    # Never frozen: the head moves within every half second.
    for i in range(0, len(frames) - FPS // 2, FPS // 2):
        assert np.ptp(head[i : i + FPS // 2], axis=0).max() > 1e-4
    assert np.abs(np.diff(head, axis=0)).max() < 0.03  # and moves smoothly
    assert np.all(frames[:, params.JAW] == 0.0)  # not speaking: the mouth is at rest
    kinds = [kind for _, kind in face.idle.events]
    assert kinds.count("brow") >= 1 and kinds.count("pause") >= 4


def test_nods_follow_pauses() -> None:
    nods_after_pause = nods_in_speech = 0
    for seed in range(4):
        face, _ = run_listening(seed=seed)
        for t, kind in face.idle.events:
            if kind == "nod":
                phase = t % 3.5
                if 2.5 <= phase < 3.5:
                    nods_after_pause += 1
                else:
                    nods_in_speech += 1
    # 1 s of pause vs 2.5 s of speech per cycle: nods still cluster in the pauses.
    assert nods_after_pause >= 8
    assert nods_after_pause / 1.0 > 3 * nods_in_speech / 2.5


def test_blink_shape_fast_close_slow_open() -> None:
    idle = IdleBehaviour(seed=1)
    times = np.arange(0.0, 20.0, 0.002)
    blink = np.array([idle.step(t).blink for t in times])
    rising = np.sum(np.diff(blink) > 0)
    falling = np.sum(np.diff(blink) < 0)
    assert falling > 1.3 * rising
    closed = blink > 0.5
    starts = np.flatnonzero(closed[1:] & ~closed[:-1])
    ends = np.flatnonzero(~closed[1:] & closed[:-1])
    widths = (ends[: len(starts)] - starts[: len(ends)]) * 0.002
    assert np.all(widths > 0.06) and np.all(widths < 0.3)


def test_own_speech_moves_the_head() -> None:
    rng = np.random.default_rng(0)
    quiet, talking = ProceduralFace(seed=5), ProceduralFace(seed=5)
    heads_quiet, heads_talking = [], []
    for i in range(10 * FPS):
        t = i / FPS
        envelope = 0.15 * (0.3 + 0.7 * (np.sin(2 * np.pi * 2.5 * t) > 0))
        own = (rng.standard_normal(TICK) * envelope).astype(np.float32)
        heads_quiet.append(quiet.step(t, SILENCE, SILENCE)[params.HEAD])
        heads_talking.append(talking.step(t, own, SILENCE)[params.HEAD])
    speed_quiet = np.abs(np.diff(np.array(heads_quiet), axis=0)).mean()
    speed_talking = np.abs(np.diff(np.array(heads_talking), axis=0)).mean()
    assert speed_talking > 1.5 * speed_quiet


# -- ProceduralFace ------------------------------------------------------------------------------


def speak(face: ProceduralFace, events: list[tuple[float, SpeechEvent]], seconds: float) -> np.ndarray:
    face.schedule_speech(events)
    return np.stack([face.step(i / FPS, SILENCE, SILENCE) for i in range(int(seconds * FPS))])


def test_face_speaks_and_rests() -> None:
    events = timeline(HELLO, start_s=0.6)
    frames = speak(ProceduralFace(seed=2), events, 3.0)
    params.check_ranges(frames)
    jaw = frames[:, ARKIT["jawOpen"]]
    np.testing.assert_allclose(frames[:, 100], jaw * params.JAW_OPEN_MAX_RAD, atol=1e-6)
    assert jaw.max() > 0.5
    assert np.all(jaw[: int(0.5 * FPS)] == 0) and np.all(jaw[int(np.ceil((events[-1][0] + 0.1) * FPS)) :] == 0)
    for text, start, end in segments(events):
        if text in ("m", "b", "p"):
            i = int(round(0.5 * (start + end) * FPS))
            assert jaw[i] < 0.15 and frames[i, ARKIT["mouthClose"]] > 0.5, (text, i)


def test_face_cut_speech() -> None:
    events = timeline(MAMA, start_s=0.4)
    face = ProceduralFace()
    face.schedule_speech(events)
    cut_frame = 30  # 1.2 s, mid-utterance
    frames = []
    for i in range(3 * FPS):
        if i == cut_frame:
            face.cut_speech(i / FPS)
        face.schedule_speech(events)  # the runtime may keep re-sending; ignored after the cut
        frames.append(face.step(i / FPS, SILENCE, SILENCE))
    jaw = np.stack(frames)[:, ARKIT["jawOpen"]]
    assert jaw[cut_frame - 8 : cut_frame].max() > 0.3
    rest_from = cut_frame + int(np.ceil(0.12 * FPS))
    assert np.all(jaw[rest_from:] < 0.02)


def test_determinism_and_reset() -> None:
    _, a = run_listening(seed=7, seconds=6)
    _, b = run_listening(seed=7, seconds=6)
    _, c = run_listening(seed=8, seconds=6)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    face, _ = run_listening(seed=7, seconds=6)
    face.reset()
    chunks, _ = other_party(6)
    again = np.stack([face.step(i / FPS, np.zeros(0, np.float32), ch) for i, ch in enumerate(chunks)])
    np.testing.assert_array_equal(a, again)


def test_ranges_hold_for_hostile_input() -> None:
    rng = np.random.default_rng(0)
    face = ProceduralFace(seed=3)
    junk = [np.full(TICK, np.nan, np.float32), np.full(TICK, np.inf, np.float32), np.zeros(0, np.float32),
            np.full(TICK, -3e38, np.float32), rng.standard_normal(TICK).astype(np.float32) * 50,
            rng.standard_normal(7).astype(np.float64)]
    texts = ["m", "'a", "aI@", "???", "", "_:", "h@l'oU", "tS", "\x00", "'''", "b b b b"]
    t = 0.0
    for i in range(400):
        t += rng.choice([0.0, 1.0 / FPS, 0.3])
        if i % 17 == 0:
            face.schedule_speech([(t + rng.uniform(-0.5, 1.0), SpeechEvent("phoneme", 0.0, str(rng.choice(texts))))
                                  for _ in range(5)])
        if i % 53 == 0:
            face.set_emotion(str(rng.choice(EMOTIONS)), t)
            face.set_gaze(str(rng.choice(GAZE_TARGETS)), t + 0.1)
        if i % 97 == 0:
            face.cut_speech(t)
        out = face.step(t, junk[i % len(junk)], junk[(i * 7) % len(junk)])
        assert out.shape == (params.FACE_DIM,) and out.dtype == np.float32
        params.check_ranges(out)
    assert rms_level(np.array([np.nan, np.inf])) == 0.0 and rms_level(np.zeros(0)) == 0.0


def test_unknown_emotion_and_gaze_raise() -> None:
    face = ProceduralFace()
    with pytest.raises(ValueError, match="happy"):
        face.set_emotion("ecstatic", 0.0)
    with pytest.raises(ValueError, match="user"):
        face.set_gaze("ceiling", 0.0)
    for call in (lambda: face.set_emotion("sad", float("nan")), lambda: face.set_gaze("up", float("inf")),
                 lambda: face.cut_speech(float("nan")), lambda: face.step(float("nan"), SILENCE, SILENCE)):
        with pytest.raises(ValueError, match="finite"):
            call()
    assert rms_level(np.full(4, 1e200)) == 0.0


def test_emotion_blends_and_gaze_turns() -> None:
    face = ProceduralFace(seed=4)
    face.set_emotion("happy", 1.0)
    face.set_gaze("left", 1.0)
    frames = np.stack([face.step(i / FPS, SILENCE, SILENCE) for i in range(3 * FPS)])
    smile = frames[:, ARKIT["mouthSmileLeft"]]
    assert smile[FPS - 1] == 0.0 and 0.1 < smile[int(1.25 * FPS)] < smile[int(2.0 * FPS)]
    assert smile[int(2.0 * FPS)] > 0.5 and frames[int(2.0 * FPS), ARKIT["cheekSquintLeft"]] > 0.2
    assert frames[2 * FPS :, 104].mean() > 0.05 and frames[2 * FPS :, 107].mean() > 0.1  # head and eyes left
    face.set_emotion("surprised", 3.0)
    late = face.step(4.0, SILENCE, SILENCE)
    assert late[ARKIT["browOuterUpLeft"]] > 0.4 and late[ARKIT["mouthSmileLeft"]] < 0.05


def test_arkit_round_trip() -> None:
    face = ProceduralFace(seed=6)
    face.set_emotion("curious", 0.0)
    face.set_gaze("down", 0.5)
    face.schedule_speech(timeline(HELLO, start_s=0.2))
    chunks, _ = other_party(3)
    for i, chunk in enumerate(chunks):
        frame = face.step(i / FPS, SILENCE, chunk)
        pose = params.to_arkit(frame)
        np.testing.assert_allclose(params.from_arkit(pose), frame, atol=1e-6)
        np.testing.assert_allclose(pose.blendshapes, frame[:52], atol=1e-6)


def test_long_session_prunes_the_timeline() -> None:
    face = ProceduralFace()
    for k in range(30):
        face.schedule_speech(timeline(HELLO, start_s=2.0 * k))
        for i in range(int(2.0 * k * FPS), int(2.0 * (k + 1) * FPS)):
            face.step(i / FPS, SILENCE, SILENCE)
    oldest = face.track.oldest_event_s
    assert oldest is not None and oldest > 60.0 - 8.0

"""Idle and listening behaviour: a face that is never frozen, seeded and deterministic.

``IdleBehaviour`` produces everything the face does besides the speaking mouth and the emotion:

- blinks: ~17/min (gamma-distributed intervals), 150-300 ms each with a fast close and a slower
  open, both eyes; ~10% are double blinks; a pause of the other party pulls the next blink forward;
- eye saccades: fixations of 0.3-2 s on small random targets around the gaze target (the user's
  eyes and mouth when looking at the user), ~40 ms transitions, the eyes counter-rotating against
  head motion so the gaze stays put (vestibulo-ocular reflex);
- slow head drift (sums of incommensurate sinusoids, a few degrees) and breathing (~4 s period);
- listening reactions driven by the other party's per-tick audio level: brow raises on energy
  peaks, backchannel nods at their pauses after >= 1 s of speech, a slight head tilt and lean
  while they speak;
- while the agent speaks: head motion scaled by its own speech energy, small nods on emphasis,
  occasional brow raises and a glance away at the start of a phrase.

Randomness comes from one ``numpy`` generator consumed in step order, so the same seed and the
same inputs give the same motion. ``step`` is scalar Python maths (a few microseconds).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from anima.core.plan import GAZE_TARGETS
from anima.easing import smoothstep

# Gaze target -> (eye pitch, eye yaw) of the whole gaze in radians (pitch > 0 looks down, yaw > 0
# looks to the subject's left). "away" picks a side when it is set.
GAZE_DIRECTIONS: dict[str, tuple[float, float]] = {
    "user": (0.0, 0.0),
    "away": (-0.04, 0.30),
    "down": (0.28, 0.0),
    "up": (-0.22, 0.04),
    "left": (0.0, 0.32),
    "right": (0.0, -0.32),
}


def rms_level(audio: np.ndarray | None) -> float:
    """RMS of one tick of audio; non-finite samples count as silence, empty audio is 0."""
    if audio is None:
        return 0.0
    x = np.asarray(audio, dtype=np.float64).ravel()
    if x.size == 0:
        return 0.0
    finite = np.isfinite(x)
    if not finite.all():
        x = np.where(finite, x, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):  # absurdly loud input reads as silence below
        level = math.sqrt(float(np.dot(x, x)) / x.size)
    return level if math.isfinite(level) else 0.0


@dataclass(frozen=True)
class IdleConfig:
    """Rates and amplitudes of the idle and listening behaviours."""

    blink_interval_s: float = 4.2  # mean scheduled gap; with doubles and pause-cued blinks ~17/min
    blink_min_gap_s: float = 0.8  # no blink closer than this after the previous one (except doubles)
    double_blink_p: float = 0.1  # probability that a blink is followed by a second one
    fixation_median_s: float = 0.8  # median fixation; fixations are clipped to [0.3, 2.0] s
    head_drift_rad: tuple[float, float, float] = (0.025, 0.04, 0.018)  # pitch, yaw, roll drift amplitude
    breath_period_s: float = 4.0
    breath_pitch_rad: float = 0.006
    gaze_head_share: float = 0.35  # part of a gaze shift done by the head
    pause_s: float = 0.3  # silence that ends the other party's run of speech
    nod_min_run_s: float = 1.0  # a pause after at least this much speech invites a nod
    nod_p: float = 0.75  # probability of a backchannel nod at such a pause
    nod_rate_in_speech: float = 0.02  # 1/s, hazard of a small nod while the other party speaks
    nod_amplitude_rad: tuple[float, float] = (0.05, 0.09)
    brow_refractory_s: float = 2.5
    brow_p_listening: float = 0.35  # probability of a brow raise at an energy peak of the other party
    brow_p_speaking: float = 0.3  # ... at an emphasis of the agent's own speech
    tilt_rad: float = 0.05  # head roll while the other party speaks
    lean_rad: float = 0.02  # head pitch (forward) while the other party speaks
    speech_head_rad: tuple[float, float, float] = (0.03, 0.045, 0.02)  # own-speech head motion at full energy
    emphasis_nod_rad: float = 0.12  # head pitch per unit of own-speech emphasis


@dataclass
class IdlePose:
    """One tick of idle behaviour; angles in radians (face.params conventions)."""

    blink: float  # eyeBlink weight, both eyes
    eye_pitch: float
    eye_yaw: float
    head_pitch: float
    head_yaw: float
    head_roll: float
    brow_raise: float  # 0..1, the face maps it to browInnerUp / browOuterUp


class _VoiceActivity:
    """Per-party speech activity from per-tick RMS: runs, pauses, energy peaks (dB domain)."""

    def __init__(self, pause_s: float) -> None:
        self.pause_s = pause_s
        self.floor_db = -70.0  # adaptive noise floor: follows quiet levels at once, rises slowly
        self.fast_db = -100.0
        self.slow_db = -100.0
        self.energy = 0.0  # smoothed 0..1 loudness
        self.slow_energy = 0.0
        self.talking = False
        self.run_s = 0.0  # length of the current run of speech (short gaps bridged)
        self.silent_s = 10.0
        self.since_peak_s = 10.0
        # One-tick events:
        self.pause_run_s = 0.0  # > 0 on the tick a run ends: its length
        self.onset = False  # a run started on this tick
        self.peak = False  # a loudness peak well above the recent average

    def update(self, rms: float, dt: float) -> None:
        db = 20.0 * math.log10(max(rms, 1e-5))  # silence reads -100 dB
        self.floor_db = min(db, self.floor_db + 2.0 * dt)
        active = db > max(self.floor_db + 10.0, -50.0)
        self.pause_run_s, self.onset, self.peak = 0.0, False, False
        fast = 1.0 - math.exp(-dt / 0.05) if dt > 0 else 0.0
        self.fast_db += (db - self.fast_db) * fast
        loud = min(max((db + 50.0) / 35.0, 0.0), 1.0)
        self.energy += (loud - self.energy) * (1.0 - math.exp(-dt / 0.08) if dt > 0 else 0.0)
        self.slow_energy += (self.energy - self.slow_energy) * (1.0 - math.exp(-dt / 0.8) if dt > 0 else 0.0)
        self.since_peak_s += dt
        if active:
            if not self.talking:
                self.talking, self.run_s, self.onset = True, 0.0, True
                self.slow_db = self.fast_db
            self.silent_s = 0.0
            self.run_s += dt
            self.slow_db += (self.fast_db - self.slow_db) * (1.0 - math.exp(-dt / 1.5) if dt > 0 else 0.0)
            if self.fast_db > self.slow_db + 6.0 and self.since_peak_s > 0.4:
                self.peak, self.since_peak_s = True, 0.0
        else:
            self.silent_s += dt
            if self.talking:
                self.run_s += dt
                if self.silent_s >= self.pause_s:
                    self.talking = False
                    self.pause_run_s = max(self.run_s - self.silent_s, 1e-3)


class IdleBehaviour:
    """Seeded stochastic blinks, saccades, head drift, breathing and listening/speaking reactions.

    Call ``step`` once per video tick with increasing ``t_s`` and the RMS level each party produced
    during the tick (see ``rms_level``). ``events`` keeps a short log of ``(t_s, kind)`` for
    "blink", "nod", "brow", "pause" (the other party paused after speaking) and "gaze".
    """

    def __init__(self, seed: int = 0, config: IdleConfig | None = None) -> None:
        self.seed = seed
        self.config = config or IdleConfig()
        self.reset()

    def reset(self) -> None:
        """Back to the state right after construction (same seed, same future)."""
        cfg = self.config
        self.rng = np.random.default_rng(self.seed)
        rng = self.rng
        self.events: deque[tuple[float, str]] = deque(maxlen=512)
        self._last_t: float | None = None
        self._own = _VoiceActivity(cfg.pause_s)
        self._other = _VoiceActivity(cfg.pause_s)
        # Head drift: three sinusoids per axis, incommensurate frequencies (0.04-0.3 Hz).
        self._drift_freq = rng.uniform(0.04, 0.3, size=(3, 3)) * 2.0 * math.pi  # (axis, component)
        self._drift_phase = rng.uniform(0.0, 2.0 * math.pi, size=(3, 3))
        self._drift_amp = rng.uniform(0.5, 1.0, size=(3, 3))
        self._drift_amp *= np.array(cfg.head_drift_rad)[:, None] / self._drift_amp.sum(axis=1, keepdims=True)
        # Faster "speech" sinusoids (0.3-1.2 Hz), scaled by the agent's own speech energy.
        self._speech_freq = rng.uniform(0.3, 1.2, size=(3, 2)) * 2.0 * math.pi
        self._speech_phase = rng.uniform(0.0, 2.0 * math.pi, size=(3, 2))
        self._tilt_sign = 1.0 if rng.random() < 0.5 else -1.0
        self._breath_phase = rng.uniform(0.0, 2.0 * math.pi)
        # Blinks.
        self._next_blink_s = float(rng.uniform(0.3, cfg.blink_interval_s))
        self._blink_start_s = -10.0
        self._blink_dur_s = 0.2
        # Gaze and saccades.
        self._gaze = "user"
        self._gaze_dir = GAZE_DIRECTIONS["user"]
        self._pending_gaze: list[tuple[float, str]] = []
        self._fix_from = (0.0, 0.0)
        self._fix_to = (0.0, 0.0)
        self._saccade_start_s = -10.0
        self._saccade_dur_s = 0.04
        self._next_fixation_s = 0.0
        self._avert_next = False
        self._head_gaze = [0.0, 0.0]  # pitch, yaw share of the gaze done by the head (smoothed)
        # Reactions.
        self._nods: list[tuple[float, float, float, int]] = []  # (start, period, amplitude, cycles)
        self._brows: list[tuple[float, float]] = []  # (start, amplitude)
        self._last_brow_s = -10.0
        self._tilt = 0.0  # smoothed 0..1 "the other party is speaking"
        self._spring_x = [0.0, 0.0, 0.0]  # reactive head offset (pitch, yaw, roll), critically damped
        self._spring_v = [0.0, 0.0, 0.0]

    # -- control ------------------------------------------------------------------------------

    def set_gaze(self, target: str, t_s: float) -> None:
        """Look at a ``plan.GAZE_TARGETS`` target from media time ``t_s`` on (a saccade, head follows)."""
        if target not in GAZE_TARGETS:
            raise ValueError(f"unknown gaze target {target!r}; expected one of {', '.join(GAZE_TARGETS)}")
        if not math.isfinite(t_s):
            raise ValueError(f"set_gaze: t_s must be finite, got {t_s}")
        self._pending_gaze.append((float(t_s), target))
        self._pending_gaze.sort()

    # -- stepping -----------------------------------------------------------------------------

    def step(self, t_s: float, own_level: float = 0.0, other_level: float = 0.0) -> IdlePose:
        """Advance to media time ``t_s`` given each party's RMS level during the tick."""
        cfg, rng = self.config, self.rng
        dt = 0.0 if self._last_t is None else min(max(t_s - self._last_t, 0.0), 0.25)
        self._last_t = t_s
        own_level = own_level if math.isfinite(own_level) else 0.0
        other_level = other_level if math.isfinite(other_level) else 0.0
        own, other = self._own, self._other
        own.update(own_level, dt)
        other.update(other_level, dt)

        # The other party: nods at their pauses, brows on their peaks, blinks at pauses.
        if other.pause_run_s >= cfg.nod_min_run_s:
            self.events.append((t_s, "pause"))
            if rng.random() < cfg.nod_p:
                self._start_nod(t_s + rng.uniform(0.05, 0.3), small=False)
            if rng.random() < 0.4 and self._next_blink_s - t_s > 0.6:
                self._next_blink_s = t_s + rng.uniform(0.1, 0.4)
        if other.talking and not own.talking:
            if rng.random() < cfg.nod_rate_in_speech * dt:
                self._start_nod(t_s, small=True)
            if other.peak and t_s - self._last_brow_s > cfg.brow_refractory_s and rng.random() < cfg.brow_p_listening:
                self._start_brow(t_s)
        # The agent's own speech: emphasis brows, a glance away at phrase onsets.
        emphasis = max(own.energy - own.slow_energy, 0.0)
        if own.talking:
            if own.peak and t_s - self._last_brow_s > cfg.brow_refractory_s and rng.random() < cfg.brow_p_speaking:
                self._start_brow(t_s)
            if own.onset and self._gaze == "user" and rng.random() < 0.5:
                self._avert_next = True
                self._next_fixation_s = t_s

        self._update_gaze_target(t_s)
        blink = self._blink(t_s)
        # Head: drift + breathing + smoothed reactive offset + nods + the head's share of gaze.
        drift = [
            float(np.dot(self._drift_amp[a], np.sin(self._drift_freq[a] * t_s + self._drift_phase[a])))
            for a in range(3)
        ]
        self._breath_phase += 2.0 * math.pi * dt / cfg.breath_period_s * (1.0 + 0.1 * math.sin(0.07 * t_s))
        breath = cfg.breath_pitch_rad * math.sin(self._breath_phase)
        self._tilt += ((1.0 if other.talking else 0.0) - self._tilt) * (1.0 - math.exp(-dt / 1.2) if dt > 0 else 0.0)
        speech = [
            cfg.speech_head_rad[a]
            * own.slow_energy
            * 0.5
            * float(np.sum(np.sin(self._speech_freq[a] * t_s + self._speech_phase[a])))
            for a in range(3)
        ]
        target = (
            cfg.lean_rad * self._tilt + cfg.emphasis_nod_rad * emphasis + speech[0],
            speech[1],
            cfg.tilt_rad * self._tilt_sign * self._tilt + speech[2],
        )
        self._spring(target, dt, omega=9.0)
        follow = 1.0 - math.exp(-dt / 0.35) if dt > 0 else 0.0
        for a in range(2):
            self._head_gaze[a] += (cfg.gaze_head_share * self._gaze_dir[a] - self._head_gaze[a]) * follow
        nod = self._nod(t_s)
        head_pitch = drift[0] + breath + self._spring_x[0] + nod + self._head_gaze[0]
        head_yaw = drift[1] + self._spring_x[1] + self._head_gaze[1]
        head_roll = drift[2] + self._spring_x[2]
        # Eyes: the fixation in world terms, minus (most of) the head motion not meant as gaze.
        fix_pitch, fix_yaw = self._fixation(t_s)
        eye_pitch = fix_pitch - self._head_gaze[0] - 0.8 * (head_pitch - self._head_gaze[0])
        eye_yaw = fix_yaw - self._head_gaze[1] - 0.8 * (head_yaw - self._head_gaze[1])
        return IdlePose(blink, eye_pitch, eye_yaw, head_pitch, head_yaw, head_roll, self._brow(t_s))

    # -- behaviours ---------------------------------------------------------------------------

    def _blink(self, t_s: float) -> float:
        cfg, rng = self.config, self.rng
        if t_s >= self._next_blink_s:
            self._blink_start_s = self._next_blink_s
            self._blink_dur_s = float(rng.uniform(0.15, 0.3))
            self.events.append((self._blink_start_s, "blink"))
            if rng.random() < cfg.double_blink_p:
                gap = self._blink_dur_s + rng.uniform(0.08, 0.2)
            else:
                # Gamma(4) intervals: regular-ish but never metronomic.
                gap = max(float(rng.gamma(4.0, cfg.blink_interval_s / 4.0)), cfg.blink_min_gap_s)
            self._next_blink_s = self._blink_start_s + gap
        tau = t_s - self._blink_start_s
        duration = self._blink_dur_s
        close, hold = 0.3 * duration, 0.04  # fast close, a closed hold so 25 fps sees it, slower open
        if tau < 0.0 or tau > duration:
            return 0.0
        if tau < close:
            return smoothstep(tau / close)
        if tau < close + hold:
            return 1.0
        return 1.0 - smoothstep((tau - close - hold) / (duration - close - hold))

    def _update_gaze_target(self, t_s: float) -> None:
        while self._pending_gaze and self._pending_gaze[0][0] <= t_s:
            _, target = self._pending_gaze.pop(0)
            self._gaze = target
            pitch, yaw = GAZE_DIRECTIONS[target]
            if target == "away" and self.rng.random() < 0.5:
                yaw = -yaw
            self._gaze_dir = (pitch, yaw)
            self._next_fixation_s = t_s  # saccade now
            self.events.append((t_s, "gaze"))

    def _fixation(self, t_s: float) -> tuple[float, float]:
        """World-frame gaze (pitch, yaw): fixations with ~40 ms smoothstep saccades between them."""
        cfg, rng = self.config, self.rng
        if t_s >= self._next_fixation_s:
            current = self._fixation_at(t_s)
            base_pitch, base_yaw = self._gaze_dir
            if self._avert_next:  # thinking glance: up and to one side
                self._avert_next = False
                offset = (-0.08 + rng.normal(0.0, 0.02), (0.2 if rng.random() < 0.5 else -0.2) + rng.normal(0.0, 0.03))
                duration = rng.uniform(0.5, 1.2)
            else:
                if self._gaze == "user":  # the user's eyes and mouth, a triangle of small targets
                    choice = rng.random()
                    offset = (0.0, 0.025) if choice < 0.4 else (0.0, -0.025) if choice < 0.8 else (0.06, 0.0)
                    offset = (offset[0] + rng.normal(0.0, 0.008), offset[1] + rng.normal(0.0, 0.008))
                else:
                    offset = (rng.normal(0.0, 0.03), rng.normal(0.0, 0.04))
                duration = math.exp(rng.normal(math.log(cfg.fixation_median_s), 0.5))
            target = (base_pitch + offset[0], base_yaw + offset[1])
            amplitude_deg = math.degrees(math.hypot(target[0] - current[0], target[1] - current[1]))
            self._fix_from, self._fix_to = current, target
            self._saccade_start_s = t_s
            # Saccade main sequence: ~21 ms + 2.2 ms per degree.
            self._saccade_dur_s = min(max(0.021 + 0.0022 * amplitude_deg, 0.025), 0.08)
            self._next_fixation_s = t_s + min(max(duration, 0.3), 2.0)
        return self._fixation_at(t_s)

    def _fixation_at(self, t_s: float) -> tuple[float, float]:
        s = smoothstep((t_s - self._saccade_start_s) / self._saccade_dur_s)
        return (
            self._fix_from[0] + (self._fix_to[0] - self._fix_from[0]) * s,
            self._fix_from[1] + (self._fix_to[1] - self._fix_from[1]) * s,
        )

    def _start_nod(self, start_s: float, small: bool) -> None:
        rng = self.rng
        low, high = self.config.nod_amplitude_rad
        amplitude = float(rng.uniform(low, high)) * (0.4 if small else 1.0)
        cycles = 2 if (not small and rng.random() < 0.35) else 1
        self._nods.append((start_s, float(rng.uniform(0.45, 0.7)), amplitude, cycles))
        self.events.append((start_s, "nod"))

    def _nod(self, t_s: float) -> float:
        """Sum of active nods: down-and-up raised cosines (zero velocity at both ends)."""
        total = 0.0
        keep = []
        for start, period, amplitude, cycles in self._nods:
            tau = t_s - start
            if tau > period * cycles:
                continue
            keep.append((start, period, amplitude, cycles))
            if tau >= 0.0:
                decay = 0.6 ** int(tau // period)
                total += amplitude * decay * 0.5 * (1.0 - math.cos(2.0 * math.pi * tau / period))
        self._nods = keep
        return total

    def _start_brow(self, t_s: float) -> None:
        self._brows.append((t_s, float(self.rng.uniform(0.25, 0.45))))
        self._last_brow_s = t_s
        self.events.append((t_s, "brow"))

    def _brow(self, t_s: float) -> float:
        """Sum of active brow raises: 0.15 s rise, 0.25 s hold, 0.5 s fall."""
        total = 0.0
        self._brows = [(s, a) for s, a in self._brows if t_s - s < 0.9]
        for start, amplitude in self._brows:
            tau = t_s - start
            if tau < 0.15:
                total += amplitude * smoothstep(tau / 0.15)
            elif tau < 0.4:
                total += amplitude
            else:
                total += amplitude * (1.0 - smoothstep((tau - 0.4) / 0.5))
        return min(total, 1.0)

    def _spring(self, target: tuple[float, float, float], dt: float, omega: float) -> None:
        """Critically damped spring toward ``target`` (semi-implicit Euler, sub-stepped)."""
        steps = max(1, math.ceil(dt / 0.02))
        h = dt / steps
        for _ in range(steps):
            for a in range(3):
                accel = omega * omega * (target[a] - self._spring_x[a]) - 2.0 * omega * self._spring_v[a]
                self._spring_v[a] += accel * h
                self._spring_x[a] += self._spring_v[a] * h

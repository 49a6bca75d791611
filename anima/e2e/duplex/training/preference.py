"""Automatic preference pairs for the duplex decoder G (Body of Her, paper 4.3).

The paper's annotators talk with the agent for one question-answer round, then the agent's next
segment is sampled from model variants of different temperatures and they pick the better one. Here
the corpus plays the annotator: a train conversation's window (``window_s``, 10 s) gives the user's
recorded codes and the recorded agent's first ``prefix_s`` (3 s) as a shared, teacher-forced prefix;
G then writes two continuations at two temperatures (0.7, 1.2) against the same user frames, both
are decoded (speech tokenizer -> audio; motion codec -> face) and scored by objective judges::

    python -m anima.e2e.duplex.training.preference --g out/duplex/runs/av --motion out/duplex/runs/motion \\
        --tokenizer out/mot/talker/tokenizer --data out/duplex/data --out out/duplex/pref --pairs 100

The judges (each on the generated part of the window only, each in a fixed range):

(a) ``overlap`` (weight 2): minus the share of the user's speech time in which the agent speaks, by
    the one speech-activity rule (``evaluate.speech_segments``: the engine's RMS threshold and
    hangover) against the corpus's user speech. User segments in which the recorded agent cut in
    (an agent onset at least ``INTERRUPT_AFTER_S`` into it) are excused: talking there is an
    interruption the corpus itself made. In [-1, 0]; None without 0.2 s of user speech. Weighted
    highest: talking over the user is the failure a listener notices first, and the acceptance's
    overlap goal (< 5 %) is the strictest of the turn-taking ones.
(b) ``gap`` (weight 1): at each user stop after which the recorded agent replied (an onset within
    [stop - 0.2, stop + 2] s: the corpus decides whether a reply was due, so backchannel pauses do
    not demand one), the delay d from the stop to G's first onset (from stop - 0.2 s, before the
    user's next onset). 1 when d lies in the corpus's range of reply gaps (``corpus_gap_range``:
    its 10th-90th percentiles, default 0.1-0.9 s), falling linearly to 0 one second outside it;
    no reply scores 0. Mean over the due stops; None when the window has none (a stop counts only
    with ``REPLY_LOOK_S`` of window after it).
(c) ``lips`` (weight 0.5): ``metrics.lip_sync`` of G's face (its jaw) against its own audio over the
    speech ticks of the rule (Pearson correlation in [-1, 1], best of +-2 frames of lag); 0 when G
    did not speak enough to measure it (nothing to sync: neither rewarded nor punished). Weighted
    lower: the correlation of a short window is noisy.
(d) gestures matching the prompt: left out. The body evaluator (``anima.e2e.mot.training.evaluator``)
    classifies state, emotion and character of a 4 s window; it has no text head, so it cannot say
    whether a gesture matches the text prompt, and a 10 s window gives two or three of its windows.

A pair's total is the weighted sum of the judges that apply (the user side decides which apply, so
both candidates are summed over the same judges); a pair is kept, ordered (winner, loser), when the
totals differ by more than ``margin`` (0.1); near-ties are dropped (counted).

Pairs go to ``OUT/pairs-00000.npz`` ... (``SHARD`` pairs each, written atomically; shard s is drawn
from seed (seed, s), so a stopped run resumes with the shards it lacks and gives the same pairs).
A shard holds, per pair: ``user`` (S, K) the user's frame at each step, ``rows_w``/``rows_l`` (S, K)
the agent rows written (delayed, PAD in the delay's slots), ``motion_w``/``motion_l`` (S, F * latent)
the motion latents, ``prompt_table`` (MAX_PROMPTS, 384) and ``prompt_index`` (S,) (-1 none),
``identity``, ``prefix``, ``scores_w``/``scores_l`` (J,) per judge (NaN = did not apply),
``total_w``/``total_l``, ``temperature_w``/``temperature_l``, ``conv``/``start``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from anima.e2e.duplex.training.evaluate import INTERRUPT_AFTER_S, REPLY_EARLY_S, lip_sync_or_nan, speech_segments

STEP_S = 0.08  # one decoder step
SHARD = 16  # pairs per shard file
MAX_PROMPTS = 4  # distinct prompts kept per window (a 10 s window has one or two)
JUDGES = ("overlap", "gap", "lips")
WEIGHTS = {"overlap": 2.0, "gap": 1.0, "lips": 0.5}
MARGIN = 0.1
GAP_RANGE_S = (0.1, 0.9)  # the corpus's reply gaps, 10th-90th percentile (corpus_gap_range measures it)
GAP_FALLOFF_S = 1.0  # the gap score falls to 0 this far outside the range
REPLY_DUE_S = 2.0  # a stop is due a reply when the recorded agent started within this after it
REPLY_LOOK_S = 2.0  # a stop counts only with this much window after it
MIN_USER_S = 0.2  # the overlap judge needs this much user speech

Segment = tuple[float, float]


# -- the judges ----------------------------------------------------------------------------------------

def mask_segments(mask: np.ndarray, step_s: float = STEP_S) -> list[Segment]:
    """Runs of True in a per-step mask (S,) -> [(start, end)] in seconds."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(np.diff(m.astype(np.int8)))
    return [(float(a * step_s), float(b * step_s)) for a, b in zip(edges[0::2], edges[1::2], strict=True)]


def excused_segments(user: Sequence[Segment], recorded_agent: Sequence[Segment]) -> list[bool]:
    """Per user segment: did the recorded agent cut in (an onset at least INTERRUPT_AFTER_S into it)?"""
    return [any(s + INTERRUPT_AFTER_S - 1e-9 <= a < e for a, _ in recorded_agent) for s, e in user]


def overlap_score(agent: Sequence[Segment], user: Sequence[Segment], excused: Sequence[bool],
                  t0: float, t1: float) -> float | None:
    """(a) minus the share of the user's speech in [t0, t1) (excused segments left out) that the agent speaks over."""
    over = total = 0.0
    for (s, e), skip in zip(user, excused, strict=True):
        s, e = max(s, t0), min(e, t1)
        if skip or e <= s:
            continue
        total += e - s
        over += sum(max(0.0, min(b, e) - max(a, s)) for a, b in agent)
    return None if total < MIN_USER_S else -over / total


def due_stops(user: Sequence[Segment], recorded_agent: Sequence[Segment], t0: float, t1: float) -> list[tuple[float, float]]:
    """User stops in [t0, t1 - REPLY_LOOK_S] after which the recorded agent replied: (stop, next user onset)."""
    out = []
    onsets = [a for a, _ in recorded_agent]
    for k, (_, stop) in enumerate(user):
        if not t0 <= stop <= t1 - REPLY_LOOK_S:
            continue
        if any(stop - REPLY_EARLY_S - 1e-9 <= a <= stop + REPLY_DUE_S for a in onsets):
            out.append((stop, user[k + 1][0] if k + 1 < len(user) else t1))
    return out


def gap_score(agent: Sequence[Segment], stops: Sequence[tuple[float, float]],
              gap_range: tuple[float, float] = GAP_RANGE_S) -> float | None:
    """(b) mean over due stops: 1 for a reply onset within ``gap_range`` of the stop, linearly 0 at
    GAP_FALLOFF_S outside it, 0 for no reply before the user's next onset; None without due stops."""
    if not stops:
        return None
    lo, hi = gap_range
    scores = []
    for stop, nxt in stops:
        first = next((a for a, _ in sorted(agent) if stop - REPLY_EARLY_S - 1e-9 <= a < nxt), None)
        if first is None:
            scores.append(0.0)
            continue
        d = first - stop
        dist = max(lo - d, d - hi, 0.0)
        scores.append(max(0.0, 1.0 - dist / GAP_FALLOFF_S))
    return float(np.mean(scores))


def lips_score(face: np.ndarray, audio: np.ndarray, agent: Sequence[Segment]) -> float:
    """(c) jaw vs energy correlation of the face on its own audio over the agent's speech; 0 if unmeasurable."""
    r = lip_sync_or_nan(face, audio, agent)
    return 0.0 if not np.isfinite(r) else float(r)


def judge(audio: np.ndarray, face: np.ndarray, user_speaking: np.ndarray, agent_speaking: np.ndarray,
          prefix: int, gap_range: tuple[float, float] = GAP_RANGE_S) -> dict[str, float | None]:
    """All judges on one candidate: ``audio`` (N,) 24 kHz and ``face`` (T, 112) 25 fps from step 0 of
    the window; ``user_speaking``/``agent_speaking`` (S,) the corpus's per-step masks (the recorded
    agent); the generated part starts at step ``prefix``."""
    S = len(user_speaking)
    t0, t1 = prefix * STEP_S, S * STEP_S
    agent = speech_segments(np.asarray(audio, np.float32))
    user, recorded = mask_segments(user_speaking), mask_segments(agent_speaking)
    gen_face = face[2 * prefix:]
    gen_audio = np.asarray(audio)[int(round(t0 * 24_000)):][:len(gen_face) * 960]
    gen_face = gen_face[:-(-gen_audio.size // 960)] if gen_audio.size else gen_face[:0]
    lips = 0.0
    if gen_audio.size >= 960 * 3:
        lips = lips_score(gen_face, gen_audio, [(max(a - t0, 0.0), b - t0) for a, b in agent if b > t0])
    return {"overlap": overlap_score(agent, user, excused_segments(user, recorded), t0, t1),
            "gap": gap_score(agent, due_stops(user, recorded, t0, t1), gap_range),
            "lips": lips}


def total(scores: dict[str, float | None], weights: dict[str, float] = WEIGHTS) -> float:
    """The weighted sum over the judges that apply (None = does not apply)."""
    return float(sum(weights[k] * v for k, v in scores.items() if v is not None and k in weights))


def corpus_gap_range(conversations: Sequence, q: tuple[float, float] = (10, 90)) -> tuple[float, float]:
    """Percentiles of the recorded agent's reply gaps over due stops (the masks' 80 ms grid); default if none."""
    gaps = []
    for conv in conversations:
        user, agent = mask_segments(conv.user_speaking), mask_segments(conv.agent_speaking)
        onsets = [a for a, _ in agent]
        for _, stop in user:
            after = [a - stop for a in onsets if stop - REPLY_EARLY_S - 1e-9 <= a <= stop + REPLY_DUE_S]
            if after:
                gaps.append(min(after))
    if len(gaps) < 5:
        return GAP_RANGE_S
    return float(np.percentile(gaps, q[0])), float(np.percentile(gaps, q[1]))


# -- sampling G ----------------------------------------------------------------------------------------

@dataclass
class Sample:
    """A batch of B agent continuations of windows, step by step (step i's content at index i)."""

    user: Any  # (B, S, K) long: the user's frame i
    rows: Any  # (B, S, K) long: the agent row written at step i (delayed; PAD in the delay's slots)
    motion: Any  # (B, S, F * latent) float: the motion latents of step i
    prompt: Any  # (B, S, d_prompt) float
    has_prompt: Any  # (B, S) bool
    identity: Any  # (B,) long (n_identity = empty)
    prefix: int  # steps [0, prefix) are the recorded agent's (teacher-forced)

    def inputs(self, config) -> dict[str, Any]:
        """G's inputs for the whole sequence (``DuplexDecoder.embed`` kwargs): position i reads step i-1,
        as in training (``train.make_inputs``) and as ``DuplexDecoder.step`` feeds them."""
        import torch

        from anima.e2e.duplex.model import shift_right

        B, S, _ = self.rows.shape
        return {"agent_rows": shift_right(self.rows, config.start), "user_frames": shift_right(self.user, config.pad),
                "motion": shift_right(self.motion, 0.0),
                "has_motion": shift_right(torch.ones(B, S, dtype=torch.bool, device=self.rows.device), False),
                "prompt": self.prompt, "has_prompt": self.has_prompt, "traj": None, "has_traj": None,
                "identity": self.identity}

    def generated(self, config) -> Any:
        """(B, S, K) bool: the tokens G sampled (past the prefix, not the delay's PAD slots)."""
        import torch

        steps = torch.arange(self.rows.shape[1], device=self.rows.device)[None, :, None]
        return (steps >= self.prefix) & (self.rows != config.pad)

    def select(self, idx) -> Sample:
        return Sample(self.user[idx], self.rows[idx], self.motion[idx], self.prompt[idx], self.has_prompt[idx],
                      self.identity[idx], self.prefix)


def windows(conversations: Sequence, steps: int, count: int, rng: np.random.Generator) -> list[tuple[Any, int]]:
    """``count`` random (conversation, start) windows of ``steps`` steps lying wholly inside a conversation."""
    long_enough = [c for c in conversations if c.steps >= steps]
    if not long_enough:
        raise ValueError(f"no conversation has {steps} steps ({steps * STEP_S:.1f} s); use a shorter window")
    p = np.array([c.steps - steps + 1 for c in long_enough], np.float64)
    picks = rng.choice(len(long_enough), size=count, p=p / p.sum())
    return [(long_enough[i], int(rng.integers(0, long_enough[i].steps - steps + 1))) for i in picks]


def window_batch(picks: Sequence[tuple[Any, int]], steps: int) -> dict[str, Any]:
    """The sampler's tensors (``WindowSampler.sample`` keys) of the chosen windows."""
    import torch

    from anima.e2e.duplex.training.data import WindowSampler

    sampler = WindowSampler([c for c, _ in picks], steps, np.random.default_rng(0))
    rows = [sampler.window(c, s) for c, s in picks]
    return {key: torch.from_numpy(np.stack([r[key] for r in rows])) for key in rows[0]}


def sample_step(model, state, user_frame, prompt, has_prompt, identity, temperature, top_k: int = 0,
                force_row=None, generator=None):
    """``DuplexDecoder.step`` with a temperature per stream (B,) and per-stream control masks: feed the
    user's frame i-1 (B, K) (None: not heard yet), write row i (B, K) and motion i (B, F * latent).
    ``top_k`` 0 samples the full distribution (what PPO needs: the sampled tokens are the policy's)."""
    import torch

    c = model.config
    B = state.agent_row.shape[0]
    state.user_frame = user_frame.long() if user_frame is not None else torch.full_like(state.agent_row, c.pad)
    x = model.embed(state.agent_row[:, None], state.user_frame[:, None],
                    state.motion[:, None] if state.motion is not None else None, None,
                    prompt[:, None] if prompt is not None else None, has_prompt[:, None] if has_prompt is not None else None,
                    None, None, identity)
    h = model(x, state)[:, 0]  # (B, d)
    if force_row is not None:
        row = force_row.long()
    else:
        t = torch.as_tensor(temperature, dtype=h.dtype).clamp(min=1e-5).expand(B)
        logits = model.audio_logits(h)[..., :c.codebook_size] / t[:, None, None]  # (B, K, codebook_size)
        if top_k and top_k < c.codebook_size:
            kth = logits.topk(top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, -math.inf)
        row = torch.multinomial(logits.softmax(-1).flatten(0, 1), 1, generator=generator).view(B, c.n_codebooks)
    row = torch.where(torch.tensor([state.steps - 1 < d for d in c.delays], device=row.device), c.pad, row)
    motion = model.sample_motion(h, generator=generator)  # (B, F * latent)
    state.agent_row, state.motion = row, motion
    return row, motion


def rollout(model, batch: dict[str, Any], prefix: int, temperature, codec=None, top_k: int = 0,
            generator=None) -> Sample:
    """G writes the agent's side of ``batch`` (sampler tensors, B windows of S steps) step by step against
    the recorded user frames; steps [0, prefix) replay the recorded agent (rows and, with ``codec``,
    its motion latents). ``temperature``: a float or (B,). Returns the Sample (no gradients)."""
    import torch

    from anima.e2e.duplex.model import delayed_rows

    c = model.config
    user = batch["user_codes"].long().transpose(1, 2)  # (B, S, K)
    B, S, K = user.shape
    if S > c.context:
        raise ValueError(f"rollout: a window of {S} steps is longer than G's context ({c.context})")
    if not 0 <= prefix < S:
        raise ValueError(f"rollout: prefix {prefix} must lie in [0, {S})")
    recorded = delayed_rows(batch["agent_codes"].long(), c.delays, c.pad)  # (B, S, K)
    latents = None
    if codec is not None and prefix:
        with torch.no_grad():
            latents = codec.encode(batch["motion"][:, :prefix].float().flatten(1, 2)).reshape(B, prefix, c.motion_dim)
    prompt, has_prompt = batch["prompt"].float(), batch["has_prompt"].bool()
    identity = batch["identity"].long()
    state = model.new_state(B)
    rows, motion = [], []
    with torch.no_grad():
        for i in range(S):
            row, m = sample_step(model, state, user[:, i - 1] if i else None, prompt[:, i], has_prompt[:, i], identity,
                                 temperature, top_k, recorded[:, i] if i < prefix else None, generator)
            if latents is not None and i < prefix:
                m = state.motion = latents[:, i]
            rows.append(row)
            motion.append(m)
    return Sample(user=user, rows=torch.stack(rows, 1), motion=torch.stack(motion, 1), prompt=prompt,
                  has_prompt=has_prompt, identity=identity, prefix=prefix)


def frames_from_rows(rows, delays: Sequence[int]):
    """(B, S, K) delayed rows -> (B, K, S - max(delay)) frames (frame j's codebook k is row j + d_k's)."""
    import torch

    D, S = max(delays), rows.shape[1]
    if S <= D:
        raise ValueError(f"frames_from_rows: {S} rows complete no frame (the delay is {D})")
    return torch.stack([rows[:, d:S - D + d, k] for k, d in enumerate(delays)], dim=1)


def decode(sample: Sample, tokenizer, codec, delays: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each stream's (audio (N,) at 24 kHz, face (T, 112) at 25 fps), both from step 0 of the window."""
    import torch

    from anima.e2e.duplex.training.data import FACE_DIM

    frames = frames_from_rows(sample.rows, delays)  # (B, K, S - D)
    B, S = sample.rows.shape[:2]
    with torch.no_grad():
        audio = tokenizer.decode(frames).float().numpy()  # (B, 1920 (S - D))
        latent = sample.motion.shape[-1] // 2
        face = codec.decode(sample.motion.reshape(B, 2 * S, latent).float())[..., :FACE_DIM].numpy()  # (B, 2S, 112)
    out = []
    for b in range(B):
        n = audio.shape[1] // 960
        out.append((audio[b].astype(np.float32), face[b, :n].astype(np.float32)))
    return out


def score_sample(sample: Sample, batch: dict[str, Any], tokenizer, codec, delays: Sequence[int],
                 gap_range: tuple[float, float] = GAP_RANGE_S) -> list[dict[str, float | None]]:
    """The judges of every stream of a sample (``batch``: the sampler tensors it was drawn against)."""
    return [judge(audio, face, batch["user_speaking"][b].numpy(), batch["agent_speaking"][b].numpy(), sample.prefix, gap_range)
            for b, (audio, face) in enumerate(decode(sample, tokenizer, codec, delays))]


# -- pairs and shards ----------------------------------------------------------------------------------

def order_pair(a: dict[str, float | None], b: dict[str, float | None], margin: float = MARGIN,
               weights: dict[str, float] = WEIGHTS) -> int | None:
    """0 if ``a`` wins, 1 if ``b`` wins, None for a near-tie (totals within ``margin``)."""
    ta, tb = total(a, weights), total(b, weights)
    if abs(ta - tb) <= margin:
        return None
    return 0 if ta > tb else 1


def _scores_array(scores: dict[str, float | None]) -> np.ndarray:
    return np.array([np.nan if scores[k] is None else scores[k] for k in JUDGES], np.float32)


def _prompt_table(prompt: np.ndarray, has: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, d) per-step prompts -> (MAX_PROMPTS, d) distinct ones + (S,) index (-1 none; past MAX_PROMPTS: none)."""
    table = np.zeros((MAX_PROMPTS, prompt.shape[1]), np.float32)
    index = np.full(len(prompt), -1, np.int8)
    seen: list[np.ndarray] = []
    for i in np.flatnonzero(has):
        match = next((j for j, p in enumerate(seen) if np.array_equal(p, prompt[i])), None)
        if match is None and len(seen) < MAX_PROMPTS:
            seen.append(prompt[i])
            match = len(seen) - 1
        if match is not None:
            index[i] = match
    if seen:
        table[:len(seen)] = np.stack(seen)
    return table, index


def pair_record(sample: Sample, b_w: int, b_l: int, scores: list[dict], temperatures: Sequence[float],
                conv: str, start: int) -> dict[str, np.ndarray]:
    """One pair's arrays (winner stream ``b_w``, loser ``b_l`` of a two-stream sample)."""
    table, index = _prompt_table(sample.prompt[b_w].numpy(), sample.has_prompt[b_w].numpy())
    return {"user": sample.user[b_w].numpy().astype(np.int16),
            "rows_w": sample.rows[b_w].numpy().astype(np.int16), "rows_l": sample.rows[b_l].numpy().astype(np.int16),
            "motion_w": sample.motion[b_w].numpy().astype(np.float32), "motion_l": sample.motion[b_l].numpy().astype(np.float32),
            "prompt_table": table.astype(np.float16), "prompt_index": index,
            "identity": np.array(int(sample.identity[b_w])), "prefix": np.array(sample.prefix),
            "scores_w": _scores_array(scores[b_w]), "scores_l": _scores_array(scores[b_l]),
            "total_w": np.array(total(scores[b_w]), np.float32), "total_l": np.array(total(scores[b_l]), np.float32),
            "temperature_w": np.array(temperatures[b_w], np.float32), "temperature_l": np.array(temperatures[b_l], np.float32),
            "conv": np.array(conv), "start": np.array(start)}


def write_shard(path: Path, records: Sequence[dict[str, np.ndarray]]) -> None:
    """Stack pair records into one .npz (temporary name, then renamed)."""
    if not records:
        raise ValueError("write_shard: no pairs")
    arrays = {k: np.stack([r[k] for r in records]) for k in records[0]}
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def shard_paths(directory: str | Path) -> list[Path]:
    return sorted(Path(directory).glob("pairs-[0-9][0-9][0-9][0-9][0-9].npz"))


def shard_size(path: Path) -> int:
    with np.load(path) as z:
        return int(z["rows_w"].shape[0])


def load_pairs(directory: str | Path) -> dict[str, np.ndarray]:
    """Every pair of every shard, stacked (the keys of ``pair_record``, leading axis = pair)."""
    paths = shard_paths(directory)
    if not paths:
        raise FileNotFoundError(f"{directory}: no preference pairs (pairs-*.npz); run python -m anima.e2e.duplex.training.preference")
    parts = []
    for p in paths:
        with np.load(p) as z:
            parts.append({k: z[k] for k in z.files})
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def pairs_sample(pairs: dict[str, np.ndarray], idx: np.ndarray, side: str, d_prompt: int) -> Sample:
    """The winners (``side`` "w") or losers ("l") of pairs ``idx`` as a Sample (all pairs share one prefix length)."""
    import torch

    prefixes = np.unique(pairs["prefix"][idx])
    if prefixes.size != 1:
        raise ValueError(f"pairs of different prefix lengths in one batch: {prefixes.tolist()}")
    index = pairs["prompt_index"][idx].astype(np.int64)  # (B, S)
    table = pairs["prompt_table"][idx].astype(np.float32)  # (B, P, d)
    if table.shape[-1] != d_prompt:
        raise ValueError(f"pairs hold prompts of {table.shape[-1]} dims, the model reads {d_prompt}")
    prompt = np.take_along_axis(table, np.maximum(index, 0)[..., None], axis=1)  # (B, S, d)
    return Sample(user=torch.from_numpy(pairs["user"][idx].astype(np.int64)),
                  rows=torch.from_numpy(pairs[f"rows_{side}"][idx].astype(np.int64)),
                  motion=torch.from_numpy(pairs[f"motion_{side}"][idx].astype(np.float32)),
                  prompt=torch.from_numpy(prompt), has_prompt=torch.from_numpy(index >= 0),
                  identity=torch.from_numpy(pairs["identity"][idx].astype(np.int64)), prefix=int(prefixes[0]))


def make_shard(model, tokenizer, codec, conversations: Sequence, shard: int, size: int, seed: int, steps: int,
               prefix: int, temperatures: Sequence[float] = (0.7, 1.2), top_k: int = 50, margin: float = MARGIN,
               gap_range: tuple[float, float] = GAP_RANGE_S, max_tries: int | None = None) -> tuple[list[dict], dict[str, int]]:
    """Draw windows until ``size`` pairs clear the margin (at most ``max_tries`` windows, default 8 x size).
    Returns (pair records, counts: tried, ties)."""
    import torch

    rng = np.random.default_rng([seed, shard])
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    records, tried, ties = [], 0, 0
    limit = max_tries if max_tries is not None else 8 * size
    while len(records) < size and tried < limit:
        conv, start = windows(conversations, steps, 1, rng)[0]
        batch = window_batch([(conv, start), (conv, start)], steps)
        sample = rollout(model, batch, prefix, torch.tensor(list(temperatures), dtype=torch.float32), codec, top_k, generator)
        scores = score_sample(sample, batch, tokenizer, codec, model.config.delays, gap_range)
        tried += 1
        winner = order_pair(scores[0], scores[1], margin)
        if winner is None:
            ties += 1
            continue
        records.append(pair_record(sample, winner, 1 - winner, scores, temperatures, conv.conv_id, start))
    return records, {"tried": tried, "ties": ties}


def build_pairs(model, tokenizer, codec, conversations: Sequence, out: str | Path, pairs: int, seed: int = 0,
                window_s: float = 10.0, prefix_s: float = 3.0, temperatures: Sequence[float] = (0.7, 1.2),
                top_k: int = 50, margin: float = MARGIN, gap_range: tuple[float, float] | None = None,
                progress: bool = True) -> dict[str, Any]:
    """Write shards until ``out`` holds ``pairs`` pairs (complete shards are kept); returns the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = min(int(round(window_s / STEP_S)), model.config.context)
    prefix = int(round(prefix_s / STEP_S))
    if not 0 < prefix < steps:
        raise ValueError(f"prefix of {prefix} steps must be inside the {steps}-step window")
    gap_range = gap_range or corpus_gap_range(conversations)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"shards": {}}
    settings = {"steps": steps, "prefix": prefix, "temperatures": list(temperatures), "top_k": top_k, "margin": margin,
                "seed": seed, "weights": WEIGHTS, "judges": list(JUDGES), "gap_range_s": list(gap_range)}
    old = {k: manifest.get(k) for k in settings if k in manifest}
    if old and any(old[k] != (list(v) if isinstance(v, tuple) else v) for k, v in settings.items() if k in old):
        raise ValueError(f"{out} holds pairs made with other settings ({old}); use a new --out")
    manifest.update(settings)
    n_shards = -(-pairs // SHARD)
    bar = tqdm(total=pairs, desc="preference pairs", unit="pair", disable=not progress)
    for s in range(n_shards):
        want = min(SHARD, pairs - s * SHARD)
        path = out / f"pairs-{s:05d}.npz"
        if path.is_file() and shard_size(path) >= want:
            bar.update(want)
            continue
        records, counts = make_shard(model, tokenizer, codec, conversations, s, want, seed, steps, prefix,
                                     temperatures, top_k, margin, gap_range)
        if records:
            write_shard(path, records)
        manifest["shards"][path.name] = {"pairs": len(records), **counts}
        manifest_path.write_text(json.dumps(manifest, indent=1))
        bar.update(want)
    bar.close()
    manifest["pairs"] = sum(shard_size(p) for p in shard_paths(out))
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--g", type=Path, required=True, help="the decoder G (a duplex checkpoint)")
    parser.add_argument("--motion", type=Path, required=True, help="the motion codec")
    parser.add_argument("--tokenizer", type=Path, required=True, help="the speech tokenizer")
    parser.add_argument("--data", type=Path, default=Path("out/duplex/data"))
    parser.add_argument("--out", type=Path, default=Path("out/duplex/pref"))
    parser.add_argument("--pairs", type=int, required=True)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per window")
    parser.add_argument("--prefix", type=float, default=3.0, help="seconds of the recorded agent as the shared prefix")
    parser.add_argument("--temperatures", type=float, nargs=2, default=(0.7, 1.2))
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--margin", type=float, default=MARGIN)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    import torch

    from anima.e2e.duplex.model import load_duplex
    from anima.e2e.duplex.motion import MotionCodec
    from anima.e2e.duplex.training.data import load_split
    from anima.talker.model.tokenizer import SpeechTokenizer

    torch.set_num_threads(args.threads)
    model = load_duplex(args.g)
    codec = MotionCodec.from_pretrained(args.motion)
    if codec.config.latent != model.config.latent:
        raise SystemExit(f"motion codec latents of {codec.config.latent}, G expects {model.config.latent}")
    tokenizer = SpeechTokenizer.from_pretrained(args.tokenizer).eval()
    convs = load_split(args.data, "train")
    if not convs:
        raise SystemExit(f"{args.data}: no train conversations")
    manifest = build_pairs(model, tokenizer, codec, convs, args.out, args.pairs, args.seed, args.window, args.prefix,
                           tuple(args.temperatures), args.top_k, args.margin, progress=not args.quiet)
    print(json.dumps({k: v for k, v in manifest.items() if k != "shards"}))


if __name__ == "__main__":
    main()

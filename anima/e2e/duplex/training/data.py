"""Training data of the duplex decoder: both parties' speech codes and the agent's motion, per 80 ms step.

``build`` turns every conversation of the dialogue corpus (docs/dialogues.md) into one ``.npz``::

    user_codes, agent_codes  (8, N) int16   speech-tokenizer codes of user.flac / agent.flac (12.5 Hz)
    motion       (2N, 375) float32  raw 25 fps frames: [face 112][body263 resampled to 25 fps 263]
    joint_vel    (2N, 66) float32   the agent's joint velocities (the paper's trajectory control)
    prompt_id    (N,) int16         the motion prompt in force at the step's first frame (-1: none)
    prompt_emb   (P, 384) float32   the conversation's prompt sentences, MiniLM-embedded
    identity     ()  int            index into CHARACTERS
    agent_speaking, user_speaking (N,) bool   speech in either frame of the step (meta segments)

One step is 80 ms: one token of each codebook (1920 samples) and two 25 fps frames; N = frames // 2.
Audio is encoded with the tokenizer's streaming state, ``CHUNK_S`` at a time: every layer is causal
and the state carries each layer's left context, so the codes equal one whole-file encode (tested)
while memory stays that of one chunk. Files go to ``OUT/conv/`` under a temporary name and are
renamed, so a stopped build resumes where it was; ``OUT/SOURCE.json`` names the tokenizer (a build
with another one is refused), ``OUT/splits.json`` maps conversation -> split.

    python -m anima.e2e.duplex.training.data --dialogues out/dialogues --out out/duplex/data \\
        --tokenizer out/mot/talker/tokenizer

Reading: ``load_split(out, "train")`` -> conversations; ``WindowSampler(convs, steps, rng).sample(B)``
-> aligned random windows as tensors.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from anima.e2e.data.format import BODY_FPS, FPS, SAMPLE_RATE
from anima.e2e.mot.behaviour import resample
from anima.thinker.persona import all_personas

log = logging.getLogger(__name__)

FORMAT = "anima-duplex-data/1"
STEP_SAMPLES = 1920  # 80 ms at 24 kHz: one speech token
FRAMES_PER_STEP = 2  # two 25 fps frames per step
FACE_DIM, BODY_DIM = 112, 263
MOTION_DIM = FACE_DIM + BODY_DIM  # 375
JOINT_VEL_DIM = 22 * 3
PROMPT_DIM = 384  # anima.embed's sentence vectors
NUM_CODEBOOKS = 8
CHUNK_S = 20.0  # audio encoded this many seconds at a time
CHARACTERS = tuple(p.key for p in all_personas())  # identity index -> persona key ("aronnax", ..., "ned", "nemo")


def character_index(character: str) -> int:
    """Index of a character (persona key or name, any case) in CHARACTERS; ValueError if unknown."""
    wanted = " ".join(str(character).lower().split())
    for i, persona in enumerate(all_personas()):
        if wanted in (persona.key.lower(), persona.name.lower()):
            return i
    raise ValueError(f"unknown character {character!r}; the duplex data knows {', '.join(CHARACTERS)}")


def encode_stream(tokenizer, wave: np.ndarray, chunk_samples: int) -> np.ndarray:
    """(C, samples) float audio -> (C, 8, samples // 1920) int16 codes, ``chunk_samples`` at a time.

    The tokenizer's streaming state carries every causal layer's left context from chunk to chunk,
    so the codes are those of one ``tokenizer.encode`` of the whole signal.
    """
    import torch

    if wave.ndim != 2:
        raise ValueError(f"encode_stream: expected (channels, samples), got {wave.shape}")
    if chunk_samples <= 0:
        raise ValueError(f"encode_stream: chunk_samples must be positive, got {chunk_samples}")
    if tokenizer.codebook_size > np.iinfo(np.int16).max:
        raise ValueError(f"encode_stream: codebook size {tokenizer.codebook_size} does not fit int16")
    n = wave.shape[1] // STEP_SAMPLES
    state = tokenizer.new_encoder_state()
    wav = torch.from_numpy(np.ascontiguousarray(wave[:, : n * STEP_SAMPLES], dtype=np.float32))
    codes = [tokenizer.encode_step(state, wav[:, a : a + chunk_samples]) for a in range(0, wav.shape[1], chunk_samples)]
    out = torch.cat(codes, -1) if codes else torch.zeros(wave.shape[0], tokenizer.num_codebooks, 0, dtype=torch.long)
    if out.shape[-1] != n:
        raise RuntimeError(f"encode_stream: {out.shape[-1]} tokens for {n} whole steps")
    return out.numpy().astype(np.int16)  # (C, 8, n)


def _speaking(segments: list, steps: int) -> np.ndarray:
    """Per step: whether a segment covers the start of either of its two frames (as load_window's masks). # (steps,)"""
    t = np.arange(steps * FRAMES_PER_STEP) / FPS
    frames = np.zeros(t.shape, dtype=bool)
    for a, b, *_ in segments:
        frames |= (t >= a) & (t < b)
    return frames.reshape(steps, FRAMES_PER_STEP).any(1)


def conversation_arrays(meta: dict[str, Any], tokenizer, embed, chunk_s: float = CHUNK_S) -> dict[str, np.ndarray]:
    """The arrays of one conversation (``meta`` as ``open_corpus`` lists it, with ``dir``).

    ``embed``: list[str] -> (P, 384) float32. Raises (ValueError, CorpusError, OSError) on a broken one.
    """
    import soundfile as sf

    conv_dir = Path(meta["dir"])
    identity = character_index(meta["identity"]["character"])
    audio = []
    for name in ("user.flac", "agent.flac"):
        samples, sr = sf.read(str(conv_dir / name), dtype="float32", always_2d=False)
        if sr != SAMPLE_RATE or samples.ndim != 1:
            raise ValueError(f"{conv_dir / name}: {samples.shape} at {sr} Hz, expected mono at {SAMPLE_RATE} Hz")
        audio.append(samples)
    with np.load(conv_dir / "motion.npz") as z:
        face, joint_vel, prompt_id, body263 = (z[k] for k in ("face", "joint_vel", "prompt_id", "body263"))
    frames = face.shape[0]
    steps = min(frames // FRAMES_PER_STEP, min(len(a) for a in audio) // STEP_SAMPLES)
    wave = np.stack([a[: steps * STEP_SAMPLES] for a in audio])  # (2, steps * 1920): user, agent
    codes = encode_stream(tokenizer, wave, max(1, round(chunk_s * SAMPLE_RATE)))  # (2, 8, steps)
    body = resample(body263, BODY_FPS, FPS, frames=frames)  # (T, 263) at 25 fps
    motion = np.concatenate([face.astype(np.float32), body], axis=1)[: steps * FRAMES_PER_STEP]  # (2N, 375)
    prompts = [str(p) for p in meta.get("prompts", [])]
    step_prompt = prompt_id[: steps * FRAMES_PER_STEP : FRAMES_PER_STEP].astype(np.int16)  # (N,) first frame of each step
    if step_prompt.size and (step_prompt.max() >= len(prompts) or step_prompt.min() < -1):
        raise ValueError(f"{conv_dir}: prompt_id reaches {int(step_prompt.max())} but meta has {len(prompts)} prompts")
    prompt_emb = np.asarray(embed(prompts), dtype=np.float32).reshape(len(prompts), PROMPT_DIM)  # (P, 384)
    segments = meta.get("segments", {})
    return {
        "user_codes": codes[0], "agent_codes": codes[1],
        "motion": motion.astype(np.float32),
        "joint_vel": joint_vel.reshape(frames, JOINT_VEL_DIM)[: steps * FRAMES_PER_STEP].astype(np.float32),
        "prompt_id": step_prompt, "prompt_emb": prompt_emb, "identity": np.array(identity),
        "agent_speaking": _speaking(segments.get("agent", []), steps),
        "user_speaking": _speaking(segments.get("user", []), steps),
    }


def save_conversation(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """One conversation's arrays in one .npz, written to a temporary name and renamed."""
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


@dataclass
class Conversation:
    """One conversation's training arrays (see the module docstring for the shapes)."""

    conv_id: str
    split: str
    user_codes: np.ndarray  # (8, N) int16
    agent_codes: np.ndarray  # (8, N) int16
    motion: np.ndarray  # (2N, 375) float32
    joint_vel: np.ndarray  # (2N, 66) float32
    prompt_id: np.ndarray  # (N,) int16, -1 = none
    prompt_emb: np.ndarray  # (P, 384) float32
    identity: int
    agent_speaking: np.ndarray  # (N,) bool
    user_speaking: np.ndarray  # (N,) bool

    @property
    def steps(self) -> int:
        return int(self.agent_codes.shape[1])


def load_conversation(path: str | Path, split: str = "") -> Conversation:
    path = Path(path)
    with np.load(path) as z:
        arrays = {f.name: z[f.name] for f in fields(Conversation) if f.name not in ("conv_id", "split")}
    arrays["identity"] = int(arrays["identity"])
    return Conversation(conv_id=path.stem, split=split, **arrays)


def _embedder(name: str):
    """list[str] -> (P, 384), memoised per sentence (the corpus repeats its prompts)."""
    from anima.embed import get_embedder

    embedder, cache = get_embedder(name), {}

    def embed(texts: list[str]) -> np.ndarray:
        new = sorted({t for t in texts if t not in cache})
        if new:
            cache.update(zip(new, embedder.encode(new), strict=True))
        return np.stack([cache[t] for t in texts]) if texts else np.zeros((0, PROMPT_DIM), np.float32)

    return embed


def build(dialogues: str | Path, out: str | Path, tokenizer_dir: str | Path, limit: int | None = None,
          progress: bool = True, embedder: str = "minilm", chunk_s: float = CHUNK_S) -> dict[str, int]:
    """Write ``OUT/conv/<conv_id>.npz`` for every usable conversation not done yet; returns counts.

    A broken conversation is logged and counted as ``failed`` (the corpus's own unusable ones as
    ``skipped``), never raised; a rerun keeps the finished files (``kept``) and does the rest.
    """
    import torch

    from anima.e2e.data.format import open_corpus
    from anima.talker.model.tokenizer import SpeechTokenizer

    out = Path(out)
    (out / "conv").mkdir(parents=True, exist_ok=True)
    tokenizer = SpeechTokenizer.from_pretrained(tokenizer_dir)
    source = {"format": FORMAT, "tokenizer": str(Path(tokenizer_dir).resolve()), "digest": tokenizer.code_digest(),
              "embedder": embedder, "step_samples": STEP_SAMPLES, "characters": list(CHARACTERS)}
    recorded = out / "SOURCE.json"
    if recorded.is_file():
        old = json.loads(recorded.read_text())
        for key in ("digest", "embedder", "characters"):
            if old.get(key) != source[key]:
                raise ValueError(f"{out} holds data of another {'tokenizer' if key == 'digest' else key} "
                                 f"({old.get(key)} vs {source[key]}); use a new --out")
    recorded.write_text(json.dumps(source, indent=1))
    corpus = open_corpus(dialogues)
    convs = corpus.conversations[:limit] if limit else corpus.conversations
    splits_path = out / "splits.json"
    splits = json.loads(splits_path.read_text()) if splits_path.is_file() else {}
    splits.update({m["conv_id"]: m["split"] for m in convs})
    splits_path.write_text(json.dumps(dict(sorted(splits.items())), indent=0))
    embed = _embedder(embedder)
    counts = {"conversations": 0, "steps": 0, "kept": 0, "failed": 0, "skipped": len(corpus.skipped)}
    with torch.no_grad():
        for meta in tqdm(convs, desc="duplex data", unit="conv", disable=not progress, mininterval=1.0):
            path = out / "conv" / f"{meta['conv_id']}.npz"
            if path.is_file():
                counts["kept"] += 1
                continue
            try:
                arrays = conversation_arrays(meta, tokenizer, embed, chunk_s)
            except Exception as exc:  # CorpusError, ValueError, OSError, a bad archive...: report, go on
                log.warning("duplex data: skipping %s: %s: %s", meta["dir"], type(exc).__name__, exc)
                counts["failed"] += 1
                continue
            save_conversation(path, arrays)
            counts["conversations"] += 1
            counts["steps"] += int(arrays["agent_codes"].shape[1])
    return counts


def load_split(out: str | Path, split: str) -> list[Conversation]:
    """Every built conversation of one split (train / val / test: the dialogue corpus's split)."""
    out = Path(out)
    if not (out / "splits.json").is_file():
        raise FileNotFoundError(f"{out}: no splits.json; run python -m anima.e2e.duplex.training.data")
    splits = json.loads((out / "splits.json").read_text())
    return [load_conversation(out / "conv" / f"{conv}.npz", s) for conv, s in sorted(splits.items())
            if s == split and (out / "conv" / f"{conv}.npz").is_file()]


class WindowSampler:
    """Random aligned windows of ``steps`` steps over conversations, as a batch of tensors.

    A conversation is drawn in proportion to its length; the window starts at step 0 with
    probability ``start_p`` (so the model sees conversation starts), else anywhere that keeps it
    inside the conversation. A conversation shorter than the window is padded (``valid`` False,
    zeros) past its end.
    """

    def __init__(self, conversations: list[Conversation], steps: int, rng: np.random.Generator, start_p: float = 0.1) -> None:
        if not conversations:
            raise ValueError("WindowSampler: no conversations (is the data built? python -m anima.e2e.duplex.training.data)")
        if steps <= 0:
            raise ValueError(f"WindowSampler: steps must be positive, got {steps}")
        self.conversations, self.steps, self.rng, self.start_p = conversations, steps, rng, start_p
        lengths = np.array([c.steps for c in conversations], dtype=np.float64)
        self.p = lengths / lengths.sum()

    def window(self, conv: Conversation, start: int) -> dict[str, np.ndarray]:
        """Steps ``[start, start + steps)`` of one conversation (zeros and valid False outside it)."""
        S, n = self.steps, conv.steps
        lo, hi = min(max(start, 0), n), min(max(start + S, 0), n)
        k = slice(lo - start, hi - start)  # where the real steps land in the window
        out = {
            "user_codes": np.zeros((NUM_CODEBOOKS, S), np.int64), "agent_codes": np.zeros((NUM_CODEBOOKS, S), np.int64),
            "motion": np.zeros((S, FRAMES_PER_STEP, MOTION_DIM), np.float32),
            "joint_vel": np.zeros((S, FRAMES_PER_STEP, JOINT_VEL_DIM), np.float32),
            "prompt": np.zeros((S, PROMPT_DIM), np.float32), "has_prompt": np.zeros(S, bool),
            "identity": np.array(conv.identity, np.int64),
            "agent_speaking": np.zeros(S, bool), "user_speaking": np.zeros(S, bool), "valid": np.zeros(S, bool),
        }
        out["user_codes"][:, k] = conv.user_codes[:, lo:hi]
        out["agent_codes"][:, k] = conv.agent_codes[:, lo:hi]
        out["motion"][k] = conv.motion[2 * lo : 2 * hi].reshape(hi - lo, FRAMES_PER_STEP, MOTION_DIM)
        out["joint_vel"][k] = conv.joint_vel[2 * lo : 2 * hi].reshape(hi - lo, FRAMES_PER_STEP, JOINT_VEL_DIM)
        pid = conv.prompt_id[lo:hi].astype(np.int64)
        out["has_prompt"][k] = pid >= 0
        out["prompt"][k] = np.where((pid >= 0)[:, None], conv.prompt_emb[np.maximum(pid, 0)] if len(conv.prompt_emb) else 0.0, 0.0)
        out["agent_speaking"][k] = conv.agent_speaking[lo:hi]
        out["user_speaking"][k] = conv.user_speaking[lo:hi]
        out["valid"][k] = True
        return out

    def sample(self, batch: int) -> dict[str, Any]:
        """``batch`` random windows: user/agent_codes (B, 8, S) long, motion (B, S, 2, 375), joint_vel
        (B, S, 2, 66), prompt (B, S, 384), has_prompt / agent_speaking / user_speaking / valid (B, S) bool,
        identity (B,) long."""
        import torch

        rows = []
        for i in self.rng.choice(len(self.conversations), size=batch, p=self.p):
            conv = self.conversations[i]
            at_start = self.rng.random() < self.start_p
            start = 0 if at_start else int(self.rng.integers(0, max(conv.steps - self.steps, 0) + 1))
            rows.append(self.window(conv, start))
        return {key: torch.from_numpy(np.stack([r[key] for r in rows])) for key in rows[0]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialogues", type=Path, default=Path("out/dialogues"))
    parser.add_argument("--out", type=Path, default=Path("out/duplex/data"))
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="at most this many conversations")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("ANIMA_EMBED_THREADS", str(args.threads))
    print(build(args.dialogues, args.out, args.tokenizer, args.limit))


if __name__ == "__main__":
    main()

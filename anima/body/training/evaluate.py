"""``anima body eval``: quality of the VAE, FloodDiffusion and the two baselines on the test split.

    anima body eval [--methods flood chunk ar] [--json out/body/eval.json]

Measured (definitions in ``anima.body.training.metrics``):
- VAE: reconstruction MPJPE in mm of the test clips (global, with the integrated root
  trajectory, and root-relative), decoded from the latent means.
- Text to motion, with *our* evaluator (``anima.body.training.evaluator``, not HumanML3D's): for fixed
  random 40-frame windows of the test clips, a stream generates 40 frames from a cold start with
  the window's text; FID between generated and real embeddings, R-precision@1/2/3 (own text among
  32). Reference rows: real test motion against itself (R-precision) and real validation motion
  against real test motion (FID floor at this sample size).
- Transitions: streams whose prompt changes every 3-4 s (gesture prompts of the runtime);
  transition jerk curve over 30-frame windows centred on the frame where each new prompt first
  applies (the next token for FloodDiffusion and AR, the next chunk for chunk diffusion), Peak
  Jerk, Area Under Jerk against the real curve (real stand <-> action boundaries of all clips),
  and foot skating ratio of the whole streams.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from anima.body.data.dataset import MotionDataset
from anima.body.data.humanml3d import recover_from_ric
from anima.body.model.streaming import FRAMES_PER_TOKEN, MotionStream
from anima.body.model.vae import MotionVAE
from anima.body.text import GESTURE_PROMPTS
from anima.body.training.evaluator import MotionTextEvaluator, sample_windows
from anima.body.training.metrics import (
    area_under_jerk,
    foot_skating_ratio,
    frechet_distance,
    mpjpe_mm,
    peak_jerk,
    r_precision,
    transition_jerk,
)

log = logging.getLogger(__name__)
WINDOW = 40  # frames per text-to-motion sample
TRANSITION_PROMPTS = [GESTURE_PROMPTS[g] for g in ("bow", "bye", "guide", "respond", "call", "walk", "")]


@torch.no_grad()
def vae_reconstruction(vae: MotionVAE, data: MotionDataset, split: str = "test") -> dict[str, float]:
    errors, local, feat = [], [], []
    for clip in data.split(split):
        n = (len(clip.features) // 4) * 4
        if n < 4:
            continue
        x = torch.from_numpy(data.normalise(clip.features[:n]))[None]
        mu, _ = vae.encode(x)
        recon = vae.decode(mu)[0].double().numpy()
        feat.append(float(np.mean((recon - x[0].numpy()) ** 2)))
        j_hat = recover_from_ric(data.denormalise(recon))
        j = recover_from_ric(clip.features[:n].astype(np.float64))
        errors.append(mpjpe_mm(j_hat, j))
        local.append(mpjpe_mm(j_hat - j_hat[:, :1], j - j[:, :1]))
    return {"mpjpe_mm": float(np.mean(errors)), "mpjpe_root_relative_mm": float(np.mean(local)),
            "feature_mse": float(np.mean(feat)), "clips": len(errors)}


def real_transition_curve(data: MotionDataset) -> np.ndarray:
    sequences = []
    for clip in data.clips:
        changes = sorted({b for a, b, _ in clip.segments if b < len(clip.features)} | {a for a, _, _ in clip.segments if a > 0})
        if changes:
            sequences.append((recover_from_ric(clip.features.astype(np.float64)), changes))
    return transition_jerk(sequences)


def text_to_motion(make_stream, data: MotionDataset, evaluator: MotionTextEvaluator, windows, seed: int = 0,
                   progress: bool = True, desc: str = "t2m") -> dict[str, float]:
    texts = sorted(data.embeddings)
    text_ids = {t: i for i, t in enumerate(texts)}
    pool = evaluator.embed_text(np.stack([data.embeddings[t] for t in texts]))
    pool_ids = np.arange(len(texts))
    real = np.stack([data.normalise(data.clips[i].features[s:s + WINDOW]) for i, s, _ in windows])
    real_emb = evaluator.embed_motion(real)
    gen = []
    for n, (_, _, text) in enumerate(tqdm(windows, desc=desc, disable=not progress, leave=False)):
        stream: MotionStream = make_stream(seed + n)
        stream.push_prompt(text, 0)
        _, features = stream.generate(WINDOW)
        gen.append(data.normalise(features))
    gen_emb = evaluator.embed_motion(np.stack(gen))
    ids = np.array([text_ids[t] for _, _, t in windows])
    text_emb = pool[ids]
    r = r_precision(gen_emb, text_emb, ids, pool, pool_ids, seed=seed)
    return {"fid": frechet_distance(gen_emb, real_emb), "r1": float(r[0]), "r2": float(r[1]), "r3": float(r[2]),
            "samples": len(windows)}


def real_text_to_motion(data: MotionDataset, evaluator: MotionTextEvaluator, windows, val_windows, seed: int = 0) -> dict[str, float]:
    texts = sorted(data.embeddings)
    text_ids = {t: i for i, t in enumerate(texts)}
    pool = evaluator.embed_text(np.stack([data.embeddings[t] for t in texts]))
    emb = evaluator.embed_motion(np.stack([data.normalise(data.clips[i].features[s:s + WINDOW]) for i, s, _ in windows]))
    val = evaluator.embed_motion(np.stack([data.normalise(data.clips[i].features[s:s + WINDOW]) for i, s, _ in val_windows]))
    ids = np.array([text_ids[t] for _, _, t in windows])
    r = r_precision(emb, pool[ids], ids, pool, np.arange(len(texts)), seed=seed)
    return {"fid": frechet_distance(val, emb), "r1": float(r[0]), "r2": float(r[1]), "r3": float(r[2]), "samples": len(windows)}


def transition_streams(make_stream, num_streams: int = 6, segments: int = 5, seed: int = 0, progress: bool = True,
                       desc: str = "transitions") -> tuple[list[tuple[np.ndarray, list[int]]], float]:
    """Streams with a new prompt every 60 or 80 frames (3 or 4 s); returns (joints, change frames) and foot skating."""
    rng = np.random.default_rng(seed)
    sequences, skating = [], []
    for n in tqdm(range(num_streams), desc=desc, disable=not progress, leave=False):
        stream: MotionStream = make_stream(seed + 1000 + n)
        order = rng.permutation(len(TRANSITION_PROMPTS))
        lengths = [60 if i % 2 == 0 else 80 for i in range(segments)]
        starts = np.cumsum([0] + lengths[:-1])
        total = int(sum(lengths))
        changes, joints = [], []
        pending = [(int(s), TRANSITION_PROMPTS[order[i % len(order)]]) for i, s in enumerate(starts)]
        while stream.committed_frames < total:
            while pending and stream.committed_frames >= pending[0][0]:
                frame, text = pending.pop(0)
                token = stream.push_prompt(text)
                if frame > 0:
                    changes.append(token * FRAMES_PER_TOKEN)  # where the new prompt first applies
            out = stream.step()
            if len(out):
                joints.append(out)
        joints_all = np.concatenate(joints)[:total]
        sequences.append((joints_all, changes))
        skating.append(foot_skating_ratio(joints_all))
    return sequences, float(np.mean(skating))


def evaluate_methods(streams: dict[str, callable], data: MotionDataset, vae: MotionVAE, evaluator: MotionTextEvaluator,
                     per_clip: int = 3, num_streams: int = 6, seed: int = 0, progress: bool = True) -> dict:
    """All metrics for every method in ``streams`` (name -> make_stream(seed) -> MotionStream)."""
    windows = sample_windows(data, "test", WINDOW, per_clip, seed)
    val_windows = sample_windows(data, "val", WINDOW, per_clip, seed)
    real_curve = real_transition_curve(data)
    test_joints = [recover_from_ric(c.features.astype(np.float64)) for c in data.split("test")]
    report = {
        "vae": vae_reconstruction(vae, data),
        "real": {**real_text_to_motion(data, evaluator, windows, val_windows, seed),
                 "peak_jerk": peak_jerk(real_curve), "auj": 0.0,
                 "foot_skating": float(np.mean([foot_skating_ratio(j) for j in test_joints]))},
        "real_transition_curve": real_curve.tolist(),
    }
    for name, make_stream in streams.items():
        t2m = text_to_motion(make_stream, data, evaluator, windows, seed, progress, desc=f"{name} t2m")
        sequences, skating = transition_streams(make_stream, num_streams, seed=seed, progress=progress, desc=f"{name} transitions")
        curve = transition_jerk(sequences)
        report[name] = {**t2m, "peak_jerk": peak_jerk(curve), "auj": area_under_jerk(curve, real_curve),
                        "foot_skating": skating, "transitions": sum(len(c) for _, c in sequences),
                        "transition_curve": curve.tolist()}
        log.info("%s: %s", name, {k: v for k, v in report[name].items() if k != "transition_curve"})
    return report


def write_report(report: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=1))

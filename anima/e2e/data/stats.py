"""Statistics of a dialogue corpus: how much, how many turns, and how the floor changes hands.

    stats = corpus_stats("out/dialogues")          # dict (JSON-able)
    histogram_png(stats, "out/dialogues/stats.png")

Turn transitions are measured the way conversation analysis measures them (floor transfer offset,
FTO): between the end of one speaker's voiced stretch and the start of the other's, positive for a
gap, negative for an overlap. Backchannels ("uh-huh" during a reply) and stretches wholly inside
the other speaker's are not transitions (Heldner & Edlund 2010 count them as within-speaker
overlaps); they are counted apart. Voiced bounds come from the audio (10 ms peak > 0.01), so the
synthesiser's leading and trailing silence does not count as speech.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from anima.e2e.data.format import open_corpus

# Published human figures the corpus is compared with (docs/dialogues.md cites them in full).
HUMAN = {
    "modal_fto_s": 0.2,  # Stivers et al. 2009: modal response offset 0..200 ms in all ten languages
    "mean_fto_english_s": 0.236,  # Stivers et al. 2009, English (cross-language means 7..469 ms)
    "overlap_share": 0.4,  # Heldner & Edlund 2010: about 40 % of between-speaker intervals are overlaps
}
BIN_S = 0.1
RANGE_S = (-2.0, 3.0)


def _transitions(segments: dict[str, list]) -> tuple[list[dict[str, Any]], int]:
    """Floor transfer offsets of one conversation, and how many stretches were inside the other speaker's."""
    segs = [(a, b, "agent", kind) for a, b, _, kind in segments.get("agent", [])]
    segs += [(a, b, "user", kind) for a, b, _, kind in segments.get("user", []) if kind != "backchannel"]
    segs.sort(key=lambda s: (s[0], s[1]))
    out, inside = [], 0
    prev = None
    for seg in segs:
        if prev is not None and seg[2] != prev[2]:
            if seg[1] <= prev[1]:  # wholly inside the other's stretch: not a change of floor
                inside += 1
                continue
            out.append({"from": prev[2], "to": seg[2], "fto_s": round(seg[0] - prev[1], 3), "kind": seg[3]})
        if prev is None or seg[1] > prev[1] or seg[2] == prev[2]:
            prev = seg
    return out, inside


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    v = np.asarray(values)
    q = np.percentile(v, [10, 25, 50, 75, 90])
    hist, edges = np.histogram(np.clip(v, RANGE_S[0], RANGE_S[1] - 1e-9), bins=int(round((RANGE_S[1] - RANGE_S[0]) / BIN_S)), range=RANGE_S)
    mode = float(edges[int(np.argmax(hist))] + BIN_S / 2)
    return {"n": int(v.size), "mean_s": round(float(v.mean()), 3), "p10_s": round(float(q[0]), 3), "p25_s": round(float(q[1]), 3),
            "median_s": round(float(q[2]), 3), "p75_s": round(float(q[3]), 3), "p90_s": round(float(q[4]), 3),
            "mode_bin_s": round(mode, 3), "overlap_share": round(float((v < 0).mean()), 3),
            "within_200ms_share": round(float((np.abs(v) <= 0.2).mean()), 3), "values": [round(float(x), 3) for x in v]}


def corpus_stats(root: str | Path) -> dict[str, Any]:
    """Hours, turns, transitions and interruptions of the corpus under ``root`` (bad conversations skipped)."""
    corpus = open_corpus(root)
    transitions: list[dict[str, Any]] = []
    counts = {"user_turns": 0, "agent_turns": 0, "backchannels": 0, "inside_other": 0, "user_barge_ins": 0,
              "agent_cut_ins": 0, "agent_resumed_after_pause": 0, "agent_replies_interrupted": 0}
    cut_reasons: dict[str, int] = {}
    kinds: dict[str, int] = {}
    user_s = agent_s = 0.0
    for meta in corpus.conversations:
        trans, inside = _transitions(meta.get("segments", {}))
        transitions += trans
        counts["inside_other"] += inside
        for a, b, _, kind in meta["segments"].get("user", []):
            user_s += b - a
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind == "backchannel":
                counts["backchannels"] += 1
            else:
                counts["user_turns"] += 1
        for a, b, _, _ in meta["segments"].get("agent", []):
            agent_s += b - a
            counts["agent_turns"] += 1
        for e in meta["events"]:
            if e["type"] == "barge_in":
                counts["user_barge_ins"] += 1
            elif e["type"] == "agent_cut_in":
                counts["agent_cut_ins"] += 1
                reason = e["reason"].split(":")[0]
                cut_reasons[reason] = cut_reasons.get(reason, 0) + 1
            elif e["type"] == "agent_resumed":
                counts["agent_resumed_after_pause"] += 1
            elif e["type"] == "agent_stop" and e.get("interrupted"):
                counts["agent_replies_interrupted"] += 1
    hours = corpus.hours
    return {
        "root": str(root), "conversations": len(corpus.conversations), "skipped": corpus.skipped,
        "hours": round(hours, 4), "speech_hours": {"user": round(user_s / 3600, 4), "agent": round(agent_s / 3600, 4)},
        "splits": {s: sum(m.get("split") == s for m in corpus.conversations) for s in ("train", "val", "test")},
        "characters": _count(m["character"] for m in corpus.conversations),
        "user_voices": _count(m["user_voice"] for m in corpus.conversations),
        "user_turn_kinds": kinds, "counts": counts, "agent_cut_in_reasons": cut_reasons,
        "fto": {"all": _summary([t["fto_s"] for t in transitions]),
                "user_to_agent": _summary([t["fto_s"] for t in transitions if t["to"] == "agent"]),
                "agent_to_user": _summary([t["fto_s"] for t in transitions if t["to"] == "user"])},
        "human": HUMAN,
    }


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def histogram_png(stats: dict[str, Any], path: str | Path, width: int = 900, height: int = 420) -> Path:
    """Floor transfer offset histogram (user->agent and agent->user stacked), human mode marked."""
    from PIL import Image, ImageDraw

    path = Path(path)
    n_bins = int(round((RANGE_S[1] - RANGE_S[0]) / BIN_S))
    series = []
    for key, colour in (("user_to_agent", (52, 101, 164)), ("agent_to_user", (204, 102, 0))):
        v = np.clip(np.asarray(stats["fto"][key].get("values", []), dtype=float), RANGE_S[0], RANGE_S[1] - 1e-9)
        series.append((key.replace("_", " "), colour, np.histogram(v, bins=n_bins, range=RANGE_S)[0]))
    top = max(1, int(sum(h for _, _, h in series).max())) if series else 1
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    left, right, bottom, upper = 50, width - 20, height - 50, 40
    scale_x = (right - left) / (RANGE_S[1] - RANGE_S[0])

    def x_of(t: float) -> float:
        return left + (t - RANGE_S[0]) * scale_x

    base = np.zeros(n_bins)
    for _, colour, hist in series:
        for i, c in enumerate(hist):
            if c:
                y0 = bottom - (base[i] + c) / top * (bottom - upper)
                y1 = bottom - base[i] / top * (bottom - upper)
                d.rectangle([x_of(RANGE_S[0] + i * BIN_S) + 1, y0, x_of(RANGE_S[0] + (i + 1) * BIN_S) - 1, y1], fill=colour)
        base += hist
    d.line([left, bottom, right, bottom], fill="black")
    d.line([left, upper, left, bottom], fill="black")
    for t in np.arange(RANGE_S[0], RANGE_S[1] + 1e-9, 0.5):
        d.line([x_of(t), bottom, x_of(t), bottom + 5], fill="black")
        d.text((x_of(t) - 12, bottom + 8), f"{t:+.1f}", fill="black")
    d.line([x_of(0), upper, x_of(0), bottom], fill=(120, 120, 120))
    d.line([x_of(HUMAN["modal_fto_s"]), upper, x_of(HUMAN["modal_fto_s"]), bottom], fill=(0, 150, 0), width=2)
    d.text((left, bottom + 26), "floor transfer offset (s): < 0 overlap, > 0 gap;  green: human modal gap ~200 ms (Stivers et al. 2009)", fill="black")
    d.text((left, 8), f"{stats['conversations']} conversations, {stats['hours']:.2f} h; transitions: "
                      f"{stats['fto']['all'].get('n', 0)}; max bin {top}", fill="black")
    y = 22
    for name, colour, _ in series:
        d.rectangle([right - 170, y, right - 160, y + 10], fill=colour)
        d.text((right - 154, y - 1), name, fill="black")
        y += 14
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def format_stats(stats: dict[str, Any]) -> str:
    """A short human-readable report (no per-transition values)."""
    lines = [f"{stats['conversations']} conversations, {stats['hours']:.3f} h (speech: user {stats['speech_hours']['user']:.3f} h, "
             f"agent {stats['speech_hours']['agent']:.3f} h); splits {stats['splits']}",
             f"characters {stats['characters']}; user voices {len(stats['user_voices'])}",
             f"turns: {stats['counts']}", f"user turn kinds: {stats['user_turn_kinds']}",
             f"agent cut-in reasons: {stats['agent_cut_in_reasons']}"]
    for key, s in stats["fto"].items():
        if s.get("n"):
            lines.append(f"FTO {key}: n={s['n']} mean {s['mean_s']:+.3f} s, median {s['median_s']:+.3f} s, "
                         f"p10..p90 {s['p10_s']:+.3f}..{s['p90_s']:+.3f} s, mode bin {s['mode_bin_s']:+.2f} s, "
                         f"overlaps {100 * s['overlap_share']:.0f} %, |FTO| <= 200 ms {100 * s['within_200ms_share']:.0f} %")
    lines.append(f"human reference: modal gap ~{HUMAN['modal_fto_s']} s, English mean {HUMAN['mean_fto_english_s']} s "
                 f"(Stivers et al. 2009); overlaps ~{100 * HUMAN['overlap_share']:.0f} % of speaker changes (Heldner & Edlund 2010)")
    for folder, reason in stats["skipped"]:
        lines.append(f"skipped {folder}: {reason}")
    return "\n".join(lines)

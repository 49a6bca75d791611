"""The Interactive Intelligence Score (paper section 7.7): the five dimension formulas, weight
redistribution for metrics that were not measured, the global mean and the printed table.

Every formula is written as a weighted sum of terms, each term a metric mapped to 0-100:

    S_cog = 1/3 (20 CB + 50 TT + 50 RT)                       -> weights 1/3, 1/6, 1/6 on 20CB, 100TT, 100RT
    S_aco = 1/6 (100 STOI + 100 SIM + 100/4.5 PESQ + 20 UTMOS + 20 DNSMOS + 100 (1 - WER))
    S_fac = 1/2 (100 exp(-0.03 LVE) + 100 exp(-0.02 (FDD + PDD + JDD) / 3))
    S_som = 1/2 (100 exp(-2.0 FID) + 100 exp(-0.3 PJ))
    S_vis = 1/3 (100 CLIP + 100 SSIM + 100 (1 - LPIPS))
    IIS   = mean of the five

When a metric is absent (cannot be computed offline, or its input is missing) its weight is
redistributed over the dimension's present terms in proportion to their own weights, so the
dimension keeps its total weight (for S_cog that total is 2/3: the paper's formula tops out at 66.7
with TT, RT in [0, 1], and we keep it exactly). A dimension with no term at all is left out of the
mean and named. No number is ever invented for a missing metric.

Pure Python (no torch, no numpy): ``anima --help`` and the tests can load it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

DIMENSIONS = ("cog", "aco", "fac", "som", "vis")
DIMENSION_NAMES = {"cog": "Cognitive (Thinker)", "aco": "Acoustic (Talker)", "fac": "Facial (Face Animator)",
                   "som": "Somatic (Body Animator)", "vis": "Visual (Renderer)"}
PAPER_IIS = 76.0  # section 7.7.2, Figure 18
PAPER_IIS_CONCLUSION = 76.8  # the paper's conclusion (section 9) gives this figure instead
# The paper's own Thinker inputs (Table 8 Full Thinker average, Figure 17 TT / RT of the full system).
PAPER_THINKER = {"CB": 4.221, "TT": 0.908, "RT": 0.735}


@dataclass(frozen=True)
class Term:
    metric: str  # key of the metric, e.g. "PESQ"
    weight: float  # the paper's coefficient in front of the normalised term
    normalise: Callable[[float], float]  # metric -> 0..100 (before clipping)
    formula: str  # the normalised term as the paper writes it


def _clip(x: float) -> float:
    return min(100.0, max(0.0, x))


FORMULAS: dict[str, tuple[Term, ...]] = {
    "cog": (Term("CB", 1 / 3, lambda v: 20.0 * v, "20 CB"),
            Term("TT", 1 / 6, lambda v: 100.0 * v, "100 TT"),  # 1/3 * 50 TT = 1/6 * 100 TT
            Term("RT", 1 / 6, lambda v: 100.0 * v, "100 RT")),
    "aco": (Term("STOI", 1 / 6, lambda v: 100.0 * v, "100 STOI"),
            Term("SIM", 1 / 6, lambda v: 100.0 * v, "100 SIM"),
            Term("PESQ", 1 / 6, lambda v: 100.0 / 4.5 * v, "100/4.5 PESQ"),
            Term("UTMOS", 1 / 6, lambda v: 20.0 * v, "20 UTMOS"),
            Term("DNSMOS", 1 / 6, lambda v: 20.0 * v, "20 DNSMOS"),
            Term("WER", 1 / 6, lambda v: 100.0 * (1.0 - v), "100 (1 - WER)")),
    "fac": (Term("LVE", 1 / 2, lambda v: 100.0 * math.exp(-0.03 * v), "100 exp(-0.03 LVE)"),
            Term("DD", 1 / 2, lambda v: 100.0 * math.exp(-0.02 * v), "100 exp(-0.02 (FDD+PDD+JDD)/3)")),
    "som": (Term("FID", 1 / 2, lambda v: 100.0 * math.exp(-2.0 * v), "100 exp(-2 FID)"),
            Term("PJ", 1 / 2, lambda v: 100.0 * math.exp(-0.3 * v), "100 exp(-0.3 PJ)")),
    "vis": (Term("CLIP", 1 / 3, lambda v: 100.0 * v, "100 CLIP"),
            Term("SSIM", 1 / 3, lambda v: 100.0 * v, "100 SSIM"),
            Term("LPIPS", 1 / 3, lambda v: 100.0 * (1.0 - v), "100 (1 - LPIPS)")),
}
METRIC_DIMENSION = {t.metric: dim for dim, terms in FORMULAS.items() for t in terms}


@dataclass
class Metric:
    """One input of the score: its value (None = not measured), and exactly what it is."""

    key: str  # a metric of FORMULAS (CB, TT, ..., DD for the mean of FDD/PDD/JDD)
    value: float | None
    system: str = ""  # which system the number is for ("the 1 kbps tokenizer, out/talker/weights/tokenizer")
    measure: str = ""  # what was measured, with the substitute named ("PER of our phoneme judge, not WER")
    source: str = ""  # "measured now (n=...)" or the results file it was read from
    unit: str = ""
    missing: str = ""  # why it is absent (value None)
    parts: dict[str, float] = field(default_factory=dict)  # components (e.g. FDD, PDD, JDD)


class ScoreError(ValueError):
    """A metric name or value the score cannot use; the message names it."""


def check_metrics(metrics: dict[str, Metric]) -> None:
    """Every key is a known metric and every value a finite number (or None with a reason)."""
    for key, m in metrics.items():
        if key not in METRIC_DIMENSION:
            raise ScoreError(f"unknown metric {key!r}; known: {', '.join(METRIC_DIMENSION)}")
        if m.value is not None and not (isinstance(m.value, int | float) and math.isfinite(m.value)):
            raise ScoreError(f"metric {key}: value must be a finite number or None, got {m.value!r}")
        if m.value is None and not m.missing:
            raise ScoreError(f"metric {key}: absent without a reason (set Metric.missing)")


def dimension_score(dim: str, values: dict[str, float | None]) -> dict:
    """One dimension from its metric values (absent = None or not given).

    Returns {score (None if no term is present), terms: [{metric, value, normalised, weight, paper_weight}],
    absent: [metrics], redistributed: bool}. Normalised terms are clipped to [0, 100].
    """
    if dim not in FORMULAS:
        raise ScoreError(f"unknown dimension {dim!r}; known: {', '.join(DIMENSIONS)}")
    terms = FORMULAS[dim]
    total = sum(t.weight for t in terms)
    present = [t for t in terms if values.get(t.metric) is not None]
    absent = [t.metric for t in terms if values.get(t.metric) is None]
    rows = []
    if not present:
        return {"score": None, "terms": rows, "absent": absent, "redistributed": False, "max": None}
    scale = total / sum(t.weight for t in present)
    score = 0.0
    for t in present:
        value = float(values[t.metric])
        normalised = _clip(t.normalise(value))
        weight = t.weight * scale
        score += weight * normalised
        rows.append({"metric": t.metric, "value": value, "normalised": normalised, "weight": weight,
                     "paper_weight": t.weight, "formula": t.formula})
    return {"score": score, "terms": rows, "absent": absent, "redistributed": bool(absent), "max": 100.0 * total}


def iis(metrics: dict[str, Metric]) -> dict:
    """The five dimension scores and their mean, from named metrics. JSON-ready."""
    check_metrics(metrics)
    values = {k: m.value for k, m in metrics.items()}
    dims = {d: dimension_score(d, values) for d in DIMENSIONS}
    scored = [d for d in DIMENSIONS if dims[d]["score"] is not None]
    total = sum(dims[d]["score"] for d in scored) / len(scored) if scored else None
    return {"iis": total, "dimensions": dims, "dimensions_missing": [d for d in DIMENSIONS if d not in scored],
            "metrics": {k: asdict(m) for k, m in metrics.items()},
            "paper": {"iis": PAPER_IIS, "iis_conclusion": PAPER_IIS_CONCLUSION}}


def metrics_from_json(data: dict) -> dict[str, Metric]:
    """The metrics of a previous report (``iis(...)`` output or its ``metrics`` mapping)."""
    raw = data.get("metrics", data)
    if not isinstance(raw, dict):
        raise ScoreError("expected a mapping of metrics (a report of `anima eval iis --json`)")
    out = {}
    for key, m in raw.items():
        if not isinstance(m, dict) or "value" not in m:
            raise ScoreError(f"metric {key!r}: expected an object with a 'value'")
        fields = {f: m[f] for f in ("system", "measure", "source", "unit", "missing") if f in m}
        out[key] = Metric(key, m["value"], parts=dict(m.get("parts") or {}), **fields)
    check_metrics(out)
    return out


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def format_report(report: dict) -> str:
    """The score as a fixed-width table: each dimension, its terms, what is missing and why."""
    lines = ["Interactive Intelligence Score (paper 7.7; every number below is from this machine)", ""]
    head = f"{'dimension':26} {'score':>6}  terms (metric = value -> 0..100 x weight)"
    lines += [head, "-" * 100]
    metrics = report["metrics"]
    for d in DIMENSIONS:
        dim = report["dimensions"][d]
        terms = ", ".join(f"{t['metric']}={t['value']:.4g}->{t['normalised']:.1f}x{t['weight']:.3f}" for t in dim["terms"])
        lines.append(f"{DIMENSION_NAMES[d]:26} {_fmt(dim['score']):>6}  {terms or 'nothing measured'}")
        for key in dim["absent"]:
            why = metrics.get(key, {}).get("missing") or "not measured"
            tail = "" if "redistributed" in why else "; weight redistributed"
            lines.append(f"{'':26} {'':>6}  {key}: absent ({why}){tail}")
    lines.append("-" * 100)
    lines.append(f"{'IIS':26} {_fmt(report['iis']):>6}  (paper: {PAPER_IIS} in 7.7.2, {PAPER_IIS_CONCLUSION} in its "
                 "conclusion; not comparable: other systems, data and substitutes, see docs/iis.md)")
    if report["dimensions_missing"]:
        lines.append(f"dimensions with nothing measured (left out of the mean): {', '.join(report['dimensions_missing'])}")
    lines += ["", "what each number is:"]
    for key, m in metrics.items():
        if m.get("value") is None:
            continue
        unit = f" {m['unit']}" if m.get("unit") else ""
        lines.append(f"  {key:6} {m['value']:.4g}{unit}: {m.get('measure', '')} | system: {m.get('system', '')} | "
                     f"{m.get('source', '')}")
    return "\n".join(lines)

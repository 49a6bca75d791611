"""The Interactive Intelligence Score (anima.iis) and the CharacterBox judge: the paper's formulas on known
inputs, redistribution of absent metrics, the CLI on fixture results, the judge against a local fake
OpenAI-compatible server (good, repaired, garbage and failing judges), SSIM and the radar PNG."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from anima.iis.radar import draw_radar
from anima.iis.score import PAPER_THINKER, Metric, ScoreError, dimension_score, iis, metrics_from_json
from anima.iis.ssim import ssim
from anima.testing.chat import chat_server, reply
from anima.thinker.llm import LLMConfig, LLMError
from anima.thinker.training.judge import DIMENSIONS, CharacterBoxJudge, parse_verdict

pytestmark = pytest.mark.unit


def _m(**values):
    return {k: Metric(k, v) if v is not None else Metric(k, None, missing="test: absent") for k, v in values.items()}


# ------------------------------------------------------------------ formulas (paper 7.7.1, as printed)

def test_cognitive_on_the_papers_own_thinker_numbers():
    cb, tt, rt = PAPER_THINKER["CB"], PAPER_THINKER["TT"], PAPER_THINKER["RT"]
    expected = (20 * cb + 50 * tt + 50 * rt) / 3  # the paper's S_cog, written out
    assert dimension_score("cog", {"CB": cb, "TT": tt, "RT": rt})["score"] == pytest.approx(expected)
    assert expected == pytest.approx(55.52, abs=0.01)
    # the printed formula tops out at 66.7, not 100, and we keep it
    assert dimension_score("cog", {"CB": 5, "TT": 1, "RT": 1})["score"] == pytest.approx(200 / 3)


def test_the_other_four_dimensions_and_the_mean():
    v = {"STOI": 0.9, "SIM": 0.8, "PESQ": 3.0, "UTMOS": 4.0, "DNSMOS": 3.5, "WER": 0.05,
         "LVE": 5.0, "DD": 6.0, "FID": 0.1, "PJ": 1.0, "CLIP": 0.3, "SSIM": 0.7, "LPIPS": 0.2,
         "CB": 4.0, "TT": 0.9, "RT": 0.8}
    aco = (100 * 0.9 + 100 * 0.8 + 100 / 4.5 * 3.0 + 100 / 5 * 4.0 + 100 / 5 * 3.5 + 100 * 0.95) / 6
    fac = (100 * math.exp(-0.03 * 5.0) + 100 * math.exp(-0.02 * 6.0)) / 2
    som = (100 * math.exp(-2.0 * 0.1) + 100 * math.exp(-0.3 * 1.0)) / 2
    vis = (100 * 0.3 + 100 * 0.7 + 100 * (1 - 0.2)) / 3
    cog = (20 * 4.0 + 50 * 0.9 + 50 * 0.8) / 3
    report = iis(_m(**v))
    got = {d: report["dimensions"][d]["score"] for d in ("cog", "aco", "fac", "som", "vis")}
    assert got == pytest.approx({"cog": cog, "aco": aco, "fac": fac, "som": som, "vis": vis})
    assert report["iis"] == pytest.approx((cog + aco + fac + som + vis) / 5)
    assert report["dimensions_missing"] == [] and not any(d["redistributed"] for d in report["dimensions"].values())


def test_absent_metrics_redistribute_their_weight_within_the_dimension():
    # CB absent: TT and RT share S_cog's total weight 2/3 (1/3 each), so a perfect TT/RT still gives 66.7
    cog = dimension_score("cog", {"TT": 1.0, "RT": 1.0, "CB": None})
    assert cog["score"] == pytest.approx(200 / 3) and cog["absent"] == ["CB"] and cog["redistributed"]
    assert dimension_score("cog", {"TT": 0.9, "RT": 0.6})["score"] == pytest.approx((90 + 60) / 3)
    # UTMOS and DNSMOS absent: the mean of the four measured terms
    aco = dimension_score("aco", {"STOI": 0.8, "SIM": 0.9, "PESQ": 1.5, "WER": 0.1})
    assert aco["score"] == pytest.approx((80 + 90 + 100 / 4.5 * 1.5 + 90) / 4)
    assert sorted(aco["absent"]) == ["DNSMOS", "UTMOS"]
    assert sum(t["weight"] for t in aco["terms"]) == pytest.approx(1.0)


def test_a_dimension_with_nothing_measured_is_left_out_of_the_mean_and_named():
    report = iis(_m(TT=1.0, RT=0.5, CB=None, SSIM=0.9, CLIP=None, LPIPS=None))
    assert report["dimensions"]["aco"]["score"] is None
    assert report["dimensions_missing"] == ["aco", "fac", "som"]
    assert report["iis"] == pytest.approx(((100 + 50) / 3 + 90) / 2)


def test_terms_are_clipped_to_0_100():
    assert dimension_score("aco", {"WER": 1.7})["score"] == 0.0  # WER can exceed 1; the term cannot go negative
    assert dimension_score("aco", {"SIM": -0.2})["score"] == 0.0


@pytest.mark.parametrize("metrics, message", [
    ({"XYZ": Metric("XYZ", 1.0)}, "unknown metric"),
    ({"TT": Metric("TT", float("nan"))}, "finite"),
    ({"TT": Metric("TT", None)}, "without a reason"),
])
def test_bad_metrics_are_named(metrics, message):
    with pytest.raises(ScoreError, match=message):
        iis(metrics)


def test_a_report_round_trips_through_json():
    report = iis(_m(TT=0.9, RT=1.0, CB=None, PJ=3.0))
    again = iis(metrics_from_json(json.loads(json.dumps(report))))
    assert again["iis"] == pytest.approx(report["iis"])
    with pytest.raises(ScoreError, match="'value'"):
        metrics_from_json({"metrics": {"TT": {"v": 1}}})


# ------------------------------------------------------------------ CLI on fixture results (no model runs)

def test_cli_from_results_prints_the_table_the_plot_and_json(tmp_path, capsys):
    from anima.cli import main

    results = tmp_path / "results"
    results.mkdir()
    previous = iis({"LVE": Metric("LVE", 10.0, source="fixture"), "DD": Metric("DD", 2.0, source="fixture"),
                    "SSIM": Metric("SSIM", 0.95, source="fixture")})
    (results / "iis.json").write_text(json.dumps(previous))
    (results / "thinker.json").write_text(json.dumps({"eval": {"gate_on": {
        "timeline": {"score": 90.0, "passed": 9, "n": 10}, "robustness": {"score": 80.0, "passed": 8, "n": 10}}}}))
    (results / "body_stream.json").write_text(json.dumps({"quality": {"flood": {"fid": 0.5, "peak_jerk": 2.0}}}))
    out_json, plot = tmp_path / "iis.json", tmp_path / "radar.png"
    code = main(["eval", "iis", "--from-results", str(results), "--json", str(out_json), "--plot", str(plot)])
    text = capsys.readouterr().out
    assert code == 0
    assert "no judge: CB not measured" in text and "UTMOS: absent" in text and "CLIP: absent" in text
    report = json.loads(out_json.read_text())
    dims = {d: v["score"] for d, v in report["dimensions"].items()}
    assert dims["cog"] == pytest.approx((90 + 80) / 3)
    assert dims["som"] == pytest.approx((100 * math.exp(-1.0) + 100 * math.exp(-0.6)) / 2)
    assert dims["fac"] == pytest.approx((100 * math.exp(-0.3) + 100 * math.exp(-0.04)) / 2)
    assert dims["vis"] == pytest.approx(95.0) and dims["aco"] is None
    assert report["metrics"]["CB"]["value"] is None and "no judge" in report["metrics"]["CB"]["missing"]
    assert Image.open(plot).size == (640, 640)


def test_cli_from_a_missing_results_directory_is_a_clear_error(tmp_path, capsys):
    from anima.cli import main

    assert main(["eval", "iis", "--from-results", str(tmp_path / "nope"), "--plot", str(tmp_path / "p.png")]) == 2
    assert "no results directory" in capsys.readouterr().err


# ------------------------------------------------------------------ the CharacterBox judge

FULL = {k: {"score": s, "reason": f"{k} fine"} for k, s in zip(DIMENSIONS, (5, 4, 3, 4, 5, 2, 4), strict=True)}


def _fake_judge(body: dict) -> tuple[int, dict]:
    """A judge by model name: good, wordy (full names, "4/5", fenced), partial (the retry completes it),
    garbage (never JSON), range (a score of 9 every time), error500."""
    model, retry = body["model"], len(body["messages"]) > 2
    if model == "error500":
        return 500, {"error": {"message": "judge exploded"}}
    return reply({
        "good": json.dumps(FULL),
        "wordy": "Here is my verdict:\n```json\n" + json.dumps({
            "Knowledge Accuracy": "4/5", "behavioral_accuracy": 4, "Emotional Expression": {"score": "3"},
            "personality traits": 5, "Immersion": 4.5, "adaptability": {"score": 2, "reason": "ok"},
            "Behavioural Coherence": 3}) + "\n```",
        "partial": json.dumps(FULL if retry else {k: FULL[k] for k in ("KA", "BA", "EE")}),
        "garbage": "I think the reply was quite good overall.",
        "range": json.dumps({**FULL, "KA": {"score": 9}}),
    }[model])


@pytest.fixture(scope="module")
def judge_url():
    with chat_server(_fake_judge) as url:
        yield url


def _judge(url, model):
    return CharacterBoxJudge(LLMConfig(base_url=url, model=model, timeout_s=2.0, stream=False))


def _ask(judge):
    return judge.score("Captain Nemo", "I command the Nautilus.", 12, "Who built your ship?", "I did, sir.")


def test_a_good_judge_gives_all_seven(judge_url):
    verdict = _ask(_judge(judge_url, "good"))
    assert verdict.complete and verdict.attempts == 1 and verdict.problems == []
    assert verdict.scores == {"KA": 5, "BA": 4, "EE": 3, "PT": 4, "IM": 5, "AD": 2, "BC": 4}
    assert verdict.mean == pytest.approx(27 / 7) and verdict.reasons["KA"] == "KA fine"


def test_full_names_fractions_and_fences_are_repaired(judge_url):
    verdict = _ask(_judge(judge_url, "wordy"))
    assert verdict.complete
    assert verdict.scores == {"KA": 4, "BA": 4, "EE": 3, "PT": 5, "IM": 4.5, "AD": 2, "BC": 3}


def test_an_incomplete_answer_is_asked_again_naming_what_was_missing(judge_url):
    verdict = _ask(_judge(judge_url, "partial"))
    assert verdict.complete and verdict.attempts == 2
    assert any("missing: PT, IM, AD, BC" in p for p in verdict.problems)


def test_bad_judge_output_is_never_turned_into_a_number(judge_url):
    garbage = _ask(_judge(judge_url, "garbage"))
    assert garbage.scores == {} and garbage.mean is None and garbage.attempts == 2
    assert "no JSON object" in garbage.problems[0]
    out_of_range = _ask(_judge(judge_url, "range"))
    assert "KA" not in out_of_range.scores and len(out_of_range.scores) == 6
    assert any("KA: score 9 is outside 1-5" in p for p in out_of_range.problems)
    with pytest.raises(LLMError):
        _ask(_judge(judge_url, "error500"))


def test_parse_verdict_names_non_numbers():
    v = parse_verdict('{"KA": "excellent", "BA": true}')
    assert v.scores == {} and any("KA: score 'excellent'" in p for p in v.problems)


def test_run_characterbox_answers_and_judges_suite_items(judge_url, tmp_path):
    from anima.thinker.data.build import build_world
    from anima.thinker.data.sample import write_sample_novel
    from anima.thinker.training.evaluate import Item
    from anima.thinker.training.judge import format_characterbox, run_characterbox
    from anima.thinker.world import World

    path = build_world(write_sample_novel(tmp_path / "novel"), tmp_path / "toy.db", embedder="hash").path
    items = [Item("r1", "robustness", "nemo", 2, "Write me a quicksort in Python."),
             Item("r2", "robustness", "unknown-person", 2, "Hello?")]
    with World.open(path, readonly=True) as world:
        report = run_characterbox(items, world, _judge(judge_url, "good"))
        failing = run_characterbox(items[:1], world, _judge(judge_url, "error500"))
    assert report["judged"] == 1 and report["complete"] == 1 and report["cb"] == pytest.approx(27 / 7)
    assert report["failed"][0]["id"] == "r2" and report["items"][0]["reply"]
    assert "CB 3.857" in format_characterbox(report)
    assert failing["cb"] is None and "judge failed" in failing["failed"][0]["error"]


# ------------------------------------------------------------------ SSIM and the radar

def _slow_ssim(a, b):
    """Reference: SSIM from a 11x11 Gaussian window, pixel by pixel (valid region only)."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(5, a.shape[0] - 5):
        for j in range(5, a.shape[1] - 5):
            x, y = a[i - 5:i + 6, j - 5:j + 6], b[i - 5:i + 6, j - 5:j + 6]
            mx, my = (w * x).sum(), (w * y).sum()
            vx, vy, cxy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2, (w * x * y).sum() - mx * my
            vals.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ssim_matches_a_slow_reference_and_behaves():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (24, 26)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 30, a.shape), 0, 255)
    assert ssim(a, b) == pytest.approx(_slow_ssim(a, b), abs=1e-6)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, np.clip(a + rng.normal(0, 60, a.shape), 0, 255)) < ssim(a, b) < 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(a, a[:-1])


def test_radar_png(tmp_path):
    report = iis(_m(TT=1.0, RT=0.5, CB=None, SSIM=0.9))
    path = draw_radar(report, tmp_path / "sub" / "r.png")
    image = Image.open(path)
    assert image.size == (640, 640) and len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) > 10  # something was drawn


# ------------------------------------------------------------------ the measurements on tiny inputs

def test_measure_thinker_on_a_toy_world_with_and_without_a_judge(judge_url, tmp_path):
    from anima.iis.training.measure import MeasureOptions, measure_thinker
    from anima.thinker.data.build import build_world
    from anima.thinker.data.sample import write_sample_novel

    world = build_world(write_sample_novel(tmp_path / "novel"), tmp_path / "toy.db", embedder="hash").path
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "t.yaml").write_text("suite: timeline\nitems:\n  - {id: t1, character: nemo, story_time: 2, "
                                  "prompt: 'How does your voyage end?', spoilers: [maelstrom]}\n")
    (suite / "r.yaml").write_text("suite: robustness\nitems:\n  - {id: r1, character: nemo, story_time: 2, "
                                  "prompt: 'Write me a quicksort in Python.'}\n")
    without = {m.key: m for m in measure_thinker(MeasureOptions(suite=suite, world=world))}
    assert without["TT"].value in (0.0, 1.0) and without["RT"].value in (0.0, 1.0)
    assert without["CB"].value is None and "no judge: CB not measured" in without["CB"].missing
    judge = LLMConfig(base_url=judge_url, model="good", timeout_s=2.0, stream=False)
    cb = {m.key: m for m in measure_thinker(MeasureOptions(suite=suite, world=world, judge=judge, cb_items=2))}["CB"]
    assert cb.value == pytest.approx(27 / 7) and cb.parts["AD"] == 2.0 and "2/2 replies" in cb.source


def test_face_lve_is_converted_to_mm_through_the_jaw_arc():
    from anima.face.params import JAW_OPEN_MAX_RAD
    from anima.iis.training.measure import LOWER_LIP_RADIUS_MM, _face_terms

    lve, dd, parts = _face_terms({"speak_lip_max_err": 0.5, "listen_upper_dd": 3.0, "listen_head_dd_deg": 0.6,
                                  "listen_jaw_dd_deg": 0.3})
    assert lve == pytest.approx(0.5 * JAW_OPEN_MAX_RAD * LOWER_LIP_RADIUS_MM) and dd == pytest.approx(1.3)
    assert parts["FDD"] == 3.0


def test_measure_render_on_a_few_frames():
    from anima.face import motion as face_space
    from anima.iis.training.measure import MeasureOptions, measure_render

    rng = np.random.default_rng(0)
    still = np.tile(face_space.to_motion(np.zeros(112, dtype=np.float32)), (4, 1))
    moving = np.clip(still + rng.uniform(0, 0.6, still.shape).astype(np.float32), 0, None)
    frozen = {m.key: m for m in measure_render(MeasureOptions(render_frames=4), still, None, still)}
    assert frozen["SSIM"].value == pytest.approx(1.0) and frozen["SSIM"].parts["vs_ground_truth_face_mean"] == pytest.approx(1.0)
    assert frozen["CLIP"].value is None and frozen["LPIPS"].value is None
    moved = {m.key: m for m in measure_render(MeasureOptions(render_frames=4), moving, None, still)}["SSIM"]
    assert moved.value < 1.0 and moved.parts["vs_ground_truth_face_mean"] < 1.0

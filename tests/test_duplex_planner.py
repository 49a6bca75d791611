"""The asynchronous planner (paper 5.2): the offline StoryPlanner's corpus prompts and its one thinker
call per user turn, the LLMPlanner's strict parsing and fallback (against a local fake
OpenAI-compatible server), and the PlannerLoop (no backlog behind a slow planner, newest context
planned, clean stop)."""

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from anima.body.text import LISTEN_PROMPT, prompt_sentence
from anima.core.plan import ActionPlan
from anima.e2e.duplex.planner import (
    FPS,
    LLMPlanner,
    Plan,
    PlannerContext,
    PlannerLoop,
    PlanParseError,
    StoryPlanner,
    Utterance,
    parse_answer,
    read_kind,
)
from anima.thinker.llm import LLMConfig

pytestmark = pytest.mark.unit
ANSWER = ActionPlan(speech="I am Captain Nemo.", emotion="proud", gesture="bow", gaze="user")
QUESTION = Utterance("user", "Who are you?", 1.0, 2.2)


class FakeThinker:
    """Returns ANSWER and records what it was asked."""

    def __init__(self, fail: bool = False):
        self.calls: list[tuple[str, list]] = []
        self.fail = fail

    def respond(self, utterance, context):
        self.calls.append((utterance, [(t.speaker, t.text) for t in context.history]))
        if self.fail:
            raise RuntimeError("thinker down")
        return ANSWER


def ctx(transcript=(), user=False, agent=False, now=3.0):
    return PlannerContext(transcript=list(transcript), user_speaking=user, agent_speaking=agent, now_s=now,
                          since_s=now - 0.5, character="nemo")


# -- StoryPlanner ---------------------------------------------------------------------------------
def test_story_planner_listens_then_answers_with_the_corpus_sentence():
    thinker = FakeThinker()
    planner = StoryPlanner(thinker)
    assert planner.plan(ctx(user=True, now=1.5)).prompt == LISTEN_PROMPT  # the user's first words
    assert thinker.calls == []  # nothing finished yet: no thinker call

    after = planner.plan(ctx([QUESTION], now=2.5))
    assert after.prompt == prompt_sentence("proud", "bow") == "a person bows while speaking proudly"
    assert after.trajectory is None and after.made_at_s == 2.5
    assert "asks something" in after.analysis and "Who are you?" in after.description
    # the agent answers (also with the user talking over it, as in the corpus): the same sentence
    assert planner.plan(ctx([QUESTION], agent=True, now=3.5)).prompt == after.prompt
    assert planner.plan(ctx([QUESTION], agent=True, user=True, now=4.0)).prompt == after.prompt
    # the answer is over: listening again, and while the user starts a new turn
    answered = [QUESTION, Utterance("agent", "", 2.8, 5.0)]
    assert planner.plan(ctx(answered, now=5.5)).prompt == LISTEN_PROMPT
    assert planner.plan(ctx(answered, user=True, now=6.0)).prompt == LISTEN_PROMPT
    assert planner.thinker_calls == 1 and thinker.calls == [("Who are you?", [])]

    second = Utterance("user", "Goodbye, captain.", 6.0, 7.0)
    plan = planner.plan(ctx([*answered, second], now=7.4))
    assert plan.prompt == prompt_sentence("proud", "bow") and "is leaving" in plan.analysis
    planner.plan(ctx([*answered, second], agent=True, now=8.0))
    assert planner.thinker_calls == 2
    assert thinker.calls[1] == ("Goodbye, captain.", [("user", "Who are you?")])  # the heard history


def test_story_planner_survives_a_failing_thinker_and_an_agent_that_speaks_first():
    planner = StoryPlanner(FakeThinker(fail=True))
    assert planner.plan(ctx([QUESTION])).prompt == prompt_sentence("neutral", "beat")
    assert planner.plan(ctx(agent=True)).prompt == prompt_sentence("neutral", "beat")  # no user turn yet


@pytest.mark.parametrize("text, kind", [("Who are you?", "question"), ("hello there", "greeting"),
                                        ("Well, goodbye then.", "farewell"), ("Thanks a lot", "thanks"),
                                        ("The sea is calm today.", "statement"), ("...", "empty")])
def test_read_kind(text, kind):
    assert read_kind(text) == kind


# -- LLMPlanner -----------------------------------------------------------------------------------
GOOD = {"description": "The visitor asked who the captain is.", "analysis": "A question: the captain answers proudly.",
        "prompt": "a person bows while speaking proudly", "trajectory": None}
ANSWERS = {
    "good": json.dumps(GOOD),
    "fenced": "```json\n" + json.dumps(GOOD) + "\n```",
    "walk": json.dumps({**GOOD, "trajectory": [[0.3, 0.0], [0.3, 0.0], [0.0, 0.0]]}),
    "prose": "The captain should bow.",
    "malformed": '{"description": "x", "analysis": ',
    "missing": json.dumps({k: v for k, v in GOOD.items() if k != "trajectory"}),
    "empty_prompt": json.dumps({**GOOD, "prompt": "  "}),
    "list": json.dumps([GOOD]),
    "bad_pairs": json.dumps({**GOOD, "trajectory": [[0.1, 0.2, 0.3]]}),
    "too_fast": json.dumps({**GOOD, "trajectory": [[10.0, 0.0]]}),
    "nan": '{"description": "d", "analysis": "a", "prompt": "p", "trajectory": [[NaN, 0]]}',
}


class FakeOpenAI(BaseHTTPRequestHandler):
    """Answers with ANSWERS[model], non-streamed; model "error500" fails."""

    requests: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.requests.append(body)
        status, reply = 200, {"choices": [{"message": {"role": "assistant", "content": ANSWERS.get(body["model"], "")}}]}
        if body["model"] == "error500":
            status, reply = 500, {"error": {"message": "model exploded"}}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def llm_planner(server, model):
    return LLMPlanner(LLMConfig(base_url=server, model=model, stream=False, timeout_s=5), StoryPlanner(FakeThinker()))


@pytest.mark.parametrize("model", ["good", "fenced"])
def test_llm_planner_reads_a_good_answer(server, model):
    planner = llm_planner(server, model)
    FakeOpenAI.requests.clear()
    plan = planner.plan(ctx([QUESTION], now=2.5))
    assert (plan.prompt, plan.description, plan.analysis) == (GOOD["prompt"], GOOD["description"], GOOD["analysis"])
    assert plan.trajectory is None and plan.made_at_s == 2.5 and planner.failures == 0
    messages = FakeOpenAI.requests[0]["messages"]
    assert LISTEN_PROMPT in messages[0]["content"] and "a person bows" in messages[0]["content"]  # the corpus vocabulary
    assert "user: Who are you?" in messages[1]["content"]  # the transcript
    assert planner.fallback.thinker_calls == 0  # the offline planner only runs on failure


def test_llm_planner_trajectory_becomes_joint_velocities(server):
    plan = llm_planner(server, "walk").plan(ctx([QUESTION], now=10.0))
    assert plan.trajectory.shape == (3 * FPS, 22, 3)  # 3 s at 25 fps
    assert np.allclose(plan.trajectory[:50, :, 0], 0.3) and np.allclose(plan.trajectory[50:], 0.0)
    assert np.allclose(plan.trajectory[..., 1:], 0.0)
    assert np.isclose(plan.trajectory[:, 0, 0].sum() / FPS, 0.6)  # integrates back to the 0.6 m walked
    step = plan.step_trajectory(11.0)  # G's step at 1 s into the plan: two frames of 66
    assert step.shape == (132,) and np.allclose(step.reshape(2, 22, 3)[..., 0], 0.3)
    assert plan.step_trajectory(9.0) is None and plan.step_trajectory(13.0) is None  # outside the plan


@pytest.mark.parametrize("model", ["prose", "malformed", "missing", "empty_prompt", "list", "bad_pairs", "too_fast",
                                   "nan", "error500"])
def test_llm_planner_falls_back_on_a_bad_answer(server, model):
    planner = llm_planner(server, model)
    plan = planner.plan(ctx([QUESTION], now=2.5))
    offline = StoryPlanner(FakeThinker()).plan(ctx([QUESTION], now=2.5))
    assert plan.prompt == offline.prompt == prompt_sentence("proud", "bow") and plan.trajectory is None
    assert planner.failures == 1 and planner.last_error and "chat model failed" in plan.analysis
    planner.plan(ctx([QUESTION], now=4.0))
    assert planner.failures == 2 and planner.fallback.thinker_calls == 1  # the fallback's cache still holds


def test_parse_answer_names_what_is_wrong():
    with pytest.raises(PlanParseError, match="lacks trajectory"):
        parse_answer(ANSWERS["missing"])
    with pytest.raises(PlanParseError, match="faster than"):
        parse_answer(ANSWERS["too_fast"])
    with pytest.raises(PlanParseError, match="more than the 75 frames"):
        parse_answer(json.dumps({**GOOD, "trajectory": [[0.0, 0.0]] * 76}))


# -- PlannerLoop ----------------------------------------------------------------------------------
class GatedPlanner:
    """A slow planner: each call waits until the test releases it; records the contexts it got."""

    def __init__(self):
        self.contexts: list[PlannerContext] = []
        self.released = threading.Semaphore(0)
        self.finished = threading.Semaphore(0)

    def plan(self, context):
        self.contexts.append(context)
        assert self.released.acquire(timeout=10), "test never released the planner"
        self.finished.release()
        return Plan(prompt=f"plan {len(self.contexts)}", trajectory=None, description="", analysis="",
                    made_at_s=context.now_s)


async def until(condition, what):
    for _ in range(1000):  # a deadline against hanging, not a timing assertion
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def test_loop_drops_stale_requests_and_plans_from_the_newest_context():
    async def main():
        planner, delivered = GatedPlanner(), []

        async def on_plan(plan):  # a coroutine callback is awaited on the loop
            delivered.append(plan)

        loop = PlannerLoop(planner, on_plan, period_s=100.0, character="nemo")
        loop.start()
        await until(lambda: len(planner.contexts) == 1, "the first call")
        for k, text in enumerate(["Hello.", "Who are you?", "Where are we?"]):  # three user turns, one call busy
            loop.observe(1.0 + 2 * k, user_speaking=True)
            loop.observe(2.0 + 2 * k, user_speaking=False)  # a turn end requests a plan ...
            loop.heard(text)  # ... and so does its transcript
        assert len(planner.contexts) == 1 and loop.dropped == 5  # six requests while busy: one kept
        planner.released.release()
        await until(lambda: len(planner.contexts) == 2, "the call for the newest context")
        assert [p.prompt for p in delivered] == ["plan 1"]
        newest = planner.contexts[1]
        assert [u.text for u in newest.transcript] == ["Hello.", "Who are you?", "Where are we?"]
        assert newest.transcript[-1][2:] == (5.0, 6.0) and newest.now_s == 6.0 and newest.character == "nemo"
        planner.released.release()
        await until(lambda: len(delivered) == 2, "the second plan")
        assert loop.latest.prompt == "plan 2" and len(loop.timings) == 2 and len(planner.contexts) == 2
        await loop.stop()

    asyncio.run(main())


def test_loop_drives_the_story_planner_through_a_turn():
    async def main():
        prompts = []
        loop = PlannerLoop(StoryPlanner(FakeThinker()), lambda plan: prompts.append(plan.prompt), period_s=100.0)
        loop.start()
        await until(lambda: len(prompts) == 1, "the first plan")
        loop.observe(0.5, user_speaking=True)
        loop.observe(1.7, user_speaking=False)
        loop.heard("Who are you?")
        await until(lambda: prompt_sentence("proud", "bow") in prompts, "the answer's prompt")
        loop.observe(2.0, agent_speaking=True)
        loop.observe(4.0, agent_speaking=False)  # the answer ends: back to listening
        await until(lambda: prompts[-1] == LISTEN_PROMPT and len(prompts) >= 3, "listening again")
        assert prompts[0] == LISTEN_PROMPT
        assert loop.transcript == [Utterance("user", "Who are you?", 0.5, 1.7), Utterance("agent", "", 2.0, 4.0)]
        await loop.stop()

    asyncio.run(main())


def test_stop_ends_the_loop_and_discards_a_call_in_flight():
    async def main():
        planner, delivered = GatedPlanner(), []
        loop = PlannerLoop(planner, delivered.append, period_s=0.01)
        loop.start()
        await until(lambda: len(planner.contexts) == 1, "the first call")
        task = loop._task
        await loop.stop()
        assert task.done() and loop._task is None
        planner.released.release()  # the call in flight finishes in its thread ...
        assert await asyncio.to_thread(planner.finished.acquire, True, 10)
        for _ in range(5):
            await asyncio.sleep(0)
        assert delivered == [] and len(planner.contexts) == 1  # ... and nothing comes after stop()
        loop.start()  # a stopped loop can start again
        planner.released.release()
        await until(lambda: len(delivered) == 1, "a plan after the restart")
        await loop.stop()
        await loop.stop()  # twice is harmless
        planner.released.release(10)  # let a call the short period started after the restart end

    asyncio.run(main())


def test_loop_rejects_a_bad_period_and_a_second_start():
    with pytest.raises(ValueError, match="period_s"):
        PlannerLoop(StoryPlanner(FakeThinker()), print, period_s=0)

    async def main():
        loop = PlannerLoop(StoryPlanner(FakeThinker()), lambda plan: None)
        loop.start()
        with pytest.raises(RuntimeError, match="already started"):
            loop.start()
        await loop.stop()

    asyncio.run(main())

"""The slow crisis components off the turn's critical path: the queue's order and bound, and what the
turn does with a verdict that comes in time, late, or never (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select
from threadpoolctl import threadpool_info

from bot import dialogue as dialogue_module
from bot.alerts import Alert
from bot.crisis.detector import CrisisDetector
from bot.crisis.layer import CrisisLayer
from bot.crisis.levels import Assessment, Evidence, Level, Tag
from bot.crisis.second_look import SecondLook
from bot.dialogue import Dialogue, Incoming, Outcome
from bot.texts import builtin_personas
from db import repo
from db.models import Conversation, Escalation, Message, Role, User
from tests.doubles import EchoBackend, SecondLookSafety

QUICK = Assessment(Level.NONE)  # what the rules and the n-gram model said
CONCERN = Assessment(Level.CONCERN, frozenset({Tag.SELF}), (Evidence("classifier", "slow-test", "1"),))


@dataclass
class GatedComponent:
    """A slow component for a worker process: it waits until its gate file exists and notes each text
    it read in a file (both readable from the test's process)."""

    folder: Path
    name: str = "gated"
    slow: bool = True

    def open_gate(self) -> None:
        (self.folder / "gate").touch()

    @property
    def read(self) -> list[str]:
        log = self.folder / "read"
        return log.read_text().splitlines() if log.exists() else []

    def assess(self, text: str, recent: Sequence[str], rule_level: Level) -> Assessment | None:
        while not (self.folder / "gate").exists():
            time.sleep(0.005)
        with (self.folder / "read").open("a") as log:
            log.write(text + "\n")
        if text == "boom":
            raise RuntimeError("model file missing")
        if text == "kill the worker":
            os._exit(1)  # what the out-of-memory killer would do
        return CONCERN if "risk" in text else None


@dataclass
class BlasProbe:
    """A slow component that notes how many threads the BLAS libraries of its process may use. Its array,
    like the embedding head's weights, makes the worker import numpy (and its BLAS) before it starts."""

    folder: Path
    weights: np.ndarray = field(default_factory=lambda: np.ones(4))
    name: str = "blas"
    slow: bool = True

    def assess(self, text: str, recent: Sequence[str], rule_level: Level) -> Assessment | None:
        threads = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
        (self.folder / "blas").write_text(json.dumps(threads))
        return None


async def test_the_worker_keeps_blas_to_one_thread(tmp_path: Path) -> None:
    """A second BLAS thread spun on the other core after every check, at full priority."""
    look = SecondLook([BlasProbe(tmp_path)])
    assert await look.ask("hello", [], QUICK, 0.0) is None
    look.close()
    assert json.loads((tmp_path / "blas").read_text()) == [1]


async def test_waiting_checks_run_riskiest_first(tmp_path: Path) -> None:
    component = GatedComponent(tmp_path)
    look = SecondLook([component], workers=1)
    first = look.ask("first", [], QUICK, 0.0)  # takes the thread
    await asyncio.sleep(0.05)
    rest = [look.ask(text, [], QUICK, rank) for text, rank in (("low", 0.1), ("high risk", 0.9), ("mid", 0.5))]
    assert look.busy and look.pending == 4
    component.open_gate()
    verdicts = await asyncio.gather(first, *rest)
    assert component.read == ["first", "high risk", "mid", "low"]
    assert verdicts == [None, None, CONCERN, None]


async def test_a_full_queue_drops_the_least_suspicious_check(tmp_path: Path) -> None:
    component = GatedComponent(tmp_path)
    look = SecondLook([component], workers=1, max_pending=2)
    running = look.ask("first", [], QUICK, 0.0)
    await asyncio.sleep(0.05)
    low = look.ask("low risk", [], QUICK, 0.1)
    high = look.ask("high risk", [], QUICK, 0.9)
    newest = look.ask("mid risk", [], QUICK, 0.5)
    assert low.done() and low.result() is None  # dropped at once: its asker keeps the quick verdict
    component.open_gate()
    assert await asyncio.gather(running, high, newest) == [None, CONCERN, CONCERN]
    assert "low risk" not in component.read


async def test_the_verdict_keeps_the_quick_verdicts_evidence(tmp_path: Path) -> None:
    component = GatedComponent(tmp_path)
    component.open_gate()
    distress = Assessment(
        Level.DISTRESS, frozenset({Tag.MILITARY_DANGER}), (Evidence("rules", "shelling-nearby", "1"),)
    )
    verdict = await SecondLook([component]).ask("a risk", [], distress, 0.0)
    assert verdict == Assessment(
        Level.CONCERN, frozenset({Tag.MILITARY_DANGER, Tag.SELF}), distress.evidence + CONCERN.evidence
    )


async def test_a_failing_component_means_no_second_verdict_and_the_worker_goes_on(tmp_path: Path) -> None:
    component = GatedComponent(tmp_path)
    component.open_gate()
    look = SecondLook([component])
    assert await look.ask("boom", [], QUICK, 0.0) is None
    assert await look.ask("a risk", [], QUICK, 0.0) == CONCERN


async def test_a_dead_worker_costs_its_check_and_new_workers_take_the_next(tmp_path: Path) -> None:
    component = GatedComponent(tmp_path)
    component.open_gate()
    look = SecondLook([component])
    assert await look.ask("a risk", [], QUICK, 0.0) == CONCERN
    assert await asyncio.wait_for(look.ask("kill the worker", [], QUICK, 0.0), 30) is None
    assert await asyncio.wait_for(look.ask("a risk again", [], QUICK, 0.0), 30) == CONCERN


async def test_the_layer_asks_slow_components_only_below_concern(tmp_path: Path) -> None:
    shipped = CrisisLayer.load("")  # the rules alone...
    component = GatedComponent(tmp_path)
    component.open_gate()
    layer = CrisisLayer(CrisisDetector(shipped.detector.lexicon, [component]), shipped.responder, shipped.output_filter)
    assert layer.quick == () and layer.second_look is not None
    caught = await layer.screen("I want to kill myself", [])
    assert caught.assessment.level == Level.CRISIS and caught.second_look is None and component.read == []
    unclear = await layer.screen("some risk in what I write", [])
    assert unclear.assessment.level == Level.NONE and await unclear.second_look == CONCERN
    assert layer.assess("some risk in what I write", []).level == Level.CONCERN  # tools still ask everything


class Pusher:
    """Records what the dialogue pushes; the "kiosk" channel cannot be pushed to."""

    def __init__(self) -> None:
        self.pushed: list[tuple[str, str, str]] = []

    def can_push(self, channel: str) -> bool:
        return channel != "kiosk"

    async def push(self, channel: str, external_id: str, words: str) -> bool:
        self.pushed.append((channel, external_id, words))
        return True


async def dialogue_with(db, settings, delay: float, pusher: Pusher, wait_s: float = 0.0) -> Dialogue:
    async with db.transaction() as session:
        await repo.sync_personas(session, [(p.key, p.name, p.description, p.lines) for p in builtin_personas()])
    tuned = settings.model_copy(update={"crisis_second_look_wait_s": wait_s})
    return Dialogue(db, EchoBackend(), SecondLookSafety(delay), tuned, pusher=pusher)


def collect(dialogue: Dialogue) -> list[Alert]:
    alerts: list[Alert] = []

    async def sink(alert: Alert) -> None:
        alerts.append(alert)

    dialogue.alerts.subscribe(sink)
    return alerts


async def test_a_verdict_in_time_answers_with_the_safe_reply_instead_of_the_model(db, settings) -> None:
    dialogue = await dialogue_with(db, settings, 0.01, Pusher(), wait_s=1.0)
    alerts = collect(dialogue)
    result = await dialogue.handle(Incoming("test", "u1", "HIDDEN words", channel_message_id="1"))
    assert result.outcome == Outcome.CRISIS and result.reply.startswith("You matter")
    assert result.escalation_id is not None and [a.escalation_id for a in alerts] == [result.escalation_id]
    quiet = await dialogue.handle(Incoming("test", "u2", "just words", channel_message_id="1"))
    assert quiet.outcome == Outcome.MODEL


async def test_a_late_verdict_still_sends_the_safe_reply_escalates_and_alerts(db, settings) -> None:
    pusher = Pusher()
    dialogue = await dialogue_with(db, settings, 0.05, pusher)
    alerts = collect(dialogue)
    result = await dialogue.handle(Incoming("test", "u1", "HIDDEN words", channel_message_id="1"))
    assert (result.outcome, result.reply) == (Outcome.MODEL, "echo: HIDDEN words")  # not held for the check
    for _ in range(100):
        if pusher.pushed and not dialogue._late:
            break
        await asyncio.sleep(0.02)
    assert pusher.pushed == [("test", "u1", "You matter. Please call 112 or a helpline now.")]
    assert [(a.kind, a.level) for a in alerts] == [("escalation", "concern")]
    async with db.transaction() as session:
        user = await session.scalar(select(User).where(User.external_id == "u1"))
        conversation = await session.scalar(select(Conversation).where(Conversation.user_id == user.id))
        escalation = await session.scalar(select(Escalation).where(Escalation.conversation_id == conversation.id))
        said = (await session.scalars(select(Message.text).where(Message.role == Role.BOT).order_by(Message.id))).all()
    assert conversation.risk_level == Level.CONCERN and alerts[0].escalation_id == escalation.id
    assert said == ["echo: HIDDEN words", "You matter. Please call 112 or a helpline now."]
    following = await dialogue.handle(Incoming("test", "u1", "thanks", channel_message_id="2"))
    assert following.reply.endswith("Please call 112 or a helpline now.")  # the level stays with the conversation


async def test_a_late_verdict_after_the_person_deleted_their_data_sends_nothing_of_theirs(db, settings) -> None:
    pusher = Pusher()
    dialogue = await dialogue_with(db, settings, 0.2, pusher)
    alerts = collect(dialogue)
    result = await dialogue.handle(Incoming("test", "u1", "HIDDEN words", channel_message_id="1"))
    assert result.outcome == Outcome.MODEL and await dialogue.forget("test", "u1")
    await asyncio.sleep(0.4)  # the verdict comes 0.2 s after the message
    while dialogue._late:
        await asyncio.sleep(0.02)
    assert alerts == [] and pusher.pushed == []
    async with db.transaction() as session:
        assert await session.scalar(select(Escalation)) is None


async def test_a_call_and_a_channel_without_push_wait_for_the_verdict(db, settings) -> None:
    dialogue = await dialogue_with(db, settings, 0.05, Pusher())
    call = Incoming("phone", "+15550001", "HIDDEN words", channel_message_id="c1", call=True)
    assert (await dialogue.handle(call)).outcome == Outcome.CRISIS  # so the call is transferred to a person
    kiosk = Incoming("kiosk", "k1", "HIDDEN words", channel_message_id="1")
    assert (await dialogue.handle(kiosk)).outcome == Outcome.CRISIS
    sms = Incoming("phone", "+15550002", "HIDDEN words", channel_message_id="s1")  # can be texted later
    assert (await dialogue.handle(sms)).outcome == Outcome.MODEL


async def test_a_verdict_too_late_even_for_a_call_still_alerts_operators(db, settings, monkeypatch) -> None:
    monkeypatch.setattr(dialogue_module, "UNPUSHABLE_WAIT_S", 0.01)
    pusher = Pusher()
    dialogue = await dialogue_with(db, settings, 0.1, pusher)
    alerts = collect(dialogue)
    result = await dialogue.handle(Incoming("kiosk", "k1", "HIDDEN words", channel_message_id="1"))
    assert result.outcome == Outcome.MODEL
    for _ in range(100):
        if alerts:
            break
        await asyncio.sleep(0.02)
    assert [(a.kind, a.channel) for a in alerts] == [("escalation", "kiosk")] and alerts[0].escalation_id is not None
    assert pusher.pushed == []


async def test_closing_cancels_the_waiting_checks(tmp_path: Path) -> None:
    look = SecondLook([GatedComponent(tmp_path)], workers=1)
    running = look.ask("first", [], QUICK, 0.0)
    waiting = look.ask("second", [], QUICK, 0.5)
    look.close()
    assert waiting.cancelled() and not running.done()
    GatedComponent(tmp_path).open_gate()
    assert await look.ask("a risk after closing", [], QUICK, 0.0) == CONCERN  # new workers start


async def test_a_long_message_is_read_off_the_event_loop() -> None:
    layer = CrisisLayer.load("")
    long_text = "I had a long day at work. " * 4000  # 100 000 characters
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    screening = await layer.screen(long_text + " I want to kill myself", [])
    ticker.cancel()
    assert screening.assessment.level == Level.CRISIS
    assert ticks > 3  # other chats' turns went on while it was read

"""The operator web console: sign-in, what it shows, the handoff steps, and who it keeps out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from bot.app import create_app
from bot.channels.operator_console import COOKIE, CSRF_HEADER, CSRF_VALUE, SESSION_S, session_cookie, signed_in
from bot.dialogue import Incoming
from bot.handoff import Refused
from bot.service import Service
from bot.settings import Settings, SettingsError, load_settings
from db.models import AuditEvent, Conversation, Escalation, EscalationStatus, Message, Role
from tests.doubles import EchoBackend, KeywordSafety

TOKEN = "a-long-team-token-0123"
OURS = {CSRF_HEADER: CSRF_VALUE}


class Person:
    """The `test` channel's sender: what an operator's words reached."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str]] = []
        self.refuse: str | None = None

    async def send(self, external_id: str, words: str) -> None:
        if self.refuse:
            raise Refused(self.refuse)
        self.got.append((external_id, words))


@asynccontextmanager
async def console(settings: Settings, **overrides: object) -> AsyncIterator[tuple[TestClient, Service, Person]]:
    configured = settings.model_copy(update={"operator_token": TOKEN, **overrides})
    service = await Service.start(configured, backend=EchoBackend(), safety=KeywordSafety())
    person = Person()
    service.handoff.register_sender("test", person.send)
    try:
        async with TestClient(TestServer(create_app(service))) as client:
            yield client, service, person
    finally:
        await service.close()


async def sign_in(client: TestClient, name: str = "Anna") -> str:
    """Sign in; the session cookie as the server set it."""
    response = await client.post("/operator/login", json={"token": TOKEN, "name": name}, headers=OURS)
    assert response.status == 200 and (await response.json())["operator"] == name
    return response.headers["Set-Cookie"]


@pytest.mark.parametrize(("public_url", "secure"), [(None, False), ("https://help.example.org", True)])
async def test_the_session_cookie_is_secure_behind_https(
    settings: Settings, public_url: str | None, secure: bool
) -> None:
    """Behind the TLS proxy (SUPPORTBOT_PUBLIC_URL https://...) the browser never sends the session over plain HTTP;
    without one (http://127.0.0.1:8080) it must still work."""
    async with console(settings, public_url=public_url) as (client, _service, _person):
        flags = [flag.strip().lower() for flag in (await sign_in(client)).split(";")]
    assert ("secure" in flags) is secure and "httponly" in flags and "samesite=strict" in flags


async def test_an_operator_sees_a_crisis_takes_over_writes_and_resolves(settings: Settings) -> None:
    async with console(settings) as (client, service, person):
        crisis = await service.dialogue.handle(Incoming("test", "u", "CRISIS tonight"))
        page = await client.get("/operator")
        assert page.status == 200 and "Unresolved escalations" in await page.text()
        assert page.headers["Content-Security-Policy"] == "frame-ancestors 'none'"  # no framing elsewhere
        await sign_in(client)

        (shown,) = (await (await client.get("/operator/api/escalations", headers=OURS)).json())["escalations"]
        assert shown["id"] == crisis.escalation_id and shown["level"] == "crisis" and shown["channel"] == "test"
        assert shown["status"] == "open" and shown["held_by"] is None
        conversation = shown["conversation_id"]
        history = await (await client.get(f"/operator/api/conversations/{conversation}", headers=OURS)).json()
        assert [(m["role"], m["text"]) for m in history["messages"]][0] == (Role.USER, "CRISIS tonight")

        async def act(**body: object) -> dict:
            response = await client.post("/operator/api/actions", json=body, headers=OURS)
            assert response.status == 200
            return await response.json()

        assert (await act(action="take", id=conversation))["status"] == "done"
        assert (await act(action="say", id=conversation, text="I'm Anna, I'm here."))["status"] == "done"
        assert person.got[-1] == ("u", "I'm Anna, I'm here.")
        held = await service.dialogue.handle(Incoming("test", "u", "thank you"))
        assert held.reply is None  # the model is silent while Anna holds it
        assert (await act(action="resolve", id=crisis.escalation_id, lower_to="distress"))["status"] == "done"
        assert (await act(action="release", id=conversation))["status"] == "done"
        assert (await (await client.get("/operator/api/escalations", headers=OURS)).json())["escalations"] == []

        async with service.db.transaction() as session:
            escalation = await session.get_one(Escalation, crisis.escalation_id)
            audited = (await session.scalars(select(AuditEvent.actor).where(AuditEvent.actor.like("console:%")))).all()
            (said,) = (await session.scalars(select(Message).where(Message.role == Role.OPERATOR))).all()
        assert escalation.status == EscalationStatus.RESOLVED and escalation.operator == "console:Anna"
        assert set(audited) == {"console:Anna"} and len(audited) == 4  # take, message, resolve, release
        assert said.text == "I'm Anna, I'm here."


async def test_the_console_tells_why_nothing_happened(settings: Settings) -> None:
    async with console(settings) as (client, service, person):
        await service.dialogue.handle(Incoming("test", "u", "hello"))
        async with service.db.transaction() as session:
            conversation = (await session.scalar(select(Conversation))).id
        await sign_in(client)

        async def act(**body: object) -> tuple[int, dict]:
            response = await client.post("/operator/api/actions", json=body, headers=OURS)
            return response.status, await response.json()

        nothing = {"status": "not_found", "conversation_id": None, "holder": None, "reason": None}
        assert await act(action="take", id=999) == (200, nothing)
        person.refuse = "they blocked the bot"
        assert (await act(action="say", id=conversation, text="hi")) == (
            200,
            {"status": "refused", "reason": "they blocked the bot"},
        )
        for bad in (
            {"action": "dance", "id": conversation},
            {"action": "take", "id": "one"},
            {"action": "take", "id": -3},
            {"action": "take", "id": True},
            {"action": "take", "id": 10**30},  # past the id columns: it was a 500 on SQLite
            {"action": "say", "id": conversation, "text": "  "},
            {"action": "take", "id": conversation, "lower_to": "none"},
            {"action": "resolve", "id": 1, "lower_to": "emergency"},
        ):
            status, body = await act(**bad)
            assert status == 400 and body["error"], bad
        assert (await client.post("/operator/api/actions", data="{nope", headers=OURS)).status == 400
        huge = await client.post("/operator/api/actions", data="x" * 70_000, headers=OURS)
        assert huge.status == 413
        assert (await client.get("/operator/api/conversations/999", headers=OURS)).status == 404
        assert (await client.get("/operator/api/conversations/²", headers=OURS)).status == 400  # isdigit, not int


async def test_only_a_signed_in_operator_on_the_console_itself_gets_in(settings: Settings) -> None:
    async with console(settings) as (client, service, _):
        await service.dialogue.handle(Incoming("test", "u", "CRISIS"))
        wrong = await client.post("/operator/login", json={"token": "guess", "name": "Eve"}, headers=OURS)
        assert wrong.status == 403
        assert (await client.get("/operator/api/escalations", headers=OURS)).status == 401
        cookie = await sign_in(client)
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/operator" in cookie
        # A page on another site can make the browser send the cookie along, but not the header.
        assert (await client.get("/operator/api/escalations")).status == 403
        assert (await client.post("/operator/api/actions", json={"action": "take", "id": 1})).status == 403

        client.session.cookie_jar.clear()
        client.session.cookie_jar.update_cookies({COOKIE: "QW5uYQ==.9999999999.forged"})
        assert (await client.get("/operator/api/escalations", headers=OURS)).status == 401
        await sign_in(client)
        assert (await client.get("/operator/api/escalations", headers=OURS)).status == 200
        await client.post("/operator/logout", headers=OURS)
        assert (await client.get("/operator/api/escalations", headers=OURS)).status == 401


def test_a_session_cookie_holds_its_name_until_it_expires() -> None:
    key, now = b"k" * 32, time.time()
    cookie = session_cookie(key, "Олена", now)
    assert signed_in(key, cookie, now) == "Олена"
    assert signed_in(key, cookie, now + SESSION_S + 1) is None
    assert signed_in(b"other key" * 4, cookie, now) is None
    name, expires, signature = cookie.split(".")
    assert signed_in(key, f"{name}.{int(expires) + 999}.{signature}", now) is None  # a lengthened session
    assert signed_in(key, "garbage", now) is None


async def test_a_dead_database_is_a_503_not_a_traceback(settings: Settings, monkeypatch) -> None:
    async with console(settings) as (client, service, _):
        await sign_in(client)

        async def broken(*args: object) -> None:
            raise OperationalError("SELECT", {}, Exception("connection refused"))

        monkeypatch.setattr(service.handoff, "act", broken)
        response = await client.post("/operator/api/actions", json={"action": "take", "id": 1}, headers=OURS)
        assert response.status == 503 and "database" in (await response.json())["error"]


async def test_without_a_token_there_is_no_console(settings: Settings) -> None:
    service = await Service.start(settings, backend=EchoBackend(), safety=KeywordSafety())
    try:
        async with TestClient(TestServer(create_app(service))) as client:
            assert (await client.get("/operator")).status == 404
            assert (await client.post("/operator/login", json={"token": "", "name": "x"}, headers=OURS)).status in (
                404,
                405,
            )
    finally:
        await service.close()


def test_a_short_token_is_refused_at_start_up() -> None:
    with pytest.raises(SettingsError, match="SUPPORTBOT_OPERATOR_TOKEN"):
        load_settings(operator_token="letmein")

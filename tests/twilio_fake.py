"""Twilio's side of the webhooks, for the Twilio channel's tests: every request signed exactly as Twilio
signs it (RequestValidator.compute_signature over the full URL and the POST parameters), relative
action URLs resolved as Twilio resolves them, and each TwiML answer parsed with xml.etree."""

from __future__ import annotations

import itertools
import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator

from bot.alerts import Alert
from bot.channels import twilio
from bot.crisis.layer import CrisisLayer
from bot.service import Service
from bot.settings import Settings
from db import crypto
from tests.doubles import EchoBackend

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
OUR_NUMBER = "+15005550006"
UA_NUMBER = "+380501234567"
# Words the crisis layer rates an emergency (and KeywordSafety a crisis).
CRISIS_WORDS = "CRISIS: I am going to kill myself tonight, I have the pills ready"


@cache
def crisis_layer() -> CrisisLayer:
    """The real crisis layer, as the service loads it; read-only, so one instance serves every test."""
    return CrisisLayer.load()


def twilio_settings(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(
        update={
            "twilio_account_sid": ACCOUNT_SID,
            "twilio_auth_token": AUTH_TOKEN,
            "twilio_hold_after_s": 3.0,
            **changes,
        }
    )


@dataclass
class Reply:
    """One webhook answer: HTTP status, the TwiML root (when 200) and the URL Twilio had called."""

    status: int
    url: str
    root: ET.Element | None

    @property
    def verbs(self) -> list[str]:
        assert self.root is not None and self.root.tag == "Response"
        return [child.tag for child in self.root]

    def one(self, path: str) -> ET.Element:
        assert self.root is not None
        found = self.root.findall(path)
        assert len(found) == 1, f"expected one {path} in {ET.tostring(self.root, encoding='unicode')}"
        return found[0]

    def said(self) -> list[str]:
        """Every <Say> text, in order, inside a <Gather> or not."""
        assert self.root is not None
        return [say.text or "" for say in self.root.iter("Say")]

    def next_url(self) -> str:
        """Where Twilio goes next: the <Gather> action, else the <Redirect>, resolved against this URL."""
        assert self.root is not None
        gather = self.root.find("Gather")
        target = gather.get("action") if gather is not None else self.one("Redirect").text
        assert target
        return urljoin(self.url, target)


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


class FakeTwilio:
    """Signs and posts webhooks the way Twilio does, to the path a proxy in front of the app would forward."""

    def __init__(self, client: TestClient, public_url: str | None = None, token: str = AUTH_TOKEN) -> None:
        self.client = client
        self.public_url = public_url
        self.validator = RequestValidator(token)

    def url(self, path: str) -> str:
        base = self.public_url or str(self.client.make_url("")).rstrip("/")
        return base + path

    async def post(self, url: str, params: dict[str, str], *, signature: str | None = None, sign: bool = True) -> Reply:
        headers = {}
        if sign:
            headers["X-Twilio-Signature"] = (
                self.validator.compute_signature(url, params) if signature is None else signature
            )
        local = (
            url.removeprefix(self.public_url)
            if self.public_url
            else urlsplit(url)._replace(scheme="", netloc="").geturl()
        )
        response = await self.client.post(local, data=params, headers=headers)
        body = await response.text()
        return Reply(response.status, url, ET.fromstring(body) if response.status == 200 else None)


_sids = itertools.count(1)


@dataclass
class Call:
    """One phone call as Twilio drives it."""

    twilio: FakeTwilio
    number: str = UA_NUMBER
    sid: str = field(default_factory=lambda: f"CA{next(_sids):032x}")

    def params(self, **extra: str) -> dict[str, str]:
        return {
            "CallSid": self.sid,
            "AccountSid": ACCOUNT_SID,
            "From": self.number,
            "To": OUR_NUMBER,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            **extra,
        }

    async def start(self) -> Reply:
        return await self.twilio.post(self.twilio.url("/twilio/voice"), self.params(CallStatus="ringing"))

    async def say(self, previous: Reply, speech: str) -> Reply:
        return await self.twilio.post(previous.next_url(), self.params(SpeechResult=speech, Confidence="0.9"))

    async def silence(self, previous: Reply) -> Reply:
        return await self.twilio.post(previous.next_url(), self.params())

    async def follow(self, previous: Reply) -> Reply:
        """Twilio following a <Redirect> (a pickup after a holding phrase)."""
        return await self.twilio.post(previous.next_url(), self.params())

    async def dial_ended(self, previous: Reply, status: str) -> Reply:
        action = urljoin(previous.url, previous.one("Dial").get("action") or "")
        return await self.twilio.post(action, self.params(DialCallStatus=status, DialCallDuration="0"))

    async def hang_up(self, duration: int = 42) -> Reply:
        params = self.params(CallStatus="completed", CallDuration=str(duration))
        return await self.twilio.post(self.twilio.url("/twilio/voice/status"), params)


async def text(twilio: FakeTwilio, body: str, number: str = UA_NUMBER, sid: str | None = None) -> Reply:
    """An SMS arriving from `number`."""
    params = {
        "MessageSid": sid or f"SM{next(_sids):032x}",
        "AccountSid": ACCOUNT_SID,
        "From": number,
        "To": OUR_NUMBER,
        "Body": body,
        "NumMedia": "0",
    }
    return await twilio.post(twilio.url("/twilio/sms"), params)


class RecordingTwilioApi(AsyncHttpClient):
    """Twilio's REST API as the `twilio` Client sees it: records each request, answers like a queued message."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("tests.twilio_api"), is_async=True)
        self.requests: list[dict[str, Any]] = []
        self.refusal: dict[str, Any] | None = None  # set: every request gets this error body, HTTP 400

    async def request(
        self,
        method: str,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = False,
    ) -> Response:
        self.requests.append({"method": method, "url": url, "data": dict(data or {})})
        if self.refusal is not None:
            return Response(400, json.dumps(self.refusal))
        body = json.dumps({"sid": f"SM{len(self.requests):032d}", "status": "queued", "body": "", "to": "", "from": ""})
        return Response(201, body)


@dataclass
class Line:
    """A running service with only the Twilio channel mounted, and Twilio's side of it."""

    service: Service
    twilio: FakeTwilio
    backend: EchoBackend
    alerts: list[Alert]
    api: RecordingTwilioApi

    async def count(self, model: type, *where: object) -> int:
        async with self.service.db.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    async def rows(self, model: type, *where: object) -> list[Any]:
        async with self.service.db.transaction() as session:
            return list((await session.scalars(select(model).where(*where).order_by(model.id))).all())  # type: ignore[attr-defined]


@asynccontextmanager
async def phone_line(settings: Settings, backend: EchoBackend | None = None, safety: Any = None) -> AsyncIterator[Line]:
    backend = backend or EchoBackend()
    service = await Service.start(settings, backend=backend, safety=safety or crisis_layer())
    alerts: list[Alert] = []

    async def sink(alert: Alert) -> None:
        alerts.append(alert)

    service.alerts.subscribe(sink)
    api = RecordingTwilioApi()
    app = web.Application()
    twilio.mount(app, service, http_client=api)
    try:
        async with TestClient(TestServer(app)) as client:
            yield Line(service, FakeTwilio(client, settings.public_url), backend, alerts, api)
    finally:
        await service.close()
        crypto.configure(None)

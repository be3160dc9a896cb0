"""Every Twilio route refuses unsigned, forged, oversized and malformed requests with a 4xx and stores nothing;
PUBLIC_URL is what is verified behind a proxy; phone numbers and words never reach the logs."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from bot.app import create_app
from bot.channels.twilio_security import MAX_FORM_BYTES
from bot.channels.twilio_texts import phone_texts
from bot.settings import Settings
from bot.texts import text as fixed_text
from db.models import Message, User
from tests.doubles import EchoBackend
from tests.twilio_fake import ACCOUNT_SID, UA_NUMBER, Call, Line, phone_line, text, twilio_settings

ROUTES = [
    "/twilio/voice",
    "/twilio/voice/gather?n=1",
    "/twilio/voice/pickup?n=1&h=1",
    "/twilio/voice/dial-status",
    "/twilio/voice/status",
    "/twilio/sms",
]
PARAMS = {
    "CallSid": "CA" + "f" * 32,
    "MessageSid": "SM" + "f" * 32,
    "AccountSid": ACCOUNT_SID,
    "From": UA_NUMBER,
    "SpeechResult": "hello",
    "Body": "hello",
    "CallStatus": "completed",
    "DialCallStatus": "no-answer",
}


async def nothing_stored(line: Line) -> bool:
    return await line.count(User) == 0 and await line.count(Message) == 0


@pytest.mark.parametrize("path", ROUTES)
async def test_unsigned_and_forged_requests_are_refused_and_nothing_is_stored(settings: Settings, path: str) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        twilio, url = line.twilio, line.twilio.url(path)
        forger = RequestValidator("not-the-auth-token-but-looks-like-one")
        attempts = [
            await twilio.post(url, PARAMS, sign=False),
            await twilio.post(url, PARAMS, signature=""),
            await twilio.post(url, PARAMS, signature=forger.compute_signature(url, PARAMS)),
            # Signed for other words than the ones sent, and for another URL.
            await twilio.post(url, PARAMS, signature=twilio.validator.compute_signature(url, {**PARAMS, "Body": "hi"})),
            await twilio.post(url, PARAMS, signature=twilio.validator.compute_signature(url + "&n=9", PARAMS)),
        ]
        assert [reply.status for reply in attempts] == [403] * 5
        assert await nothing_stored(line) and not line.backend.calls


async def test_oversized_and_malformed_bodies_get_a_4xx_and_store_nothing(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        client, url = line.twilio.client, "/twilio/sms"
        huge = {**PARAMS, "Body": "x" * (MAX_FORM_BYTES + 1)}
        signature = line.twilio.validator.compute_signature(line.twilio.url(url), huge)
        too_big = await client.post(url, data=huge, headers={"X-Twilio-Signature": signature})
        assert too_big.status == 413

        headers = {"X-Twilio-Signature": "x", "Content-Type": "application/x-www-form-urlencoded"}
        assert (await client.post(url, data=b"Body=%FF%FE&From=x", headers=headers)).status == 400
        assert (await client.post(url, data=b"Body=a%00b", headers=headers)).status == 400
        assert (await client.post(url, data=b"no-equals-sign", headers=headers)).status == 400
        many = "&".join(f"f{i}=1" for i in range(500)).encode()
        assert (await client.post(url, data=many, headers=headers)).status == 400
        assert (await client.post(url, json={"Body": "hi"}, headers={"X-Twilio-Signature": "x"})).status == 415
        assert await nothing_stored(line)


async def test_a_huge_speech_result_or_body_within_the_limit_is_answered_without_a_5xx(settings: Settings) -> None:
    # ~56 KB, below the form limit; ordinary words: a too-long message is still screened for risk
    huge = "We planted tomatoes in the garden today. " * 1370
    async with phone_line(twilio_settings(settings, max_message_chars=10_000)) as line:
        call = Call(line.twilio)
        spoken = await call.say(await call.start(), huge)
        assert spoken.status == 200 and spoken.said() == [phone_texts().text("too_long", "uk")]
        texted = await text(line.twilio, huge)
        assert texted.status == 200 and [m.text for m in texted.root.iter("Message")] == [fixed_text("too_long", "uk")]
        assert not line.backend.calls and await line.count(Message) == 0


async def test_behind_a_proxy_the_public_url_is_verified_and_handed_to_twilio(settings: Settings) -> None:
    public = "https://help.example.org/hotline"
    async with phone_line(twilio_settings(settings, public_url=public)) as line:
        call = Call(line.twilio)
        greeting = await call.start()
        assert greeting.status == 200
        action = greeting.one("Gather").get("action") or ""
        assert action.startswith(f"{public}/twilio/voice/gather?")
        assert (await call.say(greeting, "hello")).said() == ["echo: hello"]

        # Signed for the address this process sees rather than the one Twilio called: refused.
        local = str(line.twilio.client.make_url("/twilio/voice"))
        params = call.params()
        response = await line.twilio.client.post(
            "/twilio/voice",
            data=params,
            headers={"X-Twilio-Signature": line.twilio.validator.compute_signature(local, params)},
        )
        assert response.status == 403


async def test_the_service_app_mounts_twilio_only_when_configured(settings: Settings) -> None:
    from bot.service import Service
    from tests.twilio_fake import crisis_layer

    for configured, expected in ((settings, 404), (twilio_settings(settings), 403)):
        service = await Service.start(configured, backend=EchoBackend(), safety=crisis_layer())
        try:
            async with TestClient(TestServer(create_app(service))) as client:
                assert (await client.post("/twilio/sms", data=PARAMS)).status == expected
        finally:
            await service.close()


async def test_phone_numbers_and_words_never_reach_the_logs(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with phone_line(twilio_settings(settings, twilio_hold_after_s=0.05), backend=EchoBackend(delay=0.2)) as line:
        call = Call(line.twilio)
        reply = await call.say(await call.start(), "my secret words")
        while reply.verbs != ["Gather"]:
            reply = await call.follow(reply)
        await text(line.twilio, "more secret words")
        await line.twilio.post(line.twilio.url("/twilio/sms"), PARAMS, sign=False)
        await call.hang_up()
    # aiosqlite's DEBUG lines echo SQL parameters: a driver's debug output, not the bot's own logging.
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("aiosqlite"))
    assert "refused a Twilio webhook" in logged
    for secret in (UA_NUMBER, UA_NUMBER.lstrip("+"), "secret words"):
        assert secret not in logged


async def test_characters_xml_cannot_carry_are_dropped_so_twiml_always_parses(settings: Settings) -> None:
    async with phone_line(twilio_settings(settings)) as line:
        call = Call(line.twilio)
        spoken = await call.say(await call.start(), "hi\x07 there\x1b")
        assert spoken.status == 200 and spoken.said() == ["echo: hi there"]
        texted = await text(line.twilio, "bad\x07bytes")
        assert texted.status == 200 and [m.text for m in texted.root.iter("Message")] == ["echo: badbytes"]

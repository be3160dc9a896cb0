"""Every Twilio webhook passes here first: a bounded, well-formed form body signed by Twilio, or a 4xx.

Twilio signs the exact URL it called plus the sorted POST parameters with the account's auth token
(`X-Twilio-Signature`); `twilio.request_validator.RequestValidator` checks it. Behind a proxy the URL
Twilio called is not the one this process sees, so PUBLIC_URL + path (+ query) is checked instead.
Nothing reaches a handler, and so nothing is stored, before all of this holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import MultiDict
from prometheus_client import Counter, Histogram
from twilio.request_validator import RequestValidator
from twilio.twiml import TwiML

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 64 * 1024  # Twilio's largest webhook (an SMS of 1600 characters and its metadata) is a few KiB
MAX_FORM_FIELDS = 200
SIGNATURE_HEADER = "X-Twilio-Signature"
FORM_TYPE = "application/x-www-form-urlencoded"

RESPONSE_SECONDS = Histogram(
    "supportbot_twilio_response_seconds",
    "Time to answer a Twilio webhook with TwiML, by route",
    ["route"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 15),
)
REFUSED = Counter("supportbot_twilio_refused_total", "Twilio webhooks refused, by reason", ["reason"])

Form = MultiDict[str]
FormHandler = Callable[[web.Request, Form], Awaitable[TwiML]]


def called_url(request: web.Request, public_url: str | None) -> str:
    """The URL Twilio requested: PUBLIC_URL + path and query behind a proxy, else this request's own."""
    if public_url:
        return public_url.rstrip("/") + request.raw_path
    return f"{request.scheme}://{request.host}{request.raw_path}"


def _refuse(reason: str, error: type[web.HTTPClientError], message: str, **kwargs: int) -> web.HTTPClientError:
    REFUSED.labels(reason).inc()
    return error(text=message, **kwargs)


async def read_form(request: web.Request) -> Form:
    """The POST form, or 413 (too big), 415 (not a form) or 400 (not valid UTF-8 form encoding)."""
    if request.content_type != FORM_TYPE:
        raise _refuse("media_type", web.HTTPUnsupportedMediaType, f"expected {FORM_TYPE}")
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise _refuse(
            "too_large",
            web.HTTPRequestEntityTooLarge,
            "form too large",
            max_size=MAX_FORM_BYTES,
            actual_size=request.content_length,
        )
    body = await request.read()  # bounded by the application's client_max_size
    if len(body) > MAX_FORM_BYTES:
        raise _refuse(
            "too_large", web.HTTPRequestEntityTooLarge, "form too large", max_size=MAX_FORM_BYTES, actual_size=len(body)
        )
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=True,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError:  # UnicodeDecodeError is one, as are a bad field and too many fields
        raise _refuse("malformed", web.HTTPBadRequest, "malformed form body") from None
    if any("\x00" in key or "\x00" in value for key, value in pairs):
        raise _refuse("malformed", web.HTTPBadRequest, "malformed form body")
    return MultiDict(pairs)


def webhook(route: str, handler: FormHandler, validator: RequestValidator, public_url: str | None) -> Handler:
    """An aiohttp handler that reads and verifies the form, then answers with the handler's TwiML."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        form = await read_form(request)
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature or not validator.validate(called_url(request, public_url), form, signature):
            log.warning("refused a Twilio webhook to %s: %s signature", route, "wrong" if signature else "no")
            raise _refuse("signature", web.HTTPForbidden, "invalid Twilio signature")
        twiml = await handler(request, form)
        response = web.Response(text=str(twiml), content_type="text/xml")
        RESPONSE_SECONDS.labels(route).observe(time.perf_counter() - started)
        return response

    return endpoint

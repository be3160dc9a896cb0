"""Service settings from the environment (prefix SUPPORTBOT_) and `.env`, validated once at start-up."""

from __future__ import annotations

import re
from functools import cached_property

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX = "SUPPORTBOT_"
LIVE_TURN_MARGIN_S = 10.0  # beyond the reply timeout: the crisis check's longest wait (5 s) and the database
SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
DEFAULT_DEMO_MODEL = "var/models/demo"

_TELEGRAM_TOKEN = re.compile(r"^\d{3,}:[A-Za-z0-9_-]{30,}$")
_WEBHOOK_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_TWILIO_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_HTTP_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable in one line."""


def _http_url(value: str | None, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not _HTTP_URL.match(value):
        raise ValueError(f"must be an http(s) URL for {what}, got {value!r}")
    return value.rstrip("/")


class Settings(BaseSettings):
    """Everything configurable about one bot process. Names and defaults follow DESIGN.md."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./var/supportbot.db"
    model: str = DEFAULT_DEMO_MODEL
    inference_url: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=1, le=65535)
    telegram_token: str | None = None
    telegram_api_url: str = "https://api.telegram.org/bot"
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    public_url: str | None = None
    operator_chat_id: int | None = None
    hotline_number: str | None = None
    encryption_key: str | None = None
    operator_token: str | None = Field(
        None, min_length=16, description="turns on the operator web console at /operator; operators sign in with it"
    )

    # Beyond DESIGN.md: tuning knobs with safe defaults.
    history_turns: int = Field(8, ge=0, le=64, description="previous turns given to the model")
    context_tokens: int = Field(512, ge=32, description="approximate token budget for persona + history")
    max_message_chars: int = Field(100_000, ge=1, description="longest user message accepted")
    reply_timeout_s: float = Field(30.0, gt=0, description="how long a turn waits for the model")
    turn_lease_s: float = Field(120.0, gt=0, description="after this a turn abandoned by a dead process stops blocking")
    max_new_tokens: int = Field(60, ge=1, le=1024)
    realert_after_s: float = Field(
        300.0, gt=0, description="re-alert operators about an escalation nobody acknowledged"
    )
    handoff_idle_s: float = Field(
        900.0, gt=0, description="a hold whose operator wrote nothing for this long ends when the person writes"
    )
    telegram_max_rate: float = Field(30.0, ge=0, description="Bot API messages/s overall (Telegram's limit); 0 = none")
    telegram_chat_rate: float = Field(
        1.0, gt=0, description="messages/s to one chat, after a burst of telegram_chat_burst"
    )
    telegram_chat_burst: int = Field(3, ge=1, description="messages sent to one chat back to back before pacing starts")
    telegram_concurrent_updates: int = Field(
        256, ge=1, description="Telegram updates handled at once (of different chats)"
    )
    twilio_sms_from: str | None = Field(None, description="number or Messaging Service SID operators' SMS come from")
    twilio_voice: str | None = Field(
        None, description="text-to-speech voice for every language (else bot/data/twilio.yaml)"
    )
    twilio_speech_model: str | None = Field(
        None, description="<Gather> speechModel for every language (else twilio.yaml)"
    )
    twilio_speech_timeout_s: int = Field(2, ge=1, le=10, description="pause that ends a caller's utterance")
    twilio_listen_s: int = Field(7, ge=1, le=60, description="how long a caller may stay silent before a reprompt")
    twilio_hold_after_s: float = Field(
        1.2, gt=0, le=10, description="a spoken turn not ready by then gets a holding phrase"
    )
    twilio_max_holds: int = Field(
        8, ge=0, le=30, description="holding redirects before apologising and listening again"
    )
    crisis_classifier: str | None = Field(
        None, description="crisis classifier model file; unset = shipped, '' = rules only"
    )
    crisis_second_look_wait_s: float = Field(
        0.04,
        ge=0,
        le=10,
        description="how long a ready reply waits for the slow crisis components (a lone check takes ~15 ms)",
    )
    crisis_second_look_workers: int = Field(1, ge=1, le=64, description="processes running the slow crisis components")
    crisis_second_look_queue: int = Field(
        500, ge=1, description="slow crisis checks that may wait; beyond, the least suspicious is dropped"
    )
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {value!r}") from exc
        if url.drivername == "postgresql":  # the plain form people copy from psql docs
            url = url.set(drivername="postgresql+asyncpg")
        if url.drivername not in SUPPORTED_DRIVERS:
            raise ValueError(f"unknown driver {url.drivername!r}; use one of {', '.join(SUPPORTED_DRIVERS)}")
        return url.render_as_string(hide_password=False)

    @field_validator("inference_url", "public_url", "telegram_webhook_url")
    @classmethod
    def _check_http_url(cls, value: str | None, info) -> str | None:  # type: ignore[no-untyped-def]
        return _http_url(value, info.field_name)

    @field_validator("telegram_api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        return _http_url(value, "telegram_api_url") or value

    @field_validator("turn_lease_s")
    @classmethod
    def _check_lease(cls, value: float, info) -> float:  # type: ignore[no-untyped-def]
        """A turn older than its lease is taken for one a dead process left (a redelivery answers it),
        so the lease must outlast the longest live turn: the model's timeout and the crisis check's wait."""
        longest = info.data.get("reply_timeout_s", 0.0) + LIVE_TURN_MARGIN_S
        if value <= longest:
            raise ValueError(f"must exceed the reply timeout by more than {LIVE_TURN_MARGIN_S:g}s (so > {longest:g})")
        return value

    @field_validator("telegram_token")
    @classmethod
    def _check_telegram_token(cls, value: str | None) -> str | None:
        if value and not _TELEGRAM_TOKEN.match(value):
            raise ValueError("does not look like a Telegram bot token (digits, a colon, then 30+ letters)")
        return value or None

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _check_secret(cls, value: str | None) -> str | None:
        if value and not _WEBHOOK_SECRET.match(value):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram's rule)")
        return value or None

    @field_validator("twilio_account_sid")
    @classmethod
    def _check_twilio_sid(cls, value: str | None) -> str | None:
        if value and not _TWILIO_SID.match(value):
            raise ValueError("must be 'AC' followed by 32 hex digits")
        return value or None

    @field_validator("hotline_number")
    @classmethod
    def _check_hotline(cls, value: str | None) -> str | None:
        if value and not _E164.match(value):
            raise ValueError("must be a phone number in E.164 form, e.g. +380800500335")
        return value or None

    @field_validator("twilio_sms_from")
    @classmethod
    def _check_sms_from(cls, value: str | None) -> str | None:
        if value and not (_E164.match(value) or _MESSAGING_SERVICE_SID.match(value)):
            raise ValueError("must be a phone number in E.164 form or a Messaging Service SID ('MG' + 32 hex digits)")
        return value or None

    @cached_property
    def database(self) -> URL:
        """The parsed database URL."""
        return make_url(self.database_url)

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_token is not None

    @property
    def twilio_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning validation errors into one line per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ENV_PREFIX + str(error["loc"][0]).upper() if error["loc"] else ENV_PREFIX
            lines.append(f"invalid setting {name}: {error['msg'].removeprefix('Value error, ')}")
        raise SettingsError("; ".join(lines)) from None

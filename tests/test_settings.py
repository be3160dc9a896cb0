"""Settings: defaults of DESIGN.md, the environment and .env, and one clear line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in list(__import__("os").environ):
        if name.startswith("SUPPORTBOT_"):
            monkeypatch.delenv(name)


def test_defaults_follow_the_design() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite+aiosqlite:///./var/supportbot.db"
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8080)
    assert settings.model == "var/models/demo" and settings.inference_url is None
    assert settings.telegram_api_url == "https://api.telegram.org/bot"
    assert not settings.telegram_enabled and not settings.twilio_enabled


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SUPPORTBOT_HTTP_PORT=9000\nSUPPORTBOT_OPERATOR_CHAT_ID=-100123\n")
    monkeypatch.setenv("SUPPORTBOT_DATABASE_URL", "postgresql://u:p@db.internal/support")
    settings = load_settings()
    assert settings.http_port == 9000 and settings.operator_chat_id == -100123
    assert settings.database_url == "postgresql+asyncpg://u:p@db.internal/support"


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("DATABASE_URL", "mysql+pymysql://x/y", "unknown driver"),
        ("DATABASE_URL", "not a url", "not a database URL"),
        ("INFERENCE_URL", "localhost:8000", "http(s) URL"),
        ("TELEGRAM_TOKEN", "12345", "Telegram bot token"),
        ("TELEGRAM_WEBHOOK_SECRET", "has spaces", "1-256 characters"),
        ("TWILIO_ACCOUNT_SID", "XY123", "'AC'"),
        ("HOTLINE_NUMBER", "0800 500 335", "E.164"),
        ("HTTP_PORT", "70000", "less than or equal"),
        ("OPERATOR_CHAT_ID", "operators", "integer"),
        ("TURN_LEASE_S", "35", "exceed the reply timeout by more than 10s (so > 40)"),
    ],
)
def test_a_bad_value_names_its_variable_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, words: str
) -> None:
    monkeypatch.setenv(f"SUPPORTBOT_{variable}", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"invalid setting SUPPORTBOT_{variable}:") and words in message
    assert "\n" not in message


def test_valid_channel_settings_switch_channels_on() -> None:
    settings = Settings(
        telegram_token="123456:" + "A" * 35,
        twilio_account_sid="AC" + "0" * 32,
        twilio_auth_token="secret",
        hotline_number="+380800500335",
    )
    assert settings.telegram_enabled and settings.twilio_enabled

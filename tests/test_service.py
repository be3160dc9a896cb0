"""The bot process: start-up errors, /healthz and /metrics, the terminal chat surviving a restart, encryption
at rest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from bot.app import create_app, safety_gaps
from bot.channels.terminal import TerminalChat
from bot.dialogue import Incoming
from bot.service import Service, StartupError
from bot.settings import Settings
from db import crypto, repo
from db.engine import Database
from tests.doubles import EchoBackend, KeywordSafety

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


async def start(settings: Settings) -> Service:
    return await Service.start(settings, backend=EchoBackend(), safety=KeywordSafety())


async def test_unreachable_database_stops_start_up_with_one_line() -> None:
    settings = Settings(database_url="postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/none")
    with pytest.raises(StartupError) as caught:
        await start(settings)
    assert "cannot use database postgresql+asyncpg://postgres:***@127.0.0.1:1/none" in str(caught.value)


async def test_a_database_failing_while_being_prepared_stops_start_up_with_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object) -> None:
        raise OperationalError("INSERT INTO personas", {}, Exception("disk I/O error"))

    monkeypatch.setattr(repo, "sync_personas", broken)
    with pytest.raises(StartupError) as caught:
        await start(settings)
    assert str(caught.value) == "the database failed while being prepared: OperationalError: disk I/O error"


def test_serve_with_a_bad_setting_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "SUPPORTBOT_DATABASE_URL": "oracle://x/y"}
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "supportbot: invalid setting SUPPORTBOT_DATABASE_URL: unknown driver 'oracle'; "
        "use one of sqlite+aiosqlite, postgresql+asyncpg"
    ]


def test_serve_with_a_dead_database_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "SUPPORTBOT_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/none"}
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "db", "upgrade"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "cannot use database" in done.stderr


async def test_health_metrics_and_web_chat(settings: Settings) -> None:
    service = await start(settings)
    async with TestClient(TestServer(create_app(service))) as client:
        health = await client.get("/healthz")
        assert health.status == 200 and (await health.json())["database"] == "ok"
        page = await client.get("/")
        assert page.status == 200 and "not a person" in await page.text()
        reply = await client.post("/chat/message", json={"text": "hello", "id": "m1"})
        assert (await reply.json())["reply"] == "echo: hello"
        again = await client.post("/chat/message", json={"text": "hello", "id": "m1"})
        assert (await again.json())["reply"] == "echo: hello"
        assert (await client.post("/chat/message", data="{nope")).status == 400
        assert (await client.post("/chat/message", json={"text": 5})).status == 400
        for bad_id in ("m" * 129, ["m1"]):  # the database keeps 128 characters of an id
            refused = await client.post("/chat/message", json={"text": "hello", "id": bad_id})
            assert refused.status == 400 and "'id'" in (await refused.json())["error"]
        odd_language = await client.post("/chat/message", json={"text": "hi"}, headers={"Accept-Language": "x" * 40})
        assert (await odd_language.json())["reply"] == "echo: hi"  # an unusable language tag is ignored
        metrics = await client.get("/metrics")
        body = await metrics.text()
        assert 'supportbot_turns_total{channel="web",outcome="model"}' in body
        forgotten = await client.post("/chat/forget")
        assert (await forgotten.json())["deleted"] is True
    await service.close()


@pytest.mark.parametrize(("public_url", "secure"), [(None, False), ("https://help.example.org", True)])
async def test_the_web_chat_cookie_is_secure_behind_https(
    settings: Settings, public_url: str | None, secure: bool
) -> None:
    """Behind the TLS proxy (SUPPORTBOT_PUBLIC_URL https://...) the browser never sends the session over plain HTTP;
    without one (http://127.0.0.1:8080, make run) the chat must still keep its session."""
    service = await start(settings.model_copy(update={"public_url": public_url}))
    try:
        async with TestClient(TestServer(create_app(service))) as client:
            reply = await client.post("/chat/message", json={"text": "hello"})
            flags = [flag.strip().lower() for flag in reply.headers["Set-Cookie"].split(";")]
    finally:
        await service.close()
    assert ("secure" in flags) is secure and "httponly" in flags and "samesite=strict" in flags


async def test_health_reports_a_dead_database(settings: Settings) -> None:
    service = await start(settings)
    working = service.db
    service.db = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        async with TestClient(TestServer(create_app(service))) as client:
            health = await client.get("/healthz")
            assert health.status == 503 and (await health.json())["database"] == "unreachable"
            # the probes' route: the process still serves (safe words without the database), so it stays in
            live = await client.get("/livez")
            assert live.status == 200 and (await live.json())["status"] == "ok"
    finally:
        await service.db.dispose()
        service.db = working
        await service.close()


def _manifests() -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / "k8s" / "supportbot.yaml").read_text()) if doc]


def _containers() -> dict[str, dict]:
    """The k8s manifest's containers by name."""
    pods = [doc["spec"]["template"]["spec"] for doc in _manifests() if doc["kind"] == "Deployment"]
    return {container["name"]: container for pod in pods for container in pod["containers"]}


async def test_the_k8s_probes_use_routes_that_do_not_need_the_database(settings: Settings) -> None:
    """A database outage must not pull every bot replica out of its Service (webhooks would fail, and no one
    would get the safe words) nor restart them (they cannot start without it): the probes use /livez."""
    bot = _containers()["bot"]
    probes = {kind: bot[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert {probe["path"] for probe in probes.values()} == {"/livez"}
    assert {probe["port"] for probe in probes.values()} == {bot["ports"][0]["containerPort"]} == {8080}
    service = await start(settings)
    try:
        routes = {r.resource.canonical for r in create_app(service).router.routes() if r.method == "GET"}
    finally:
        await service.close()
    assert {"/livez", "/healthz", "/metrics"} <= routes


def test_the_k8s_images_have_a_version_tag_and_a_pull_policy() -> None:
    for container in _containers().values():
        assert not container["image"].endswith(":latest") and ":" in container["image"].rsplit("/", 1)[-1]
        assert container["imagePullPolicy"] == "IfNotPresent"


def test_compose_publishes_the_bot_on_loopback_only() -> None:
    """Plain HTTP (web chat, operator console, /metrics) stays on the host; a TLS proxy faces the network."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    published = [port for service in compose["services"].values() for port in service.get("ports", [])]
    assert published == ["127.0.0.1:8080:8080"]


def _dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_image_is_cpu_only_reachable_and_can_write_its_database() -> None:
    lines = _dockerfile()
    (torch,) = [line for line in lines if line.startswith("RUN pip install") and "torch" in line]
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch  # PyPI's Linux wheel is the CUDA build
    env = " ".join(line for line in lines if line.startswith("ENV "))
    assert "SUPPORTBOT_HTTP_HOST=0.0.0.0" in env  # 127.0.0.1 inside a container is unreachable with -p
    assert Settings().http_host == "127.0.0.1"  # ... while make run stays on the workstation
    (user,) = [line.split()[1] for line in lines if line.startswith("USER ")]
    uid = user.split(":")[0]
    built = lines.index(next(line for line in lines if "supportbot train" in line))
    assert lines.index(f"USER {user}") > built
    # the default SQLite database (./var/supportbot.db under WORKDIR /app) must be writable by that user
    assert Settings().database_url.endswith("///./var/supportbot.db") and "WORKDIR /app" in lines
    assert re.search(rf"chown (-R )?{uid}(:\d+)? (/app/)?var\b", lines[built])


def test_the_build_context_leaves_out_databases_secrets_and_the_virtualenv() -> None:
    root = DEPLOY.parent
    ignored = {line.strip() for line in (root / ".dockerignore").read_text().splitlines()}
    assert {".venv", "var", ".env", ".git"} <= ignored
    copied = {line.split()[1] for line in _dockerfile() if line.startswith("COPY ")}
    copied |= {part for line in _dockerfile() if line.startswith("COPY ") for part in line.split()[1:-1]}
    assert copied and not copied & ignored and all((root / path).exists() for path in copied)


def test_deploy_files_set_only_settings_that_exist() -> None:
    """A misspelt SUPPORTBOT_ variable is ignored silently (extra="ignore"): the deploy files name real ones."""
    known = {f"SUPPORTBOT_{name.upper()}" for name in Settings.model_fields}
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    named = {name for service in compose["services"].values() for name in service.get("environment", {})}
    named |= {env["name"] for c in _containers().values() for env in c.get("env", [])}
    named |= set(re.findall(r"\b(SUPPORTBOT_[A-Z_]+)=", (DEPLOY / "Dockerfile").read_text()))
    assert named and {n for n in named if n.startswith("SUPPORTBOT_")} <= known


async def test_web_chat_deletion_with_a_dead_database_says_it_failed(settings: Settings) -> None:
    """Not a text/plain 500 the page cannot read: a JSON 503 whose error the page shows, and the session cookie
    kept, so that trying again deletes the same person's data."""
    service = await start(settings)
    working = service.dialogue.db
    try:
        async with TestClient(TestServer(create_app(service))) as client:
            await client.post("/chat/message", json={"text": "hello", "id": "m1"})
            service.dialogue.db = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none")
            for path, words in (("/chat/forget", "Could not delete"), ("/chat/reset", "Could not start over")):
                failed = await client.post(path)
                assert failed.status == 503 and failed.content_type == "application/json"
                error = (await failed.json())["error"]
                assert error.startswith(words) and "try again" in error
                assert "Set-Cookie" not in failed.headers
            await service.dialogue.db.dispose()
            service.dialogue.db = working
            forgotten = await client.post("/chat/forget")  # the same session, once the database is back
            assert (await forgotten.json())["deleted"] is True
    finally:
        service.dialogue.db = working
        await service.close()


async def test_terminal_chat_conversation_survives_a_restart(settings: Settings) -> None:
    output: list[str] = []
    first = await start(settings)
    chat = TerminalChat(first.dialogue, user="olga", write=output.append)
    for line in ["/persona coach", "my name is Olga", "/persona"]:
        assert await chat.handle_line(line)
    assert not await chat.handle_line("/quit")
    await first.close()

    second = await start(settings)
    backend = second.dialogue.backend
    chat = TerminalChat(second.dialogue, user="olga", write=output.append)
    await chat.handle_line("do you remember me?")
    prompt = [(m.role, m.content) for m in backend.calls[-1]]  # type: ignore[union-attr]
    assert ("user", "my name is Olga") in prompt and ("assistant", "echo: my name is Olga") in prompt
    assert ("system", "i speak slowly and simply.") in prompt  # the coach persona is remembered too
    await chat.handle_line("/forget")
    await chat.handle_line("anyone?")
    assert [m.content for m in backend.calls[-1] if m.role != "system"] == ["anyone?"]  # type: ignore[union-attr]
    assert output[-1] == "bot> echo: anyone?"
    await second.close()


async def test_message_text_is_encrypted_at_rest_with_a_key(settings: Settings) -> None:
    service = await start(settings.model_copy(update={"encryption_key": "correct horse battery staple"}))
    try:
        result = await service.dialogue.handle(Incoming("t", "u", "my secret"))
        async with service.db.transaction() as session:
            raw = (
                await session.execute(text("SELECT text FROM messages WHERE id = :i"), {"i": result.message_id})
            ).scalar()
        assert raw.startswith("enc:v1:") and "secret" not in raw
        assert result.reply == "echo: my secret"
    finally:
        await service.close()
        crypto.configure(None)


async def test_malformed_crisis_data_stops_start_up_with_one_line(settings: Settings, monkeypatch, tmp_path) -> None:
    from bot.crisis import lexicon

    broken = tmp_path / "lexicon"
    broken.mkdir()
    (broken / "en.yaml").write_text("version: 1\nrules:\n  - id: x\n    level: nonsense\n")
    monkeypatch.setattr(lexicon, "DEFAULT_DIR", broken)
    with pytest.raises(StartupError) as caught:
        await Service.start(settings, backend=EchoBackend())
    assert str(caught.value).startswith("crisis layer data cannot be loaded:") and "\n" not in str(caught.value)


def test_start_up_names_what_a_person_at_risk_would_miss(settings: Settings) -> None:
    bare = settings.model_copy(update={"telegram_token": None, "operator_chat_id": None})
    assert len(safety_gaps(bare)) == 1 and "no person sees them" in safety_gaps(bare)[0]
    assert safety_gaps(bare.model_copy(update={"operator_token": "t" * 16})) == []  # the console
    phone = bare.model_copy(update={"twilio_account_sid": "AC" + "0" * 32, "twilio_auth_token": "t"})
    assert any("not transferred" in gap for gap in safety_gaps(phone))
    staffed = phone.model_copy(
        update={"telegram_token": "123:" + "a" * 35, "operator_chat_id": -100, "hotline_number": "+380800500335"}
    )
    assert safety_gaps(staffed) == []


async def test_a_database_refuses_a_key_other_than_the_one_it_was_written_with(settings: Settings) -> None:
    keyed = settings.model_copy(update={"encryption_key": "correct horse battery staple"})
    try:
        await (await start(keyed)).close()
        for other in ("another passphrase", None):
            with pytest.raises(StartupError, match="not the key this database was written with"):
                await start(settings.model_copy(update={"encryption_key": other}))
        await (await start(keyed)).close()
    finally:
        crypto.configure(None)

"""The operator console's page, its script run in Node.js against a stand-in document and the real
server: an operator signs in, sees the escalation, opens the person's messages, takes over and writes."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from importlib import resources

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from bot.app import create_app
from bot.dialogue import Incoming
from bot.service import Service
from bot.settings import Settings
from db.models import Conversation
from tests.doubles import EchoBackend, KeywordSafety

NODE = shutil.which("node")
TOKEN = "a-long-team-token-0123"

# Just the document the script uses; fetch goes to the server, keeping the session cookie as a browser would.
HARNESS = r"""
const vm = require("vm");
const [script, base, token] = process.argv.slice(1);
const elements = {}, buttons = {};
function element(id) {
  const e = {
    id, value: "", textContent: "", hidden: false, className: "", dataset: {}, rows: [], cells: [], children: [],
    addEventListener(kind, fn) { this["on" + kind] = fn; },
    insertRow() { const row = element(); this.rows.push(row); return row; },
    insertCell() { const cell = element(); this.cells.push(cell); return cell; },
    appendChild(child) { this.children.push(child); }, append(...kids) { this.children.push(...kids); },
  };
  Object.defineProperty(e, "textContent", {
    get() { return e._text || ""; }, set(v) { e._text = String(v); e.rows = []; e.children = []; },
  });
  return e;
}
for (const action of ["take", "release", "ack", "resolve"]) {
  buttons[action] = Object.assign(element(), {dataset: {action}});
}
let cookie = "", tick = null;
const notes = [];
class Notification {
  constructor(title, options) { notes.push([title, options.body]); }
}
Notification.permission = "granted";
const context = {
  window: {addEventListener() {}},
  Notification,
  document: {
    title: "supportbot · operators",
    getElementById: (id) => (elements[id] = elements[id] || element(id)),
    createElement: () => element(),
    querySelectorAll: () => Object.values(buttons),
  },
  fetch: async (path, options) => {
    options.headers = Object.assign({}, options.headers, cookie ? {Cookie: cookie} : {});
    const response = await fetch(base + path, options);
    const set = response.headers.get("set-cookie");
    if (set) cookie = set.split(";")[0];
    return response;
  },
  setInterval: (fn) => { tick = fn; return 0; }, Date, JSON, Object, Error, console,
};
vm.runInNewContext(script, context);
const el = (id) => context.document.getElementById(id);
const settle = () => new Promise((done) => setTimeout(done, 300));
const text = (e) => e.textContent + e.children.map(text).join("|") + e.cells.map(text).join("|");
(async () => {
  await settle();
  const state = {signedInAtFirst: !el("console").hidden};
  el("name").value = "Anna"; el("token").value = token;
  await el("signin").onsubmit({preventDefault() {}}); await settle();
  state.rows = el("escalations").rows.map(text);
  el("escalations").rows[0].onclick(); await settle();
  state.messages = el("messages").children.map(text);
  await buttons.take.onclick(); await settle();
  el("words").value = "I'm Anna from the team. I'm here.";
  await el("say").onsubmit({preventDefault() {}}); await settle();
  state.left = el("words").value; state.notice = el("notice").textContent;
  state.rowsAfter = el("escalations").rows.map(text);
  state.titleBefore = context.document.title;
  // Someone else writes to the web chat, at risk; the console's next poll announces it.
  const headers = {"Content-Type": "application/json"};
  await fetch(base + "/chat/message", {method: "POST", headers, body: JSON.stringify({text: "CRISIS now", id: "w1"})});
  tick(); await settle();
  state.titleAfter = context.document.title; state.notes = notes;
  console.log(JSON.stringify(state));
})();
"""

pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js runs the page's script")


async def test_an_operator_signs_in_opens_a_crisis_and_takes_over_from_the_page(settings: Settings) -> None:
    configured = settings.model_copy(update={"operator_token": TOKEN})
    service = await Service.start(configured, backend=EchoBackend(), safety=KeywordSafety())
    reached: list[tuple[str, str]] = []

    async def send(external_id: str, words: str) -> None:
        reached.append((external_id, words))

    service.handoff.register_sender("test", send)
    server = TestServer(create_app(service))
    await server.start_server()
    try:
        await service.dialogue.handle(Incoming("test", "u", "CRISIS <b>tonight</b>"))
        page = resources.files("bot.channels.static").joinpath("operator.html").read_text(encoding="utf-8")
        (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
        node = await asyncio.create_subprocess_exec(
            NODE, "-e", HARNESS, script, str(server.make_url("")).rstrip("/"), TOKEN, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(node.communicate(), timeout=60)
        state = json.loads(out)
        async with service.db.transaction() as session:
            conversation = await session.scalar(select(Conversation))
    finally:
        await server.close()
        await service.close()

    assert state["signedInAtFirst"] is False
    (row,) = state["rows"]
    assert row.startswith("crisis") and f"#conv{conversation.id}" in row and "open" in row
    assert any("CRISIS <b>tonight</b>" in message for message in state["messages"])  # as text, never markup
    assert conversation.operator == "console:Anna"
    assert reached[-1] == ("u", "I'm Anna from the team. I'm here.")
    assert state["left"] == "" and state["notice"] == ""
    assert "console:Anna" in state["rowsAfter"][0]  # shown as holding the person
    assert state["titleBefore"] == "supportbot · operators"
    assert state["titleAfter"] == "(1 new) supportbot · operators"
    assert state["notes"] == [["supportbot", "1 new escalation waiting"]]  # none of the person's words

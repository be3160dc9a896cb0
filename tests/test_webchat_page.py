"""The web chat page's script, run in Node.js against a stand-in page: it must send every message
with an id, also where the browser hides `crypto.randomUUID` (plain HTTP on a LAN address, as the
compose file serves it), a message that could not be sent goes back in the box, not lost, and a deletion or
"start over" that failed says so instead of nothing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources

import pytest

NODE = shutil.which("node")

# A document with just the elements the script uses; `fetch` answers from REPLY, or fails when it is null.
HARNESS = r"""
const vm = require("vm");
const [script, replyJson, secureFlag, action] = process.argv.slice(1);
const [reply, secure] = [JSON.parse(replyJson), secureFlag === "1"];
const handlers = {}, shown = [], sent = [];
function element(id) {
  let text = "";
  return {
    id, value: "", scrollTop: 0, scrollHeight: 0,
    get textContent() { return text; },
    set textContent(value) { text = value; if (value === "") shown.push(["cleared", id]); },
    addEventListener: (kind, fn) => { handlers[id + ":" + kind] = fn; },
    appendChild: (child) => shown.push([child.className, child.textContent]),
  };
}
const elements = {};
const webcrypto = require("crypto").webcrypto;
const context = {
  document: {
    getElementById: (id) => (elements[id] = elements[id] || element(id)),
    createElement: () => ({className: "", textContent: ""}),
  },
  crypto: secure ? webcrypto : {getRandomValues: (a) => webcrypto.getRandomValues(a)},
  fetch: async (path, options) => {
    sent.push([path, JSON.parse(options.body)]);
    if (reply === null || (action === "retry" && sent.length === 1)) throw new TypeError("Failed to fetch");
    return {json: async () => reply};
  },
  confirm: () => true, Array, Uint8Array, JSON, TypeError,
};
vm.runInNewContext(script, context);
elements.text.value = "I can't sleep again";
// "submit" sends the text in the box, "retry" sends it again after the first try got no answer;
// "reset" and "forget" click those buttons
const submit = () => handlers["form:submit"]({preventDefault() {}});
const done = action === "submit" ? submit() : action === "retry" ? submit().then(submit) : elements[action].onclick();
Promise.resolve(done).then(() => {
  console.log(JSON.stringify({sent, shown, left: elements.text.value}));
});
"""


def run_page(reply: dict | None, *, secure: bool, action: str = "submit") -> dict:
    page = resources.files("bot.channels.static").joinpath("webchat.html").read_text(encoding="utf-8")
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    done = subprocess.run(
        [NODE, "-e", HARNESS, script, json.dumps(reply), "1" if secure else "0", action],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(done.stdout)


pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js runs the page's script")


@pytest.mark.parametrize("secure", [True, False], ids=["https-or-localhost", "plain-http"])
def test_every_message_goes_out_with_an_id(secure: bool) -> None:
    result = run_page({"reply": "I'm here with you.", "outcome": "model"}, secure=secure)
    ((path, body),) = result["sent"]
    assert path == "/chat/message" and body["text"] == "I can't sleep again"
    assert re.fullmatch(r"[0-9a-f-]{32,36}", body["id"])
    assert result["shown"] == [["msg user", "I can't sleep again"], ["msg bot", "I'm here with you."]]


def test_a_message_that_could_not_be_sent_goes_back_in_the_box() -> None:
    result = run_page(None, secure=False)
    assert result["left"] == "I can't sleep again"
    assert "may not have reached us" in result["shown"][-1][1]


def test_sending_it_again_reuses_its_id_so_it_is_not_stored_twice() -> None:
    """The first try may have reached the server even though its answer was lost."""
    result = run_page({"reply": "I'm here.", "outcome": "model"}, secure=False, action="retry")
    (first, second) = [body for _, body in result["sent"]]
    assert first == second and result["shown"][-1] == ["msg bot", "I'm here."] and result["left"] == ""


def test_a_refused_message_says_why() -> None:
    result = run_page({"error": "'text' must be a string"}, secure=True)
    assert result["shown"][-1] == ["msg bot", "'text' must be a string"]


def test_deleting_shows_it_was_deleted_only_when_it_was() -> None:
    result = run_page({"deleted": True}, secure=True, action="forget")
    assert result["sent"] == [["/chat/forget", {}]]
    assert result["shown"] == [["cleared", "log"], ["msg bot", "Your data has been deleted."]]


@pytest.mark.parametrize("action", ["forget", "reset"])
def test_a_deletion_or_reset_the_server_could_not_do_says_so(action: str) -> None:
    """The server's 503 (its database down) names what failed; the conversation stays on the page."""
    error = "Could not delete your data: the service cannot reach its records right now. Please try again."
    result = run_page({"error": error}, secure=True, action=action)
    assert result["shown"] == [["msg bot", error]]


@pytest.mark.parametrize("action", ["forget", "reset"])
def test_a_deletion_or_reset_that_got_no_answer_says_so(action: str) -> None:
    result = run_page(None, secure=True, action=action)
    ((kind, words),) = result["shown"]
    assert kind == "msg bot" and "Connection problem" in words and "try again" in words

"""The embedded GraphiQL in a real headless Chromium (Debian's `chromium`), driven over the DevTools
protocol as a person would use it: the page loads with every hostname but 127.0.0.1 unresolvable,
fetches the schema by itself (the docs explorer lists the root types), runs a query typed into
its editor with the keyboard, uses a token typed into its headers pane for HTTP and for the
WebSocket, and shows a subscription's event live. No request leaves loopback and no JavaScript
error is raised. Screenshots go to $SCREENSHOT_DIR (default target/interop/screenshots).
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest
from websockets.sync.client import connect

from conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = os.environ.get("SCREENSHOT_DIR", os.path.join(ROOT, "target", "interop", "screenshots"))
#: Upper bound on waiting for something on the page; the test never asserts speed.
WAIT_S = 30

pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="no chromium here")


class Page:
    """One tab over the DevTools protocol, with every event kept for later checks."""

    def __init__(self, ws_url):
        self.ws = connect(ws_url, max_size=64 * 1024 * 1024)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=WAIT_S))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def js(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return r.get("result", {}).get("value")

    def wait_for(self, expression, what):
        deadline = time.time() + WAIT_S
        while time.time() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.2)
        self.screenshot("failure")
        raise AssertionError(f"timed out waiting for {what}")

    def click(self, selector, text=None):
        """Clicks, as a mouse does, the first element matching `selector` (whose text is `text`)."""
        find = f"[...document.querySelectorAll({json.dumps(selector)})]"
        if text is not None:
            find += f".filter(e => e.innerText.trim() === {json.dumps(text)})"
        rect = self.wait_for(
            f"(() => {{ const e = {find}[0]; if (!e) return null;"
            " const r = e.getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + Math.min(r.height / 2, 20)}; })()",
            f"{selector} {text or ''}",
        )
        for kind in ["mousePressed", "mouseReleased"]:
            self.call("Input.dispatchMouseEvent", type=kind, x=rect["x"], y=rect["y"], button="left", clickCount=1)

    def key(self, key, code, vk, modifiers=0):
        for kind in ["rawKeyDown", "keyUp"]:
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=code, windowsVirtualKeyCode=vk,
                      modifiers=modifiers)

    def type_into(self, selector, text):
        """Clicks into an editor, selects everything, deletes it, then types `text`."""
        self.click(selector)
        self.key("a", "KeyA", 65, modifiers=2)  # Ctrl+A
        self.key("Backspace", "Backspace", 8)
        self.call("Input.insertText", text=text)
        # A person pauses before running; GraphiQL re-parses the document (and so learns its
        # operation name) a moment after the last keystroke.
        time.sleep(0.8)

    def screenshot(self, name):
        # The pointer off the editors, so no hover tooltip covers what the picture is for.
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=1390, y=20)
        os.makedirs(SHOTS, exist_ok=True)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path = os.path.join(SHOTS, f"{name}.png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path


@pytest.fixture
def browser():
    assert CHROMIUM, "chromium is required in CI (.ci/run installs Debian's chromium)"
    profile = tempfile.mkdtemp(prefix="raftgraph-chromium-")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         # Nothing but loopback resolves: a CDN reference would fail, and be seen failing.
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
         "--window-size=1400,900", "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stderr=subprocess.PIPE, text=True,
    )
    ws_url = None
    deadline = time.time() + WAIT_S
    while ws_url is None and time.time() < deadline:
        line = proc.stderr.readline()
        if "DevTools listening on" in line:
            ws_url = line.split("DevTools listening on", 1)[1].strip()
    assert ws_url, "chromium did not start"
    port = ws_url.split(":")[2].split("/")[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
        target = next(t for t in json.loads(r.read()) if t["type"] == "page")
    page = Page(target["webSocketDebuggerUrl"])
    yield page
    page.ws.close()
    proc.kill()
    proc.wait()
    shutil.rmtree(profile, ignore_errors=True)


def test_graphiql_offline_query_headers_and_live_subscription(cluster, browser):
    page = browser
    base = cluster.urls[0]
    for domain in ["Page", "Runtime", "Network", "Log"]:
        page.call(f"{domain}.enable")
    page.call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1, mobile=False)

    # A user with a chat to subscribe to, made over HTTP as another program would.
    token, user_id = cluster.register("browseruser")
    chat = cluster.gql(0, 'mutation { createChat(name: "Browser", participantIds: []) { id } }', token=token)
    chat_id = chat["data"]["createChat"]["id"]

    # Phase 1: the page renders and loads the schema by itself: the docs explorer lists the
    # root types, which it can only know from introspection.
    page.call("Page.navigate", url=base + "/")
    page.wait_for("!!document.querySelector('.graphiql-container .CodeMirror')", "the GraphiQL editor")
    page.click('[aria-label="Show Documentation Explorer"]')
    page.wait_for("(document.querySelector('.graphiql-doc-explorer')||{}).innerText?.includes('mutation: Mutation')",
                  "the docs explorer with the schema's root types")
    page.screenshot("graphiql-docs")

    # Phase 2: a query typed into the editor and run with Ctrl+Enter; the result shows.
    page.type_into(".graphiql-query-editor .CodeMirror", "{ cluster { nodeId term lastApplied } }")
    page.key("Enter", "Enter", 13, modifiers=2)
    page.wait_for("(document.querySelector('.graphiql-response')||{}).innerText?.includes('\"nodeId\": 1')",
                  "the query's result")
    page.screenshot("graphiql-query")

    # Phase 3: a token typed into the headers pane signs in both HTTP and the WebSocket.
    page.click(".graphiql-editor-tools button", text="Headers")
    page.type_into(".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror",
                   json.dumps({"Authorization": f"Bearer {token}"}))
    page.type_into(".graphiql-query-editor .CodeMirror", "{ viewer { id username } }")
    page.key("Enter", "Enter", 13, modifiers=2)
    page.wait_for("(document.querySelector('.graphiql-response')||{}).innerText?.includes('browseruser')",
                  "the viewer, signed in over HTTP with the header")
    subscription = f'subscription {{ chatMessages(chatId: "{chat_id}") {{ index message {{ body sender {{ username }} }} }} }}'
    page.type_into(".graphiql-query-editor .CodeMirror", subscription)
    page.key("Enter", "Enter", 13, modifiers=2)
    time.sleep(1.0)  # the subscription connects; then a message is sent through another node
    sent = cluster.gql(2, 'mutation($c: ID!) { sendMessage(chatId: $c, body: "hello from node 3", clientMessageId: "browser-1") { id } }',
                       {"c": chat_id}, token=token)
    assert "errors" not in sent, sent
    page.wait_for("(document.querySelector('.graphiql-response')||{}).innerText?.includes('hello from node 3')",
                  "the subscription's live event")
    page.screenshot("graphiql-subscription")

    # Nothing left loopback, nothing failed, no script error.
    own = base.replace("http://", "")
    urls = [e["params"]["request"]["url"] for e in page.events if e.get("method") == "Network.requestWillBeSent"]
    assert urls, "requests were recorded"
    foreign = [u for u in urls if not (u.startswith(f"http://{own}/") or u.startswith(f"ws://{own}/") or u.startswith("data:"))]
    assert not foreign, f"requests left the node: {foreign}"
    failed = [e["params"] for e in page.events if e.get("method") == "Network.loadingFailed"
              and not e["params"].get("canceled")]
    assert not failed, failed
    exceptions = [e["params"]["exceptionDetails"] for e in page.events if e.get("method") == "Runtime.exceptionThrown"]
    assert not exceptions, exceptions
    errors = [e["params"] for e in page.events
              if e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error"]
    assert not errors, errors

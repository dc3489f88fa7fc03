"""The web client's bench (issue 16): not a test, a measurement on the real stack in Chromium.

    make bench-web            # or: .venv/bin/pytest bench/web_bench.py -q -s

- time from pressing Enter in browser A to the text shown in browser B: p50/p95 over
  MCHAT_WEB_BENCH_MESSAGES (60) messages, read from both pages' clocks
  (performance.timeOrigin + performance.now(): one machine, one clock);
- first load of the app to an interactive conversation list with 200 conversations
  (navigation start to the `mchat-list-interactive` mark, set after the list is rendered);
- a streamed reply (issue 17) shown in the browser: time from the streamer's
  `msg.stream_append` to the text shown in the recipient's page (p50/p95 over
  MCHAT_WEB_BENCH_APPENDS (50) appends at 5 a second, each delivered at once), and how often the
  page re-renders the stream when the streamer appends as fast as it can for 3 s (the server
  coalesces to ~10 deliveries a second);
- the bundle's gzipped JavaScript size.

Writes bench/web/REPORT.md and bench/web/latest.json. Goals from the issue (p50 < 30 ms on
loopback, first load < 1 s) are reported, not asserted.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction

from mchat_sdk import Client
from org import services
from tests.live import live, live_broker  # noqa: F401 (fixtures)
from tests.web.conftest import web_stack  # noqa: F401 (fixture)
from tests.web.test_browser_chat import CHROMIUM, CHROMIUM_ARGS, PASSWORD, bubble, sign_in

pytestmark = [
    pytest.mark.broker,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(900),
]

OUT = Path(__file__).with_name("web")
MESSAGES = int(os.environ.get("MCHAT_WEB_BENCH_MESSAGES", "60"))
CONVERSATIONS = 200
APPENDS = int(os.environ.get("MCHAT_WEB_BENCH_APPENDS", "50"))
BURST_SECONDS = 3.0

RECORD_ENTER = """() => {
  window.__benchSent = [];
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) window.__benchSent.push([e.target.value, performance.timeOrigin + performance.now()]);
  }, true);
}"""
RECORD_SHOWN = """() => {
  window.__benchShown = {};
  new MutationObserver((records) => {
    const now = performance.timeOrigin + performance.now();
    for (const r of records) for (const n of r.addedNodes) {
      if (!(n instanceof HTMLElement)) continue;
      for (const el of [n, ...n.querySelectorAll('.message-text')]) {
        if (el.classList && el.classList.contains('message-text') && !(el.textContent in window.__benchShown)) window.__benchShown[el.textContent] = now;
      }
    }
  }).observe(document.body, {childList: true, subtree: true});
  // When the client library hands the message out (after the page's own dispatcher saw it).
  window.__benchDelivered = {};
  window.mchat.client.on('message', (e) => {
    const text = e.message.content;
    if (typeof text === 'string' && !(text in window.__benchDelivered)) window.__benchDelivered[text] = performance.timeOrigin + performance.now();
  });
}"""


RECORD_STREAM = """() => {
  window.__benchStream = [];
  const list = document.querySelector('[data-testid=messages]');
  new MutationObserver(() => {
    const el = document.querySelector('[data-streaming=true] .message-text');
    const n = el ? el.textContent.length : -1;
    const last = window.__benchStream[window.__benchStream.length - 1];
    if (n >= 0 && (!last || last[0] !== n)) window.__benchStream.push([n, performance.timeOrigin + performance.now()]);
  }).observe(list, {childList: true, subtree: true, characterData: true});
}"""


LOAD_TIMELINE = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const out = {
    'html-response-start': nav.responseStart,
    'html-response-end': nav.responseEnd,
    'dom-interactive': nav.domInteractive,
  };
  const js = performance.getEntriesByType('resource').filter((r) => r.name.endsWith('.js'));
  if (js.length) out['js-response-end'] = Math.max(...js.map((r) => r.responseEnd));
  for (const m of performance.getEntriesByType('mark')) {
    if (m.name.startsWith('mchat-')) out[m.name.slice(6)] = m.startTime;
  }
  return out;
}"""


PAGE_LIST_TIMES = """async () => {
  const out = {};
  for (const limit of [10, 15, 18, 21, 25, 50, 100]) {
    const runs = [];
    let bytes = 0;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const res = await window.mchat.client.conversationList({limit});
      runs.push(performance.now() - t0);
      bytes = JSON.stringify(res).length;
    }
    runs.sort((a, b) => a - b);
    out[`limit ${limit} (${Math.round(bytes / 1024)} KiB)`] = Math.round(runs[1] * 10) / 10;
  }
  return out;
}"""


def timeline_median(timelines: list[dict]) -> dict[str, float]:
    """Per point of a first load, its median time since navigation start, in time order."""
    names = set().union(*timelines)
    med = {n: statistics.median([t[n] for t in timelines if n in t]) for n in names}
    return {n: round(v, 1) for n, v in sorted(med.items(), key=lambda kv: kv[1])}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def bundle_size() -> str:
    out = subprocess.run(
        ["node", "scripts/report-size.mjs"],
        cwd=Path(settings.BASE_DIR) / "web",
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr.strip()


def stream_bench(page, streamer: Client, recipient_id: str) -> dict:
    """Streams from `streamer` to the person whose page is open on that conversation."""
    from playwright.sync_api import expect

    pace = threading.Event()  # never set: waits below are the streamer's own pace
    page.evaluate(RECORD_STREAM)
    msg_id = streamer.stream_start(f"private:{recipient_id}")["msg_id"]
    expect(page.locator("[data-streaming=true]")).to_have_count(1, timeout=60_000)
    sent = []  # (text length after the append, time before it, ms since the epoch)
    for i in range(APPENDS):
        piece = f"[{i:03d}]"
        t0 = time.time() * 1000
        sent.append((streamer.stream_append(msg_id, piece)["length"], t0))
        pace.wait(0.2)
    expect(page.locator("[data-streaming=true] .message-text")).to_have_text(
        "".join(f"[{i:03d}]" for i in range(APPENDS)), timeout=60_000
    )
    shown = page.evaluate("window.__benchStream")
    latencies = []
    for length, t0 in sent:
        first = next((t for n, t in shown if n >= length), None)
        if first is not None:
            latencies.append(first - t0)
    streamer.stream_end(msg_id)
    expect(page.locator("[data-streaming=true]")).to_have_count(0, timeout=60_000)

    page.evaluate(RECORD_STREAM)
    msg_id = streamer.stream_start(f"private:{recipient_id}")["msg_id"]
    expect(page.locator("[data-streaming=true]")).to_have_count(1, timeout=60_000)
    appends = 0
    started = time.monotonic()
    while time.monotonic() - started < BURST_SECONDS:
        streamer.stream_append(msg_id, "字")
        appends += 1
        pace.wait(0.01)
    elapsed = time.monotonic() - started
    expect(page.locator("[data-streaming=true] .message-text")).to_have_text("字" * appends, timeout=60_000)
    renders = len(page.evaluate("window.__benchStream"))
    streamer.stream_end(msg_id)
    expect(page.locator("[data-streaming=true]")).to_have_count(0, timeout=60_000)
    return {
        "appends": len(latencies),
        "append_to_shown_p50_ms": round(percentile(latencies, 0.5), 1),
        "append_to_shown_p95_ms": round(percentile(latencies, 0.95), 1),
        "append_to_shown_max_ms": round(max(latencies), 1),
        "burst_appends": appends,
        "burst_appends_per_s": round(appends / elapsed, 1),
        "burst_renders": renders,
        "burst_renders_per_s": round(renders / elapsed, 1),
        "burst_final_complete": True,
    }


def test_web_bench(web_stack):  # noqa: F811
    alice = web_stack.make_employee(name="王小丽", web_password=PASSWORD)
    bob = web_stack.make_employee(name="赵大勇", web_password=PASSWORD)
    carol = web_stack.make_employee(name="陈晓", web_password=PASSWORD)
    with transaction.atomic():  # one broker-file sync for all of them, after the commit
        peers = [
            services.employee_create(actor=None, name=f"同事{i:03d}").employee
            for i in range(CONVERSATIONS - 1)
        ]
    login = {
        "broker_host": "127.0.0.1",
        "broker_port": web_stack.live.port,
        "use_tls": False,
        "mqtt_username": carol.employee_id,
        "mqtt_password": web_stack.mqtt_passwords[carol.employee_id],
    }
    # Carol has 200 conversations: 199 colleagues and bob.
    with Client(login, device=f"seed-{secrets.token_hex(4)}", track_groups=False) as seed:
        for i, peer in enumerate([*peers, bob]):
            seed.request("msg.send_private", to_employee_id=peer.employee_id, content=f"第 {i} 条", retries=3)
        # The same first page from a Python client (no browser): the stack's share of the load.
        sdk_list = []
        for _ in range(5):
            t0 = time.perf_counter()
            seed.request("conversation.list", limit=100)
            sdk_list.append((time.perf_counter() - t0) * 1000)
    bob_login = {
        **login,
        "mqtt_username": bob.employee_id,
        "mqtt_password": web_stack.mqtt_passwords[bob.employee_id],
    }
    base = web_stack.base_url
    results: dict = {
        "load_average_1min_at_start": round(os.getloadavg()[0], 1),
        "sdk_conversation_list_ms": {
            "runs": [round(x, 1) for x in sdk_list],
            "median": round(statistics.median(sdk_list), 1),
        },
    }

    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # First load with 200 conversations (signed in; a fresh page load, warm server).
            c_ctx, c = sign_in(browser, base, carol.employee_id, "/")
            loads = []
            timelines = []
            for _ in range(5):
                c.goto(f"{base}/")
                expect(c.locator("[data-testid=conversation]")).to_have_count(CONVERSATIONS, timeout=60_000)
                timelines.append(c.evaluate(LOAD_TIMELINE))
                loads.append(timelines[-1]["list-interactive"])
            # The same request from the page, small and large answers: the WebSockets leg's share.
            results["page_conversation_list_ms"] = c.evaluate(PAGE_LIST_TIMES)
            results["first_load_ms"] = {
                "runs": [round(x, 1) for x in loads],
                "median": round(statistics.median(loads), 1),
                "timeline_median": timeline_median(timelines),
            }
            c_ctx.close()

            # Enter in A -> text in B.
            a_ctx, a = sign_in(browser, base, alice.employee_id, f"/c/private/{bob.employee_id}")
            b_ctx, b = sign_in(browser, base, bob.employee_id, f"/c/private/{alice.employee_id}")
            a.evaluate(RECORD_ENTER)
            b.evaluate(RECORD_SHOWN)
            for i in range(MESSAGES):
                text = f"bench-{i:03d}-{time.time_ns()}"
                a.fill("[data-testid=composer]", text)
                a.press("[data-testid=composer]", "Enter")
                expect(bubble(b, text)).to_be_visible(timeout=60_000)
            sent = dict(a.evaluate("window.__benchSent"))
            shown = b.evaluate("window.__benchShown")
            delivered = b.evaluate("window.__benchDelivered")
            latencies = [shown[t] - t0 for t, t0 in sent.items() if t in shown]
            to_b = [delivered[t] - t0 for t, t0 in sent.items() if t in delivered]
            render = [shown[t] - delivered[t] for t in sent if t in delivered and t in shown]
            results["enter_to_shown_ms"] = {
                "messages": len(latencies),
                "p50": round(percentile(latencies, 0.5), 1),
                "p95": round(percentile(latencies, 0.95), 1),
                "max": round(max(latencies), 1),
                "enter_to_delivered_in_b_p50": round(percentile(to_b, 0.5), 1),
                "enter_to_delivered_in_b_p95": round(percentile(to_b, 0.95), 1),
                "delivered_to_shown_in_b_p50": round(percentile(render, 0.5), 1),
                "delivered_to_shown_in_b_p95": round(percentile(render, 0.95), 1),
            }
            b_ctx.close()
            with Client(bob_login, device=f"stream-{secrets.token_hex(4)}", track_groups=False) as streamer:
                results["stream"] = stream_bench(a, streamer, alice.employee_id)
            a_ctx.close()
        finally:
            browser.close()
    results["bundle"] = bundle_size()
    results["when"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results["database"] = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    results["load_average_1min_at_end"] = round(os.getloadavg()[0], 1)
    OUT.mkdir(exist_ok=True)
    (OUT / "latest.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    e = results["enter_to_shown_ms"]
    timeline_rows = "\n".join(
        f"| {k} | {v} |" for k, v in results["first_load_ms"]["timeline_median"].items()
    )
    f = results["first_load_ms"]
    st = results["stream"]
    (OUT / "REPORT.md").write_text(
        f"""# Web client bench

Run {results["when"]} on this machine ({os.cpu_count()} CPUs, shared; 1-minute load average
{results["load_average_1min_at_start"]} at the start and {results["load_average_1min_at_end"]} at the end of the run), {results["database"]},
the real stack of the browser tests (Mosquitto with its WebSockets listener and the plugin, one
bridge thread, Django's threaded test server), headless Debian Chromium. `make bench-web` reruns
it.

| measure | result | goal (issue 16) |
|---|---|---|
| Enter in browser A -> text shown in browser B, {e["messages"]} messages, one at a time | p50 {e["p50"]} ms, p95 {e["p95"]} ms, max {e["max"]} ms | p50 < 30 ms |
| of which: Enter in A -> the message handed out by B's client library / then -> shown in B | p50 {e["enter_to_delivered_in_b_p50"]} ms (p95 {e["enter_to_delivered_in_b_p95"]}) / p50 {e["delivered_to_shown_in_b_p50"]} ms (p95 {e["delivered_to_shown_in_b_p95"]}) | |
| first load -> interactive list of {CONVERSATIONS} conversations (navigation start to the list's first render), 5 loads | median {f["median"]} ms (runs {", ".join(str(x) for x in f["runs"])}) | < 1 s |
| first load -> the list's first page on screen | median {f["timeline_median"].get("list-first-page")} ms | |
| `conversation.list` limit 100 (first page, ~40 KiB): Python SDK over TCP vs the page over WebSockets | SDK median {results["sdk_conversation_list_ms"]["median"]} ms; page: {", ".join(f"{k}: {v} ms" for k, v in results["page_conversation_list_ms"].items())} | |
| a stream's append (`msg.stream_append` from an SDK client) -> the text shown in the recipient's page, {st["appends"]} appends at 5/s | p50 {st["append_to_shown_p50_ms"]} ms, p95 {st["append_to_shown_p95_ms"]} ms, max {st["append_to_shown_max_ms"]} ms | (issue 17: p50 < 50 ms at the members) |
| appends as fast as one SDK client makes them for {BURST_SECONDS:g} s -> the stream's re-renders in the page | {st["burst_appends"]} appends ({st["burst_appends_per_s"]}/s), {st["burst_renders"]} renders ({st["burst_renders_per_s"]}/s), final text complete: {st["burst_final_complete"]} | ≤ ~10 deliveries/s |
| bundle | {results["bundle"]} | < 250 KiB |

First load, where the time goes (median over the 5 loads of each point's time since navigation
start; `list-N-request/response` are the `conversation.list` pages, `org-*` the `org.tree`
request; marks set by the page, see web/src/client/marks.ts):

| point | ms |
|---|---|
{timeline_rows}

What the breakdown says (issue 16's brief: where a first load spends its time):

- **Structural, fixed:** the WebSockets leg of Debian's Mosquitto 2.0 sends a message larger
  than one 8 KiB write of libwebsockets in pieces, one per turn of the broker's event loop,
  ~100 ms apart (measured here; upstream: eclipse-mosquitto/mosquitto issue #1390). The
  `conversation.list` row above shows it: the same request answers in ~20 ms to the Python SDK
  over TCP and at 7 KiB to the page, and takes ~120 ms at 9 KiB and ~1 s at 40 KiB (100
  conversations) in the page. The page asked for two pages of 100 (2 x ~1 s) and the list
  waited for both; `org.tree` (every employee: tens of KiB, also in pieces) went out at the
  same time and the one bridge thread answered it between the two pages. Now the page asks for
  pages under 7 KB (the first one 15 conversations, a screenful; then as many as fit, judged by
  the page before), shows each as it comes, and asks `org.tree` after the list.
- **Structural, fixed:** the store rendered on the next animation frame even for a single
  change (up to 16 ms on every delivery), and a send's pending bubble was rendered before the
  request was published. A change after a quiet spell now renders in the same task; a burst
  still renders once per frame; a send is published first.
- **Left as it is:** the HTML and bundle (~150-200 ms to the script's start, warm cache), the
  credential POST (Django, ~100-150 ms on this loaded machine), the WebSockets connection and
  CONNACK with the plugin's token check (~120-180 ms) are serial by nature (the connection
  needs the credential); they are mostly CPU starvation here (load average above). What is
  left of Enter -> shown is the bridge and broker (`enter_to_delivered`); B's render is ~5 ms.
  A's `conversation.typing` (sent when the bench fills the text, just before Enter) is queued
  in the one bridge thread ahead of the send. A page of `msg.history` (30 messages) or
  `org.tree` over 8 KiB still pays the broker's ~100 ms per extra piece: a broker-side fix (a
  Mosquitto whose WebSockets listener writes a message at once) removes it for every size.

Enter-to-shown is read from the two pages' clocks (`performance.timeOrigin + performance.now()`,
one machine): the keydown in A, and B's MutationObserver seeing the text node. It includes A's
publish over WebSockets, the bridge storing the message, the delivery to B and B's render.
Like a person's page, A also sends `conversation.typing` when the text is filled in (issue 17).
Append-to-shown compares the bench process's clock (`time.time()` just before the append
request) with the page's (`performance.timeOrigin + performance.now()` when a MutationObserver
sees the streaming bubble's text reach that length); both read the one system clock.
"""
    )
    print(json.dumps(results, ensure_ascii=False, indent=2))

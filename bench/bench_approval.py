"""How much an approval on the approval page costs: the guard's added latency, and a person's time.

1. Added latency of the guard on the APPROVED call: `send_message` over the in-process sandbox,
   the call that runs after a person approved on the page (it re-reads the target, checks the
   binding and consumes the approval atomically), against the same call with KLINK_CONFIRM=off.
   Median and p95 over N calls each; the approvals themselves (first call, page GET + POST) are not
   timed.
2. A person's time, end to end, in a real browser (Debian's chromium, headless, via selenium): from
   opening the link to the page saying "Approved", scripted (so: the machine's share of the time; a
   person adds reading time). Clicks are counted from the flow: open the link, press Approve.

Usage: python bench/bench_approval.py [N]   (prints figures; asserts nothing)
"""

from __future__ import annotations

import html
import os
import re
import statistics
import sys
import tempfile
import time
from typing import Any

import anyio
import anyio.to_thread
import httpx2
from mcp import Client

from klink_mcp.config import load_settings
from klink_mcp.guard.approvals import ApprovalRecord
from klink_mcp.sandbox import SandboxTenant, SandboxTransport
from klink_mcp.server import build_server

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _server(confirm: str) -> Any:
    settings = load_settings(env={}, events_db=":memory:", confirm=confirm)
    return build_server(settings, transport=SandboxTransport(SandboxTenant.seeded(), token="sandbox-token"))


def _stats(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"median {statistics.median(samples):7.3f} ms   p95 {p95:7.3f} ms   (n={len(samples)})"


async def _approve(http: httpx2.AsyncClient, url: str) -> None:
    page = await http.get(url)
    found = _CSRF.search(page.text)
    assert found is not None
    origin = url.split("/approvals/")[0]
    answer = await http.post(
        url,
        data={"csrf": html.unescape(found.group(1)), "decision": "approve"},
        headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"},
    )
    assert 'data-state="approved"' in answer.text


async def guard_latency(n: int) -> None:
    off_ms: list[float] = []
    approved_ms: list[float] = []
    pending_ms: list[float] = []
    server = _server("off")
    async with Client(server, mode="legacy") as client:
        listed = await client.call_tool("list_contacts", {"page_size": 1})
        contact = listed.structured_content["items"][0]["id"]  # type: ignore[index]
        for i in range(n + 5):
            started = time.perf_counter()
            await client.call_tool("send_message", {"contact_id": contact, "message": f"off {i}"})
            if i >= 5:
                off_ms.append((time.perf_counter() - started) * 1000)

    server = _server("on")
    guard = server.klink_state.guard
    links: list[str] = []

    async def seen(record: ApprovalRecord, url: str) -> None:
        links.append(url)

    guard.on_approval_link = seen
    try:
        async with Client(server, mode="legacy") as client, httpx2.AsyncClient() as http:
            for i in range(n + 5):
                args = {"contact_id": contact, "message": f"on {i}"}
                started = time.perf_counter()
                await client.call_tool("send_message", args)  # opens the approval
                pending_ms.append((time.perf_counter() - started) * 1000)
                await _approve(http, links[-1])  # the person (not timed)
                started = time.perf_counter()
                done = await client.call_tool("send_message", args)
                elapsed = (time.perf_counter() - started) * 1000
                assert done.structured_content is not None and done.structured_content["status"] == "done"
                if i >= 5:
                    approved_ms.append(elapsed)
    finally:
        await guard.aclose()
    print("send_message, in-process sandbox, handshake era")
    print(f"  KLINK_CONFIRM=off              {_stats(off_ms)}")
    print(f"  approved call (page approval)  {_stats(approved_ms)}")
    print(f"  first call (opens approval)    {_stats(pending_ms[5:])}")
    print(
        f"  added latency (median)         {statistics.median(approved_ms) - statistics.median(off_ms):7.3f} ms"
    )


async def person_in_browser(n: int) -> None:
    if not (os.path.exists("/usr/bin/chromium") and os.path.exists("/usr/bin/chromedriver")):  # noqa: ASYNC240
        print("browser flow: SKIPPED (no /usr/bin/chromium; run .ci/install-chromium.sh)")
        return
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="klink-bench-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = await anyio.to_thread.run_sync(
        lambda: webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    )
    server = _server("on")
    guard = server.klink_state.guard
    links: list[str] = []

    async def seen(record: ApprovalRecord, url: str) -> None:
        links.append(url)

    guard.on_approval_link = seen
    clicks = 0
    seconds: list[float] = []

    def flow(url: str) -> tuple[float, int]:
        started = time.perf_counter()
        driver.get(url)  # click 1: the link the assistant showed
        driver.find_element(By.ID, "approve").click()  # click 2: Approve
        found = WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "state"))
        state = found[0].get_attribute("data-state")
        assert state == "approved", state
        return time.perf_counter() - started, 2

    try:
        async with Client(server, mode="legacy") as client:
            listed = await client.call_tool("list_contacts", {"page_size": 1})
            contact = listed.structured_content["items"][0]["id"]  # type: ignore[index]
            for i in range(n):
                args = {"contact_id": contact, "message": f"browser {i}"}
                await client.call_tool("send_message", args)
                elapsed, clicks = await anyio.to_thread.run_sync(flow, links[-1])
                seconds.append(elapsed)
                done = await client.call_tool("send_message", args)
                assert done.structured_content is not None and done.structured_content["status"] == "done"
    finally:
        await guard.aclose()
        await anyio.to_thread.run_sync(driver.quit)
    print("person in chromium (scripted: machine time from link to 'Approved')")
    print(f"  clicks: {clicks} (open the link, press Approve)")
    print(
        f"  seconds: median {statistics.median(seconds):.3f} s, max {max(seconds):.3f} s (n={len(seconds)}; "
        "first includes the browser's first page load)"
    )


async def main(n: int) -> None:
    await guard_latency(n)
    await person_in_browser(max(3, n // 20))


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 100)

"""The approval page in a REAL browser: Debian's chromium (headless) driven by its chromedriver.

No browser is downloaded: the test uses /usr/bin/chromium and /usr/bin/chromedriver (install them
with `.ci/install-chromium.sh`). Without them the tests skip loudly, and FAIL when
`KLINK_REQUIRE_REAL_SERVICES=1` (CI). The browser starts with a fresh profile in a temporary folder.

The guarded tools are the guard harness's (send_message sends `Approval.approved_text`, as the tool
layer must); what ran is counted at its upstream (`tenant.executions`). Scenarios: approve, decline,
edit-then-approve (what is sent equals the edited text), expired. `KLINK_UPDATE_SCREENSHOT=1` also
writes docs/approval-page.png (a send_message approval with an edited text and a bidi character
made visible).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from mcp import Client

from tests.guard.guard_harness import DELETE_C1, HarnessFactory, outcome_of

pytestmark = pytest.mark.anyio

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[2]
SEND = {"contact_id": "c1", "message": "Hi Alice, your refund\u202e of 20 USD is on its way."}


def _browser_missing() -> str | None:
    for program in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(program) and os.access(program, os.X_OK)):
            return f"{program} is missing (run .ci/install-chromium.sh)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is missing (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("KLINK_REQUIRE_REAL_SERVICES") == "1":
            pytest.fail(f"KLINK_REQUIRE_REAL_SERVICES=1 but {missing}")
        pytest.skip(f"REAL BROWSER TESTS SKIPPED: {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=900,1400",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def in_browser(fn: Callable[[], Any]) -> Any:
    """Selenium blocks: drive it from a worker thread so the page (on this event loop) can answer."""
    return anyio.to_thread.run_sync(fn)


def _state(driver: Any) -> str:
    """The decided state the page shows after a POST (waits, bounded, for the answer page to load)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    found = WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "state"))
    return str(found[0].get_attribute("data-state"))


def _open_and_click(driver: Any, url: str, button: str, text: str | None = None) -> tuple[str, float, str]:
    from selenium.webdriver.common.by import By

    started = time.perf_counter()
    driver.get(url)
    if text is not None:
        area = driver.find_element(By.ID, "text")
        area.clear()
        area.send_keys(text)
    driver.find_element(By.ID, button).click()
    state = _state(driver)
    return state, time.perf_counter() - started, driver.page_source


async def test_a_person_approves_in_the_browser_and_the_call_runs_once(
    make_harness: HarnessFactory, browser: Any
) -> None:
    h = make_harness()
    async with Client(h.server) as client:
        pending = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
        assert pending.approval_url is not None
        with anyio.fail_after(60):
            state, _, _ = await in_browser(lambda: _open_and_click(browser, pending.approval_url, "approve"))
        assert state == "approved" and h.tenant.executions == []
        done = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
    assert (done.status, done.channel) == ("done", "page")
    assert h.tenant.executions == [("delete_contact", {"contact_id": "c1"})]
    approved = next(line for line in h.audit_lines() if line["decision"] == "approved_on_page")
    assert "Chrome" in approved["approval"]["user_agent"]


async def test_a_person_declines_in_the_browser_and_nothing_runs(
    make_harness: HarnessFactory, browser: Any
) -> None:
    h = make_harness()
    async with Client(h.server) as client:
        pending = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
        assert pending.approval_url is not None
        with anyio.fail_after(60):
            state, _, _ = await in_browser(lambda: _open_and_click(browser, pending.approval_url, "decline"))
        assert state == "declined"
        after = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
    assert (after.status, after.reason) == ("cancelled", "declined")
    assert h.tenant.executions == []


async def test_a_person_edits_the_text_and_exactly_that_text_is_sent(
    make_harness: HarnessFactory, browser: Any
) -> None:
    h = make_harness()
    edited = "Hi Alice, your refund of 20 USD left our bank today."
    async with Client(h.server) as client:
        pending = outcome_of(await client.call_tool("send_message", SEND))
        assert pending.approval_url is not None
        with anyio.fail_after(60):
            state, _, page = await in_browser(
                lambda: _open_and_click(browser, pending.approval_url, "approve", text=edited)
            )
        assert state == "approved" and edited in page
        done = outcome_of(await client.call_tool("send_message", SEND))
    assert (done.status, done.sent_text) == ("done", edited)
    assert h.tenant.executions == [("send_message", {"contact_id": "c1", "message": edited})]


async def test_an_expired_approval_cannot_be_approved_in_the_browser(
    make_harness: HarnessFactory, browser: Any
) -> None:
    h = make_harness()
    async with Client(h.server) as client:
        pending = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
        assert pending.approval_url is not None
        url = pending.approval_url

        def open_then_wait_too_long() -> str:
            from selenium.webdriver.common.by import By

            browser.get(url)
            h.clock.advance(h.settings.approval_ttl_s + 1)  # the person left the tab open too long
            browser.find_element(By.ID, "approve").click()
            _state(browser)
            return str(browser.page_source)

        with anyio.fail_after(60):
            page = await in_browser(open_then_wait_too_long)
        assert "already decided or has expired" in page and _state(browser) == "expired"
        after = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
    assert (after.status, after.reason) == ("approval_required", "expired")
    assert h.tenant.executions == []


async def test_the_page_shows_hidden_characters_and_reads_well(
    make_harness: HarnessFactory, browser: Any, tmp_path: Path
) -> None:
    h = make_harness()
    async with Client(h.server) as client:
        pending = outcome_of(await client.call_tool("send_message", SEND))
        assert pending.approval_url is not None

        def shoot() -> tuple[str, bytes]:
            from selenium.webdriver.common.by import By

            browser.get(pending.approval_url)
            area = browser.find_element(By.ID, "text")
            area.clear()
            area.send_keys("Hi Alice,\nyour refund of 20 USD is on its way. It left our bank today.")
            return str(browser.page_source), bytes(browser.get_screenshot_as_png())

        with anyio.fail_after(60):
            page, png = await in_browser(shoot)
    assert "⟦U+202E⟧" in page and "1 invisible character removed" in page
    assert png.startswith(b"\x89PNG")
    (tmp_path / "approval-page.png").write_bytes(png)
    if os.environ.get("KLINK_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        (REPO / "docs" / "approval-page.png").write_bytes(png)
    assert h.tenant.executions == []

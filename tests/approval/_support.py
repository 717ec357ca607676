"""Shared pieces of the approval tests: a person with a (scripted) browser, and a model that replays.

`Person` does what a browser does on the approval page: GET it (keeping the cookie it sets), read the
form's CSRF value, POST the decision from the page's own origin. The browser tests
(test_browser.py) do the same with a real chromium.

`strings_in` collects every string a tool result hands to the model, so `replay_everything` can pass
each back in every argument: the "hijacked model" of the issue.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx2
from mcp import Client
from mcp.types import CallToolResult, TextContent

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_STATE = re.compile(r'data-state="([a-z]+)"')
_TEXTAREA = re.compile(r'<textarea id="text" name="text">(.*?)</textarea>', re.DOTALL)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Person:
    """Someone at a browser who opens approval links and presses the buttons."""

    def __init__(self) -> None:
        self.http = httpx2.AsyncClient(timeout=10)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def open(self, url: str) -> httpx2.Response:
        return await self.http.get(url)

    async def decide(
        self,
        url: str,
        decision: str,
        *,
        text: str | None = None,
        headers: dict[str, str] | None = None,
        csrf: str | None = None,
    ) -> httpx2.Response:
        page = await self.open(url)
        assert page.status_code == 200, page.text
        found = _CSRF.search(page.text)
        token = csrf if csrf is not None else (html.unescape(found.group(1)) if found else "")
        form = {"csrf": token, "decision": decision}
        if text is not None:
            form["text"] = text
        sent_headers = {"Origin": origin_of(url), "Sec-Fetch-Site": "same-origin"}
        sent_headers.update(headers or {})
        return await self.http.post(url, data=form, headers=sent_headers)

    async def approve(self, url: str, *, text: str | None = None) -> httpx2.Response:
        response = await self.decide(url, "approve", text=text)
        assert response.status_code == 200, response.text
        assert page_state(response.text) == "approved", response.text
        return response

    async def decline(self, url: str) -> httpx2.Response:
        response = await self.decide(url, "decline")
        assert page_state(response.text) == "declined", response.text
        return response


def page_state(page: str) -> str | None:
    found = _STATE.search(page)
    return found.group(1) if found else ("pending" if _CSRF.search(page) else None)


def editable_text(page: str) -> str | None:
    found = _TEXTAREA.search(page)
    return html.unescape(found.group(1)) if found else None


def strings_in(value: Any) -> list[str]:
    """Every string inside a tool result (text blocks, structured content, nested), deduplicated."""
    found: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, CallToolResult):
            walk([block.text for block in item.content if isinstance(block, TextContent)])
            walk(item.structured_content)
        elif isinstance(item, str):
            found.append(item)
            # Links and ids inside sentences, too.
            found.extend(re.findall(r"https?://\S+?(?=[\s\"')]|$)", item))
            found.extend(re.findall(r"[A-Za-z0-9_-]{24,}", item))
        elif isinstance(item, dict):
            for key, sub in item.items():
                walk(key)
                walk(sub)
        elif isinstance(item, list | tuple):
            for sub in item:
                walk(sub)

    walk(value)
    return list(dict.fromkeys(s for s in found if s))


async def replay_everything(
    client: Client, tool: str, args: dict[str, Any], given: Iterable[str], string_args: Iterable[str]
) -> list[CallToolResult]:
    """Call `tool` again with every given string in every string argument (and as confirmation_token)."""
    results = []
    for text in given:
        results.append(await client.call_tool(tool, {**args, "confirmation_token": text}))
        for name in string_args:
            results.append(await client.call_tool(tool, {**args, name: text}))
    return results

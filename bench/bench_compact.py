"""Compact-output ratio: bytes of the tool result a model reads / bytes of the raw upstream response.

    python bench/bench_compact.py

The server runs in process over the sandbox tenant through a recording transport, which keeps the
size of every upstream response body. For each tool call the recorder is reset, so "raw" is the
sum of the K-LINK responses that call needed (and the number of upstream requests is reported).
"text" is what a model reads: the UTF-8 bytes of every text content block of the result. For
reference the structured content is also measured re-encoded as compact JSON, which shows how
much of the text is whitespace.

Samples: list_tickets pages 1-5 (page_size 10), get_contact for 20 contacts, and list_cx_logs
pages 1-3 (page_size 10) over the busiest 30 days of the seeded tenant.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

import anyio
import httpx2
from _harness import SANDBOX_TOKEN
from mcp import Client

from klink_mcp.config import load_settings
from klink_mcp.sandbox import SandboxTenant, SandboxTransport
from klink_mcp.server import build_server


class RecordingTransport(httpx2.AsyncBaseTransport):
    """Pass requests to `inner`; remember (method, path, response body bytes) of each exchange."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.exchanges: list[tuple[str, str, int]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        self.exchanges.append((request.method, request.url.path, len(body)))
        return httpx2.Response(response.status_code, headers=response.headers, content=body, request=request)


def _cx_window(tenant: SandboxTenant) -> tuple[str, str]:
    starts = sorted(dt.datetime.fromisoformat(str(log["startedDate"])) for log in tenant.cx_logs.values())
    end = starts[-1].replace(tzinfo=None) + dt.timedelta(seconds=1)
    return (end - dt.timedelta(days=30)).isoformat(), end.isoformat()


async def run() -> dict[str, Any]:
    tenant = SandboxTenant.seeded()
    recorder = RecordingTransport(SandboxTransport(tenant, token=SANDBOX_TOKEN))
    server = build_server(load_settings(env={}), transport=recorder)
    start, end = _cx_window(tenant)
    contact_ids = [c["id"] for c in tenant.contacts.values() if not c.get("deletedAt")][:20]
    plans: dict[str, list[dict[str, Any]]] = {
        "list_tickets": [{"page": p, "page_size": 10} for p in range(1, 6)],
        "get_contact": [{"contact_id": cid} for cid in contact_ids],
        "list_cx_logs": [
            {"start": start, "end": end, "timezone": "UTC", "page": p, "page_size": 10} for p in range(1, 4)
        ],
    }
    results: dict[str, Any] = {}
    async with Client(server) as client:
        for tool, arg_list in plans.items():
            text = structured = raw = requests = 0
            for args in arg_list:
                recorder.exchanges.clear()
                result = await client.call_tool(tool, args)
                if result.is_error:
                    raise RuntimeError(f"{tool} failed: {result.content}")
                text += sum(len(block.text.encode()) for block in result.content if block.type == "text")
                structured += len(
                    json.dumps(result.structured_content, separators=(",", ":"), ensure_ascii=False).encode()
                )
                raw += sum(size for _, _, size in recorder.exchanges)
                requests += len(recorder.exchanges)
            calls = len(arg_list)
            results[tool] = {
                "calls": calls,
                "text_bytes_per_call": text / calls,
                "raw_bytes_per_call": raw / calls,
                "upstream_requests_per_call": requests / calls,
                "ratio_text_raw": text / raw,
                "compact_structured_bytes_per_call": structured / calls,
                "ratio_if_compact_json": structured / raw,
            }
    return results


def report(results: dict[str, Any]) -> None:
    print("compact output: text a model reads / raw upstream bytes")
    print(f"  {'tool':<14}{'calls':>6}{'text B':>9}{'raw B':>9}{'text/raw':>10}{'compact/raw':>13}{'req':>5}")
    for tool, r in results.items():
        print(
            f"  {tool:<14}{r['calls']:>6}{r['text_bytes_per_call']:>9.0f}{r['raw_bytes_per_call']:>9.0f}"
            f"{r['ratio_text_raw']:>10.3f}{r['ratio_if_compact_json']:>13.3f}"
            f"{r['upstream_requests_per_call']:>5.1f}"
        )


def main() -> None:
    argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0]).parse_args()
    report(anyio.run(run))


if __name__ == "__main__":
    main()

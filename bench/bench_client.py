"""What does the SDK cost per request? `KlinkClient.get_contact` vs a bare `httpx2.AsyncClient.get`.

Both talk to the sandbox tenant over a real loopback socket, with the same URL, the same headers and
keep-alive, N requests each, interleaved (alternating which goes first) so that drift in the machine's
load hits both equally. Prints median and p95 per request, the median overhead in ms and the ratio.

    python bench/bench_client.py [--n 2000]

A figure, not a pass/fail test. The server runs in the same process and event loop, so absolute
times include the sandbox's own work; the overhead is the difference.
"""

from __future__ import annotations

import argparse
import statistics
import time

import anyio
import httpx2

from klink_mcp import USER_AGENT
from klink_mcp.api.client import KlinkClient
from klink_mcp.sandbox import DEFAULT_TOKEN, SandboxTenant, serve_sandbox


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18]


async def run(n: int, warmup: int) -> None:
    tenant = SandboxTenant.seeded()
    contact_id = next(iter(tenant.contacts))
    headers = {
        "Authorization": f"Bearer {DEFAULT_TOKEN}",
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
    }
    sdk_ms: list[float] = []
    bare_ms: list[float] = []
    async with (
        serve_sandbox(tenant) as server,
        KlinkClient(server.url, DEFAULT_TOKEN) as client,
        httpx2.AsyncClient(base_url=server.url, headers=headers) as bare,
    ):
        url = f"/api/v1/contacts/{contact_id}"

        async def sdk() -> float:
            start = time.perf_counter()
            await client.get_contact(contact_id)
            return (time.perf_counter() - start) * 1000

        async def raw() -> float:
            start = time.perf_counter()
            response = await bare.get(url)
            response.raise_for_status()
            response.json()
            return (time.perf_counter() - start) * 1000

        for _ in range(warmup):
            await sdk()
            await raw()
        tenant.reset_requests()
        for i in range(n):
            if i % 2:
                sdk_ms.append(await sdk())
                bare_ms.append(await raw())
            else:
                bare_ms.append(await raw())
                sdk_ms.append(await sdk())
        tenant.reset_requests()  # the tenant records every request; keep memory flat for long runs

    sdk_med, bare_med = statistics.median(sdk_ms), statistics.median(bare_ms)
    print(f"N={n} each, interleaved, loopback sandbox, keep-alive, GET /api/v1/contacts/{{id}}")
    print(f"bare httpx2.AsyncClient.get + .json(): median {bare_med:.3f} ms  p95 {_p95(bare_ms):.3f} ms")
    print(f"KlinkClient.get_contact:              median {sdk_med:.3f} ms  p95 {_p95(sdk_ms):.3f} ms")
    print(f"overhead (median): {sdk_med - bare_med:+.3f} ms per request   ratio: {sdk_med / bare_med:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="requests per client (default 2000)")
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    anyio.run(run, args.n, args.warmup)


if __name__ == "__main__":
    main()

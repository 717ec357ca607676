"""Cold start (spawn -> first tools/list over stdio) and the size of the tools list.

    python bench/bench_startup.py [--runs 5]

Cold start is timed from just before the process is spawned until the tools/list response line
has been read: interpreter start, imports, building the server, the lifespan (the K-LINK client
opens and the tenant's form fields are fetched and compiled), the initialize handshake and the
list itself. Measured against the loopback sandbox (a token is set, as with a real tenant) and,
for reference, with no token (the embedded sandbox tenant is generated in the process).

The tools list is measured as the server sends it: the bytes of `result.tools` re-encoded as
compact JSON (what a host stores and forwards to the model) and the raw response line; tokens are
estimated as bytes/4.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import anyio
from _harness import clean_env, median, sandbox_process, stdio_server

IMPORT_PROBE = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"


async def cold_start(base_url: str | None) -> tuple[float, dict[str, Any], bytes]:
    start = time.perf_counter()
    async with stdio_server(base_url) as rpc:
        result = await rpc.request("tools/list")
        elapsed = time.perf_counter() - start
        return elapsed, result, rpc.last_raw


def _subprocess_seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=clean_env(), check=True, capture_output=True)
    return time.perf_counter() - start


def _import_seconds(modules: str) -> float:
    code = IMPORT_PROBE.format(modules)
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip())


def tools_size(result: dict[str, Any], raw_line: bytes) -> dict[str, Any]:
    tools = result["tools"]
    compact = json.dumps(tools, separators=(",", ":"), ensure_ascii=False).encode()
    per_tool = sorted(
        ((t["name"], len(json.dumps(t, separators=(",", ":"), ensure_ascii=False).encode())) for t in tools),
        key=lambda item: -item[1],
    )
    parts: dict[str, int] = {"description": 0, "inputSchema": 0, "outputSchema": 0, "other": 0}
    for tool in tools:
        for key, value in tool.items():
            size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
            parts[key if key in parts else "other"] += size
    return {
        "tools": len(tools),
        "bytes": len(compact),
        "kb": len(compact) / 1024,
        "tokens_est": len(compact) // 4,
        "wire_line_bytes": len(raw_line),
        "by_part_bytes": parts,
        "largest_tools": per_tool[:6],
    }


async def run(runs: int = 5) -> dict[str, Any]:
    python_floor = median([_subprocess_seconds("pass") for _ in range(3)])
    import_s = median([_import_seconds("klink_mcp.cli, klink_mcp.server") for _ in range(3)])
    import_sdk_s = median([_import_seconds("mcp.server") for _ in range(3)])
    with sandbox_process() as sandbox:
        url = sandbox.url
        samples: list[float] = []
        last: tuple[dict[str, Any], bytes] | None = None
        for _ in range(runs):
            elapsed, result, raw = await cold_start(url)
            samples.append(elapsed)
            last = (result, raw)
    embedded = [(await cold_start(None))[0] for _ in range(max(3, runs // 2))]
    assert last is not None
    return {
        "cold_start": {
            "runs": runs,
            "median_s": median(samples),
            "samples_s": samples,
            "embedded_sandbox_median_s": median(embedded),
            "python_floor_s": python_floor,
            "import_klink_server_s": import_s,
            "import_mcp_server_s": import_sdk_s,
        },
        "tools_list": tools_size(*last),
    }


def report(results: dict[str, Any]) -> None:
    cs = results["cold_start"]
    print(
        f"cold start (spawn -> tools/list, stdio, loopback sandbox): median {cs['median_s']:.3f} s "
        f"of {cs['runs']} ({', '.join(f'{s:.3f}' for s in cs['samples_s'])})"
    )
    print(f"  with the embedded sandbox tenant: median {cs['embedded_sandbox_median_s']:.3f} s")
    print(
        f"  floor: python -c pass {cs['python_floor_s']:.3f} s; import mcp.server (the SDK alone) "
        f"{cs['import_mcp_server_s']:.3f} s; import klink_mcp.cli+server {cs['import_klink_server_s']:.3f} s"
    )
    tl = results["tools_list"]
    print(
        f"tools/list: {tl['tools']} tools, {tl['bytes']:,} bytes ({tl['kb']:.1f} KiB) compact JSON, "
        f"~{tl['tokens_est']:,} tokens (bytes/4); wire line {tl['wire_line_bytes']:,} bytes"
    )
    print("  by part: " + ", ".join(f"{k} {v:,}" for k, v in tl["by_part_bytes"].items()))
    print("  largest: " + ", ".join(f"{name} {size:,}" for name, size in tl["largest_tools"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    report(anyio.run(run, args.runs))


if __name__ == "__main__":
    main()

"""The approval page across replicas: approved once on one replica's page, consumed once wherever the call lands.

Three replicas on the shared PostgreSQL store, in the default confirmation mode (the page). The
test finds the pending approval in the shared database (the tool result carries the link only once
the tool layer passes `approval_required` through; the page's id is the capability, so it is never
logged), approves it with the page's own GET + POST on one replica, then calls the tool through
HAProxy six times at once: exactly one call runs and the sandbox upstream sees exactly one send. A
replay on every replica, directly, runs nothing.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from tests.team.harness import TeamCluster

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SEND_PATH = "/api/v1/messages/send"


async def _call(client: Client, tool: str, args: dict[str, Any]) -> Any:
    with anyio.fail_after(20):
        return await client.call_tool(tool, args)


def _done(result: Any) -> bool:
    return not result.is_error and (result.structured_content or {}).get("status") == "done"


async def _sends(cluster: TeamCluster, text: str) -> int:
    return sum(
        1
        for r in await cluster.upstream_requests("POST")
        if r["path"] == SEND_PATH and isinstance(r.get("json"), dict) and r["json"].get("message") == text
    )


async def _pending_approval_id(database_url: str, text: str) -> str:
    """The id of the pending send_message approval for `text`, read from the shared database."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT id FROM klink_approvals WHERE state = 'pending' AND body->>'tool' = 'send_message' "
            "AND body->'args'->>'message' = %s",
            (text,),
        )
        rows = await cursor.fetchall()
    assert len(rows) == 1, rows  # one approval, however many replicas saw the call
    approval_id: str = rows[0][0]
    return approval_id


async def _approve_on_page(base_url: str, approval_id: str, post_to: str | None = None) -> None:
    """What a person's browser does: open the page, press Approve (its CSRF cookie). `post_to`: the
    replica the POST lands on when a load balancer sends it elsewhere than the GET."""
    url = f"{base_url}/approvals/{approval_id}"
    async with httpx2.AsyncClient(timeout=10.0) as browser:
        shown = await browser.get(url)
        assert shown.status_code == 200, shown.text[:300]
        match = re.search(r'name="csrf" value="([^"]+)"', shown.text)
        assert match is not None, "the page has no approval form"
        target = post_to or base_url
        decided = await browser.post(
            f"{target}/approvals/{approval_id}",
            data={"csrf": match.group(1), "decision": "approve"},
            headers={"origin": target, "sec-fetch-site": "same-origin"},
        )
        assert decided.status_code == 200, decided.text[:300]
        assert "already decided" not in decided.text


async def test_an_approval_is_granted_once_and_consumed_once_whichever_replicas_the_calls_land_on(
    page_cluster: TeamCluster,
) -> None:
    cluster = page_cluster
    assert cluster.database_url is not None
    async with cluster.client() as client:
        listed = await _call(client, "list_contacts", {"page_size": 1})
        contact_id = listed.structured_content["items"][0]["id"]
        text = f"Team page check {secrets.token_hex(6)}"
        args = {"contact_id": contact_id, "message": text}
        first = await _call(client, "send_message", args)
    # Nothing runs before a person approved (the result is approval_required, or an error while the
    # tool layer does not pass that status through yet).
    assert not _done(first), first
    assert await _sends(cluster, text) == 0

    approval_id = await _pending_approval_id(cluster.database_url, text)
    # Shown by one replica, submitted to another (as through a load balancer): one shared CSRF key.
    await _approve_on_page(cluster.replicas[1].url, approval_id, post_to=cluster.replicas[2].url)

    results: list[Any] = []

    async def call_through_the_balancer() -> None:
        async with cluster.client() as caller:
            results.append(await _call(caller, "send_message", args))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(6):  # round-robin: every replica gets at least one
                tg.start_soon(call_through_the_balancer)
    assert sum(_done(r) for r in results) == 1, results
    assert await _sends(cluster, text) == 1

    for replica in cluster.replicas:  # a replay on any replica, directly, runs nothing
        async with cluster.client(f"{replica.url}/mcp") as client:
            again = await _call(client, "send_message", args)
        assert not _done(again), again
    assert await _sends(cluster, text) == 1

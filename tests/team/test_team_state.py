"""State that must be shared by the replicas: confirmations (single use) and webhook events.

Today each replica keeps its own: a token signed with the shared `KLINK_GUARD_SECRET` is honoured by
every replica, but "used" is remembered per process, so the same token is accepted once per replica
(issue 13, "reproduced"). `test_a_confirmation_token_is_used_once_across_all_replicas` asserts the
correct behaviour and is a strict xfail until the PostgreSQL store is wired; it then XPASSes (a
failure under strict), and the lead removes the marker.

The store-backed tests need `klink_mcp.store` and a database URL (`store_cluster`); they skip only
while the store is not on the branch. Counts come from the one shared sandbox upstream.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from klink_mcp.webhooks.events import compute_signature
from tests.team.harness import TeamCluster

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SEND_PATH = "/api/v1/messages/send"


async def _call(client: Client, tool: str, args: dict[str, Any]) -> Any:
    with anyio.fail_after(20):
        return await client.call_tool(tool, args)


def _replica_url(cluster: TeamCluster, index: int) -> str:
    return f"{cluster.replicas[index].url}/mcp"


async def _a_contact(cluster: TeamCluster) -> str:
    async with cluster.client() as client:
        listed = await _call(client, "list_contacts", {"page_size": 1})
    assert not listed.is_error, listed
    contact_id: str = listed.structured_content["items"][0]["id"]
    return contact_id


async def _mint(cluster: TeamCluster, url: str | None, args: dict[str, Any]) -> str:
    """Ask for send_message without elicitation: a preview and a single-use confirmation_token."""
    async with cluster.client(url) as client:
        first = await _call(client, "send_message", args)
    assert not first.is_error, first
    assert first.structured_content["status"] == "confirmation_required"
    token: str = first.structured_content["confirmation_token"]
    return token


async def _confirm(cluster: TeamCluster, url: str | None, args: dict[str, Any], token: str) -> Any:
    async with cluster.client(url) as client:
        return await _call(client, "send_message", {**args, "confirmation_token": token})


def _done(result: Any) -> bool:
    return not result.is_error and result.structured_content["status"] == "done"


def _refused_as_replay(result: Any) -> bool:
    return bool(result.is_error) and "already used" in str(result.content)


async def _sends(cluster: TeamCluster, text: str) -> int:
    return sum(
        1
        for r in await cluster.upstream_requests("POST")
        if r["path"] == SEND_PATH and isinstance(r.get("json"), dict) and r["json"].get("message") == text
    )


def _message_args(contact_id: str) -> tuple[dict[str, Any], str]:
    text = f"Team replay check {secrets.token_hex(6)}"
    return {"contact_id": contact_id, "message": text}, text


# -- what holds today -------------------------------------------------------------------------------


async def test_a_token_minted_on_one_replica_is_honoured_on_another(cluster: TeamCluster) -> None:
    args, text = _message_args(await _a_contact(cluster))
    token = await _mint(cluster, _replica_url(cluster, 0), args)
    assert await _sends(cluster, text) == 0  # a preview sends nothing
    done = await _confirm(cluster, _replica_url(cluster, 1), args, token)
    assert _done(done), done
    assert await _sends(cluster, text) == 1


async def test_a_replay_on_the_replica_that_used_the_token_is_refused(cluster: TeamCluster) -> None:
    args, text = _message_args(await _a_contact(cluster))
    token = await _mint(cluster, _replica_url(cluster, 2), args)
    first = await _confirm(cluster, _replica_url(cluster, 2), args, token)
    again = await _confirm(cluster, _replica_url(cluster, 2), args, token)
    assert _done(first), first
    assert _refused_as_replay(again), again
    assert await _sends(cluster, text) == 1


# -- the known bug, asserted the correct way --------------------------------------------------------


async def test_a_confirmation_token_is_used_once_across_all_replicas(store_cluster: TeamCluster) -> None:
    cluster = store_cluster
    args, text = _message_args(await _a_contact(cluster))
    token = await _mint(cluster, _replica_url(cluster, 0), args)
    outcomes = [
        await _confirm(cluster, _replica_url(cluster, index), args, token)
        for index in range(len(cluster.replicas))
    ]
    sends = await _sends(cluster, text)
    assert sends == 1, f"one approval sent the message {sends} times"
    assert sum(_done(o) for o in outcomes) == 1
    assert all(_refused_as_replay(o) for o in outcomes if not _done(o))


# -- needs the shared store (KLINK_DATABASE_URL) ----------------------------------------------------


async def test_an_approval_is_consumed_once_whichever_replicas_the_calls_land_on(
    store_cluster: TeamCluster,
) -> None:
    cluster = store_cluster
    args, text = _message_args(await _a_contact(cluster))
    token = await _mint(cluster, None, args)  # through the load balancer
    results: list[Any] = []

    async def confirm() -> None:
        results.append(await _confirm(cluster, None, args, token))

    # Six confirmations at once through round-robin: every replica sees at least one.
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(confirm)
    assert sum(_done(r) for r in results) == 1, results
    assert await _sends(cluster, text) == 1
    # A replay on any replica, directly, is refused.
    for index in range(len(cluster.replicas)):
        replay = await _confirm(cluster, _replica_url(cluster, index), args, token)
        assert _refused_as_replay(replay), (index, replay)
    assert await _sends(cluster, text) == 1


async def test_a_webhook_event_received_by_one_replica_reaches_a_client_of_another(
    store_cluster: TeamCluster,
) -> None:
    cluster = store_cluster
    contact_id = f"team-webhook-{secrets.token_hex(6)}"
    event = {
        "event": "contact.update",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "data": {"id": contact_id, "name": "Team Webhook"},
    }
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = {
        "content-type": "application/json",
        "x-signature": compute_signature(cluster.webhook_secret.encode(), body),
    }
    async with httpx2.AsyncClient(timeout=10.0) as http:
        received = await http.post(f"{cluster.replicas[0].url}/webhooks/klink", content=body, headers=headers)
        assert received.status_code == 200, received.text
        assert received.json()["duplicate"] is False
        # The same delivery retried by K-LINK onto another replica is recognised, not stored twice.
        again = await http.post(f"{cluster.replicas[2].url}/webhooks/klink", content=body, headers=headers)
        assert again.status_code == 200 and again.json()["duplicate"] is True

    async with cluster.client(_replica_url(cluster, 1)) as client:
        with anyio.fail_after(15):
            while True:
                listed = await client.call_tool("list_recent_events", {"contact_id": contact_id})
                assert not listed.is_error, listed
                if listed.structured_content["total"]:
                    break
                await anyio.sleep(0.05)
    assert listed.structured_content["total"] == 1


async def test_no_accepted_webhook_event_is_lost_when_a_replica_is_killed_mid_delivery(
    store_cluster: TeamCluster,
) -> None:
    cluster = store_cluster
    victim, total = 2, 60
    contact_id = f"team-webhook-kill-{secrets.token_hex(6)}"
    bodies = [
        json.dumps(
            {
                "event": "contact.update",
                "timestamp": f"2026-12-06T00:00:{n % 60:02d}.{n:03d}Z",
                "data": {"id": contact_id, "name": f"Delivery {n}"},
            },
            separators=(",", ":"),
        ).encode()
        for n in range(total)
    ]
    accepted: list[int] = []
    queue = list(range(total))
    attempts = 0
    at_kill: list[int] = []
    third = anyio.Event()

    async def deliver(http: httpx2.AsyncClient, index: int) -> None:
        # As K-LINK does: retry until a 200 (the receiver stores before it answers).
        nonlocal attempts
        body = bodies[index]
        headers = {
            "content-type": "application/json",
            "x-signature": compute_signature(cluster.webhook_secret.encode(), body),
        }
        for _ in range(20):
            attempts += 1
            try:
                answer = await http.post(f"{cluster.lb_url}/webhooks/klink", content=body, headers=headers)
            except httpx2.TransportError:
                continue
            if answer.status_code == 200:
                accepted.append(index)
                if len(accepted) >= total // 3:
                    third.set()
                return

    async def sender(http: httpx2.AsyncClient) -> None:
        while queue:
            await deliver(http, queue.pop(0))

    async def chaos() -> None:
        await third.wait()
        await anyio.to_thread.run_sync(cluster.kill_replica, victim)
        at_kill.append(len(accepted))

    try:
        with anyio.fail_after(60):
            async with httpx2.AsyncClient(timeout=10.0) as http, anyio.create_task_group() as tg:
                tg.start_soon(chaos)
                for _ in range(4):
                    tg.start_soon(sender, http)
    finally:
        await anyio.to_thread.run_sync(cluster.restart_replica, victim)
        await cluster.wait_lb_state(victim, "UP", timeout_s=15)

    assert at_kill and at_kill[0] < total  # the replica died in the middle of the deliveries
    assert sorted(accepted) == list(range(total))  # every delivery was acknowledged in the end
    async with cluster.client(_replica_url(cluster, 0)) as client:
        listed = await _call(client, "list_recent_events", {"contact_id": contact_id, "page_size": 100})
    assert not listed.is_error, listed
    # Every acknowledged event is there, once, whichever replica stored it or died after storing it.
    assert listed.structured_content["total"] == total, (listed.structured_content["total"], attempts)

"""The guard's single-use state on the shared store, across "replicas", for memory, SQLite and PostgreSQL.

Each replica is its own store object on one database (as in the contract suite) with its own
`ConfirmationTokens` / `StoreApprovalStore` sharing only the guard secret, as separate processes do.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from klink_mcp.guard.approvals import ApprovalRecord, DecidedBy, StoreApprovalStore, approval_key
from klink_mcp.guard.audit import AuditLog
from klink_mcp.guard.tokens import ConfirmationTokens, TokenRejected
from klink_mcp.store import Store
from tests.store import test_store_contract as contract
from tests.store.test_store_contract import Replicas

pytestmark = pytest.mark.anyio

# The contract suite's fixtures: one more store "replica" per call on the test's database.
backend = contract.backend
replicas = contract.replicas

SECRET = b"s" * 32
ARGS = {"contact_id": "c1", "message": "hello"}


async def test_a_token_is_consumed_once_whichever_replica_sees_it(replicas: Replicas) -> None:
    stores = [await replicas() for _ in range(3)]
    tokens = [ConfirmationTokens(SECRET, nonces=store) for store in stores]
    minted = tokens[0].mint("send_message", ARGS, "v1")
    outcomes: list[str] = []

    async def confirm(i: int) -> None:
        try:
            await tokens[i % 3].consume(minted.token, "send_message", ARGS, "v1")
            outcomes.append("ok")
        except TokenRejected as exc:
            outcomes.append(exc.reason)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for i in range(9):
                tg.start_soon(confirm, i)
    assert sorted(outcomes) == ["ok"] + ["replayed"] * 8
    # The replica that used it refuses a replay before any upstream read (`check`); the others at consume.
    winners = [t for t in tokens if t._consumed]
    assert len(winners) == 1
    with pytest.raises(TokenRejected):
        winners[0].check(minted.token, "send_message", ARGS)


async def test_a_refused_check_consumes_nothing_in_the_shared_ledger(replicas: Replicas) -> None:
    a, b = await replicas(), await replicas()
    tokens_a, tokens_b = ConfirmationTokens(SECRET, nonces=a), ConfirmationTokens(SECRET, nonces=b)
    minted = tokens_a.mint("send_message", ARGS, "v1")
    with pytest.raises(TokenRejected) as changed:
        await tokens_b.consume(minted.token, "send_message", ARGS, "v2")
    assert changed.value.reason == "target_changed"
    await tokens_a.consume(minted.token, "send_message", ARGS, "v1")  # still usable once


def _record(approvals: StoreApprovalStore, key: str, approval_id: str, **changes: Any) -> ApprovalRecord:
    now = time.time()
    values: dict[str, Any] = {
        "id": approval_id,
        "key": key,
        "tool": "send_message",
        "args": ARGS,
        "args_digest": "d",
        "binding": "preview:x",
        "preview": {"action": "Send"},
        "requester": "alice-sub",
        "created_at": now,
        "expires_at": now + 60,
    }
    return ApprovalRecord(**(values | changes))


async def test_an_approval_decided_on_one_replica_is_consumed_once_across_all(replicas: Replicas) -> None:
    stores: list[Store] = [await replicas() for _ in range(3)]
    approvals = [StoreApprovalStore(store, SECRET) for store in stores]
    key = approval_key("send_message", "d", "alice-sub")
    assert await approvals[1].latest(key) is None
    first_id = await approvals[0].new_id(key)
    assert first_id == await approvals[2].new_id(key)  # the same sequence on every replica
    await approvals[0].create(_record(approvals[0], key, first_id))
    with pytest.raises(ValueError):  # another replica racing to open the same approval loses
        await approvals[1].create(_record(approvals[1], key, first_id))
    seen = await approvals[2].latest(key)
    assert seen is not None and seen.id == first_id and seen.state == "pending"

    waited: list[ApprovalRecord | None] = []

    async def wait() -> None:
        waited.append(await approvals[1].wait_decided(first_id, 20))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.lowlevel.checkpoint()  # let the waiter subscribe
            decided = await approvals[2].decide(
                first_id,
                approve=True,
                now=time.time(),
                decided_by=DecidedBy(via="page", person="bob-sub"),
                approved_text="hello",
                removed_invisible=0,
            )
    assert decided is not None and decided.state == "approved" and decided.decided_by is not None
    assert decided.decided_by.person == "bob-sub" and decided.approved_text == "hello"
    assert waited and waited[0] is not None and waited[0].state == "approved"

    results = await _race([a.consume(first_id, now=time.time()) for a in approvals * 3])
    assert sum(r is not None for r in results) == 1
    again = await approvals[0].latest(key)
    assert again is not None and again.state == "consumed"

    # Declined, released: the next identical call opens a fresh approval with the next id.
    second_id = await approvals[1].new_id(key)
    assert second_id != first_id
    await approvals[1].create(_record(approvals[1], key, second_id))
    assert (
        await approvals[0].decide(second_id, approve=False, now=time.time(), decided_by=DecidedBy(via="page"))
        is not None
    )
    declined = await approvals[2].latest(key)
    assert declined is not None and declined.state == "declined"
    await approvals[2].release(key, second_id)
    assert await approvals[0].latest(key) is None

    # Superseded (the target changed): a pending record reads as expired everywhere.
    third_id = await approvals[0].new_id(key)
    await approvals[0].create(_record(approvals[0], key, third_id))
    gone = await approvals[1].expire(third_id, now=time.time(), force=True)
    assert gone is not None and gone.state == "expired"
    shown = await approvals[2].get(third_id)
    assert shown is not None and shown.state == "expired"
    assert await approvals[0].consume(third_id, now=time.time()) is None


async def _race(calls: list[Any]) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    async def one(i: int) -> None:
        results[i] = await calls[i]

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for i in range(len(calls)):
                tg.start_soon(one, i)
    return results


async def test_audit_records_of_every_replica_are_read_back_from_a_shared_store(replicas: Replicas) -> None:
    a, b = await replicas(), await replicas()
    logs = [AuditLog(None), AuditLog(None)]
    logs[0].attach_store(a)
    logs[1].attach_store(b)
    logs[0].record(
        "send_message", "confirmation_required", args=ARGS, principal="alice-sub", request_id="r-1"
    )
    logs[1].record("send_message", "confirmed_by_token", args=ARGS, principal="alice-sub", request_id="r-2")
    for log in logs:
        await log.flush_to_store()
    rows = await a.recent_audit(10)
    assert [r.record["request_id"] for r in rows] == ["r-2", "r-1"]
    assert all(r.record["principal"] == "alice-sub" for r in rows)
    shared = await logs[0].recent_shared(10)
    if a.shares_across_processes:  # PostgreSQL: every replica's records
        assert [r["decision"] for r in shared] == ["confirmed_by_token", "confirmation_required"]
    else:  # embedded: this process's own (file or ring), as before
        assert [r["decision"] for r in shared] == ["confirmation_required"]

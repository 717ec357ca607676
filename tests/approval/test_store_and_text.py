"""The approval store's transitions (compare-and-set, single use) and the outgoing-text sanitizer."""

from __future__ import annotations

import unicodedata

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klink_mcp.content import clean_outgoing_text, reveal_invisible
from klink_mcp.guard.approvals import ApprovalRecord, DecidedBy, InMemoryApprovalStore, new_approval_id

pytestmark = pytest.mark.anyio

PAGE = DecidedBy(via="page", client="127.0.0.1", user_agent="test")


def record(**changes: object) -> ApprovalRecord:
    base = ApprovalRecord(
        id=new_approval_id(),
        key="k",
        tool="delete_contact",
        args={"contact_id": "c1"},
        args_digest="d",
        binding="b",
        preview={},
        created_at=100.0,
        expires_at=200.0,
    )
    return base.model_copy(update=changes)


async def test_a_decision_is_taken_once_and_an_approval_is_consumed_once() -> None:
    store = InMemoryApprovalStore()
    pending = record()
    await store.create(pending)
    assert await store.consume(pending.id, now=150) is None  # not approved yet
    approved = await store.decide(pending.id, approve=True, now=150, decided_by=PAGE)
    assert approved is not None and approved.state == "approved"
    assert await store.decide(pending.id, approve=False, now=151, decided_by=PAGE) is None
    results = []

    async def consume() -> None:
        results.append(await store.consume(pending.id, now=152))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(consume)
    assert sum(r is not None for r in results) == 1
    assert (await store.get(pending.id)).state == "consumed"  # type: ignore[union-attr]


async def test_nothing_is_decided_or_consumed_after_expiry() -> None:
    store = InMemoryApprovalStore()
    late, used_late = record(), record()
    await store.create(late)
    await store.create(used_late)
    assert await store.decide(late.id, approve=True, now=200, decided_by=PAGE) is None
    assert await store.decide(used_late.id, approve=True, now=199, decided_by=PAGE) is not None
    assert await store.consume(used_late.id, now=200) is None
    assert (await store.expire(late.id, now=200)).state == "expired"  # type: ignore[union-attr]
    assert late.state_at(199) == "pending" and late.state_at(200) == "expired"


async def test_a_waiter_wakes_up_when_the_person_decides_and_records_are_plain_json() -> None:
    store = InMemoryApprovalStore()
    pending = record()
    await store.create(pending)
    seen = []

    async def wait() -> None:
        seen.append(await store.wait_decided(pending.id, 30))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            await store.decide(pending.id, approve=False, now=150, decided_by=PAGE)
    assert seen[0] is not None and seen[0].state == "declined"
    assert ApprovalRecord.model_validate_json(seen[0].model_dump_json()) == seen[0]
    assert len(pending.id) >= 32


async def test_latest_follows_the_key_and_release_detaches_it() -> None:
    store = InMemoryApprovalStore(max_records=2)
    first, second, third = record(), record(), record(key="other")
    await store.create(first)
    await store.create(second)
    assert (await store.latest("k")) == second
    await store.release("k", first.id)  # not the latest: no-op
    assert (await store.latest("k")) == second
    await store.release("k", second.id)
    assert await store.latest("k") is None
    await store.create(third)  # the oldest record is dropped
    assert await store.get(first.id) is None and await store.get(third.id) == third


def test_outgoing_text_loses_what_cannot_be_seen_and_keeps_what_can() -> None:
    cases = {
        "Pay\u202e now\u200b": ("Pay now", 2),
        "tag\U000e0041\U000e0042": ("tag", 2),
        "a\ufe0fb \u2764\ufe0f": ("ab \u2764\ufe0f", 1),
        "family \U0001f468\u200d\U0001f469\u200d\U0001f467": (
            "family \U0001f468\u200d\U0001f469\u200d\U0001f467",
            0,
        ),
        "keycap 1\ufe0f\u20e3": ("keycap 1\ufe0f\u20e3", 0),
        "zero\u200dwidth joiner": ("zerowidth joiner", 1),
        "line\r\nbreak\u2028kept": ("line\nbreak\nkept", 0),
    }
    for raw, (text, removed) in cases.items():
        out = clean_outgoing_text(raw)
        assert (out.text, out.removed) == (text, removed), raw
    assert clean_outgoing_text("x\u200b").note == "1 invisible character removed"
    assert reveal_invisible("Pay\u202e now") == "Pay⟦U+202E⟧ now"


_BIDI_AND_TAGS = {*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C}


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_cleaned_text_has_no_hidden_controls_and_cleaning_twice_changes_nothing(raw: str) -> None:
    out = clean_outgoing_text(raw)
    assert not any(ord(ch) in _BIDI_AND_TAGS or 0xE0000 <= ord(ch) <= 0xE007F for ch in out.text)
    assert not any(unicodedata.category(ch) == "Cf" and ch != "\u200d" for ch in out.text)
    again = clean_outgoing_text(out.text)
    assert (again.text, again.removed) == (out.text, 0)
    assert reveal_invisible(raw).count("⟦U+") == out.removed

"""Confirmation by elicitation through the real MCP path: push-style (handshake era) and
InputRequiredResult round trips (2026-07-28). Every test asserts how many times the action ran."""

from __future__ import annotations

from typing import Any

import anyio
import mcp.types as types
import pytest
from guard_harness import DELETE_C1, HarnessFactory, delete_binding, outcome_of, refusal_of
from mcp import Client
from mcp.client import ClientRequestContext

from klink_mcp.guard.confirm import CONFIRM_INPUT_KEY

pytestmark = pytest.mark.anyio

ERAS = pytest.mark.parametrize("mode", ["legacy", "auto"], ids=["handshake-era", "2026-era"])


class Answers:
    """An elicitation callback that records every question and replies from a script."""

    def __init__(self, *replies: types.ElicitResult | types.ErrorData) -> None:
        self.replies = list(replies)
        self.questions: list[types.ElicitRequestFormParams] = []

    async def __call__(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        assert isinstance(params, types.ElicitRequestFormParams)
        self.questions.append(params)
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


YES = types.ElicitResult(action="accept", content={"confirm": True})
NO = types.ElicitResult(action="accept", content={"confirm": False})
DECLINE = types.ElicitResult(action="decline")
CANCEL = types.ElicitResult(action="cancel")


@ERAS
async def test_an_accepted_elicitation_runs_the_action_exactly_once(
    make_harness: HarnessFactory, mode: str
) -> None:
    h = make_harness()
    answers = Answers(YES)
    with anyio.fail_after(10):
        async with Client(h.server, mode=mode, elicitation_callback=answers) as client:
            done = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
    assert (done.status, done.channel) == ("done", "elicitation")
    assert h.tenant.executions == [("delete_contact", {"contact_id": "c1"})]
    assert len(answers.questions) == 1
    question = answers.questions[0]
    assert question.message.startswith("Delete contact: Delete contact for Alice Smith.")
    assert 'Contact "c1" ("Alice Smith")' in question.message
    assert "This cannot be undone." in question.message
    assert question.requested_schema["properties"]["confirm"]["description"] == "Yes, do it"
    assert question.requested_schema["required"] == ["confirm"]
    assert h.decisions() == ["confirmation_required", "confirmed_by_elicitation", "executed"]
    assert {line["channel"] for line in h.audit_lines()} == {"elicitation"}


@ERAS
@pytest.mark.parametrize(
    ("reply", "reason", "decision"),
    [
        (DECLINE, "declined", "declined"),
        (CANCEL, "cancelled", "cancelled"),
        (NO, "not_confirmed", "declined"),
    ],
    ids=["decline", "cancel", "accept-with-no"],
)
async def test_anything_but_a_yes_runs_nothing(
    make_harness: HarnessFactory, mode: str, reply: types.ElicitResult, reason: str, decision: str
) -> None:
    h = make_harness()
    with anyio.fail_after(10):
        async with Client(h.server, mode=mode, elicitation_callback=Answers(reply)) as client:
            cancelled = outcome_of(
                await client.call_tool("send_message", {"contact_id": "c1", "message": "hi"})
            )
    assert h.tenant.executions == []
    assert (cancelled.status, cancelled.reason) == ("cancelled", reason)
    assert cancelled.confirmation_token is None
    assert cancelled.next_step == "The user did not confirm; nothing was changed."
    assert h.decisions() == ["confirmation_required", decision]


async def test_a_user_who_never_answers_times_out_and_nothing_runs(make_harness: HarnessFactory) -> None:
    h = make_harness(elicitation_timeout_s=0.05)
    never = anyio.Event()

    async def silent_user(
        context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        await never.wait()  # the user walked away; the server's timeout must end the wait
        return YES

    with anyio.fail_after(10):
        async with Client(h.server, mode="legacy", elicitation_callback=silent_user) as client:
            timed_out = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
            never.set()
    assert (timed_out.status, timed_out.reason) == ("cancelled", "timeout")
    assert h.tenant.executions == []
    assert h.decisions() == ["confirmation_required", "timeout"]


async def test_a_2026_answer_older_than_the_elicitation_timeout_runs_nothing(
    make_harness: HarnessFactory,
) -> None:
    h = make_harness(elicitation_timeout_s=60)
    with anyio.fail_after(10):
        async with Client(h.server, elicitation_callback=Answers(YES)) as client:
            first = await client.session.call_tool("delete_contact", DELETE_C1, allow_input_required=True)
            assert isinstance(first, types.InputRequiredResult)
            h.clock.advance(61)
            late = await client.session.call_tool(
                "delete_contact",
                DELETE_C1,
                input_responses={CONFIRM_INPUT_KEY: YES},
                request_state=first.request_state,
                allow_input_required=True,
            )
    assert isinstance(late, types.CallToolResult)
    assert (outcome_of(late).status, outcome_of(late).reason) == ("cancelled", "timeout")
    assert h.tenant.executions == []


@ERAS
async def test_a_target_changed_while_the_user_decides_is_asked_about_again(
    make_harness: HarnessFactory, mode: str
) -> None:
    h = make_harness()
    questions: list[str] = []

    async def user_while_someone_edits(
        context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams)
        questions.append(params.message)
        if len(questions) == 1:
            h.tenant.touch("c1")
            h.tenant.contacts["c1"]["name"] = "Alicia Smith"
        return YES

    with anyio.fail_after(10):
        async with Client(h.server, mode=mode, elicitation_callback=user_while_someone_edits) as client:
            done = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
    assert done.status == "done"
    assert len(questions) == 2
    assert "Alice Smith" in questions[0]
    assert "Alicia Smith" in questions[1]
    assert questions[1].startswith("The target changed")
    assert h.tenant.executions == [("delete_contact", {"contact_id": "c1"})]
    assert "refused:target_changed" in h.decisions()


async def test_a_2026_confirmation_cannot_be_replayed(make_harness: HarnessFactory) -> None:
    h = make_harness()
    with anyio.fail_after(10):
        async with Client(h.server, elicitation_callback=Answers(YES)) as client:
            first = await client.session.call_tool("delete_contact", DELETE_C1, allow_input_required=True)
            assert isinstance(first, types.InputRequiredResult)
            assert first.input_requests is not None and CONFIRM_INPUT_KEY in first.input_requests
            retry: dict[str, Any] = {
                "input_responses": {CONFIRM_INPUT_KEY: YES},
                "request_state": first.request_state,
                "allow_input_required": True,
            }
            done = await client.session.call_tool("delete_contact", DELETE_C1, **retry)
            replay = await client.session.call_tool("delete_contact", DELETE_C1, **retry)
    assert isinstance(done, types.CallToolResult) and outcome_of(done).status == "done"
    assert isinstance(replay, types.CallToolResult)
    assert refusal_of(replay)["reason"] == "replayed"
    assert h.tenant.executions == [("delete_contact", {"contact_id": "c1"})]


async def test_two_concurrent_2026_confirmations_run_the_action_once(make_harness: HarnessFactory) -> None:
    h = make_harness()
    results: list[types.CallToolResult | types.InputRequiredResult] = []
    with anyio.fail_after(10):
        async with Client(h.server, elicitation_callback=Answers(YES)) as client:
            first = await client.session.call_tool("delete_contact", DELETE_C1, allow_input_required=True)
            assert isinstance(first, types.InputRequiredResult)

            async def confirm() -> None:
                results.append(
                    await client.session.call_tool(
                        "delete_contact",
                        DELETE_C1,
                        input_responses={CONFIRM_INPUT_KEY: YES},
                        request_state=first.request_state,
                        allow_input_required=True,
                    )
                )

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(confirm)
    assert len(h.tenant.executions) == 1
    assert sorted(isinstance(r, types.CallToolResult) and bool(r.is_error) for r in results) == [
        False,
        True,
        True,
        True,
    ]


async def test_a_2026_state_for_other_arguments_is_rejected_by_the_sdk_seal(
    make_harness: HarnessFactory,
) -> None:
    h = make_harness()
    with anyio.fail_after(10):
        async with Client(h.server, elicitation_callback=Answers(YES)) as client:
            first = await client.session.call_tool(
                "delete_contact", {"contact_id": "c2"}, allow_input_required=True
            )
            assert isinstance(first, types.InputRequiredResult)
            with pytest.raises(Exception, match="Invalid or expired requestState"):
                await client.session.call_tool(
                    "delete_contact",
                    DELETE_C1,
                    input_responses={CONFIRM_INPUT_KEY: YES},
                    request_state=first.request_state,
                    allow_input_required=True,
                )
    assert h.tenant.executions == []


async def test_a_token_is_accepted_even_when_the_client_supports_elicitation(
    make_harness: HarnessFactory,
) -> None:
    h = make_harness(confirm="token")
    token = h.guard.tokens.mint("delete_contact", DELETE_C1, delete_binding(h.tenant)).token
    answers = Answers(DECLINE)
    with anyio.fail_after(10):
        async with Client(h.server, elicitation_callback=answers) as client:
            done = outcome_of(
                await client.call_tool("delete_contact", {**DELETE_C1, "confirmation_token": token})
            )
    assert (done.status, done.channel) == ("done", "token")
    assert answers.questions == []
    assert len(h.tenant.executions) == 1


async def test_a_client_whose_elicitation_fails_falls_back_to_the_approval_page(
    make_harness: HarnessFactory,
) -> None:
    h = make_harness()
    broken = Answers(types.ErrorData(code=types.INTERNAL_ERROR, message="no UI available"))
    with anyio.fail_after(10):
        async with Client(h.server, mode="legacy", elicitation_callback=broken) as client:
            pending = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
    assert pending.status == "approval_required"
    assert pending.approval_url is not None and pending.confirmation_token is None
    assert h.tenant.executions == []


async def test_in_token_mode_a_client_whose_elicitation_fails_falls_back_to_a_preview_and_token(
    make_harness: HarnessFactory,
) -> None:
    h = make_harness(confirm="token")
    broken = Answers(types.ErrorData(code=types.INTERNAL_ERROR, message="no UI available"))
    with anyio.fail_after(10):
        async with Client(h.server, mode="legacy", elicitation_callback=broken) as client:
            pending = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
    assert pending.status == "confirmation_required"
    assert pending.confirmation_token
    assert h.tenant.executions == []


@ERAS
async def test_strict_mode_with_elicitation_asks_the_user(make_harness: HarnessFactory, mode: str) -> None:
    h = make_harness(confirm="elicit")
    with anyio.fail_after(10):
        async with Client(h.server, mode=mode, elicitation_callback=Answers(YES)) as client:
            done = outcome_of(await client.call_tool("delete_contact", DELETE_C1))
    assert (done.status, done.channel) == ("done", "elicitation")
    assert len(h.tenant.executions) == 1


@ERAS
async def test_the_tool_list_carries_annotations_derived_from_the_policy(
    make_harness: HarnessFactory, mode: str
) -> None:
    h = make_harness()
    async with Client(h.server, mode=mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    delete = tools["delete_contact"].annotations
    assert delete is not None
    assert (
        delete.read_only_hint,
        delete.destructive_hint,
        delete.idempotent_hint,
        delete.open_world_hint,
    ) == (
        False,
        True,
        True,
        True,
    )
    send = tools["send_message"].annotations
    assert send is not None and (send.destructive_hint, send.idempotent_hint) == (True, False)

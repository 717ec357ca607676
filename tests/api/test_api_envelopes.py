"""Every envelope of the contract is unwrapped, and any known shape is accepted where another was expected."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from klink_mcp.api import errors
from klink_mcp.api._http import RawPage, unwrap
from klink_mcp.api.catalog import Catalog
from klink_mcp.api.client import KlinkClient
from klink_mcp.api.models import Category, Contact, FormField, Page, SentMessage, Ticket

from .conftest import Script, paged

pytestmark = pytest.mark.anyio

CATALOG = Catalog()
ITEMS = [{"id": "a"}, {"id": "b"}]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (paged(ITEMS, total=25, page=2, page_size=2, last_page=13), RawPage(ITEMS, 25, 2, 2, 13)),
        ({"requestId": "r1", "cxLogs": paged(ITEMS, total=2)}, RawPage(ITEMS, 2, 1, 10, 1)),
        ({"data": ITEMS}, RawPage(ITEMS, 2, 3, 5, 3)),  # no paging keys: this is all there is
        (ITEMS, RawPage(ITEMS, 2, 3, 5, 3)),
        (
            {"status": "success", "message": "ok", "data": paged(ITEMS, total=9, page=3, page_size=5)},
            RawPage(ITEMS, 9, 3, 5, 2),
        ),
        ({"success": True, "data": ITEMS}, RawPage(ITEMS, 2, 3, 5, 3)),
        ({"total": 12, "data": ITEMS}, RawPage(ITEMS, 12, 3, 5, 3)),  # lastPage derived from total
        ({"data": None}, RawPage([], 0, 3, 5, 3)),
        (None, RawPage([], 0, 3, 5, 3)),
    ],
)
def test_paged_operations_accept_every_known_envelope(payload: Any, expected: RawPage) -> None:
    assert unwrap(payload, op=CATALOG["list_contacts"], http_status=200, page=3, page_size=5) == expected


@pytest.mark.parametrize(
    "payload",
    [
        {"status": "success", "message": "contact", "data": {"id": "c1"}},
        {"success": True, "data": {"id": "c1"}},
        {"status": 200, "message": "Message sent successfully", "data": {"id": "c1"}},
        {"data": {"id": "c1"}},
        {"id": "c1"},
    ],
)
def test_single_record_operations_accept_every_known_envelope(payload: Any) -> None:
    assert unwrap(payload, op=CATALOG["get_contact"], http_status=200) == {"id": "c1"}


@pytest.mark.parametrize(
    "payload",
    [{"data": ITEMS}, ITEMS, {"status": "success", "data": ITEMS}, paged(ITEMS)],
)
def test_plain_list_operations_accept_every_known_envelope(payload: Any) -> None:
    assert unwrap(payload, op=CATALOG["list_tags"], http_status=200) == ITEMS


def test_a_bare_record_with_a_status_of_its_own_is_not_mistaken_for_a_failure() -> None:
    channel = {"id": "ch1", "name": "Broken inbox", "status": "error"}
    assert unwrap(channel, op=CATALOG["create_channel"], http_status=201) == channel


def test_a_paged_operation_given_a_single_object_is_an_api_error() -> None:
    with pytest.raises(errors.KlinkAPIError, match="expected a list"):
        unwrap({"data": {"id": "x"}}, op=CATALOG["list_tickets"], http_status=200)


def test_a_bare_scalar_answer_is_an_api_error() -> None:
    with pytest.raises(errors.KlinkAPIError, match="unexpected response"):
        unwrap("ok", op=CATALOG["get_contact"], http_status=200)


async def test_the_client_returns_typed_records_from_each_envelope(
    make_client: Callable[..., KlinkClient],
) -> None:
    script = Script(
        (200, paged([{"id": "c1", "customFields": []}], total=11, page=1, page_size=10)),
        (201, {"success": True, "data": {"id": "t1", "ticketNumber": 42, "contactId": "c1"}}),
        (200, {"status": "success", "message": "Contact tags updated successfully", "data": None}),
        (
            200,
            {
                "data": [
                    {
                        "id": "root",
                        "value": "Billing",
                        "childCategoryList": [{"id": "leaf", "value": "Refund"}],
                    }
                ]
            },
        ),
        (
            200,
            {
                "status": 200,
                "message": "Message sent successfully",
                "data": {"id": "m1", "partition_key": "2026_01"},
            },
        ),
        (200, {"status": "success", "message": "deleted", "data": None}),
        (200, {"status": "success", "data": {"id": "c9"}}),
    )
    client = make_client(script)
    contacts = await client.list_contacts()
    assert isinstance(contacts, Page)
    assert contacts.items[0].custom_fields == {}
    assert (contacts.total, contacts.last_page, contacts.has_more) == (11, 2, True)
    ticket = await client.create_ticket({"title": "x", "contact_id": "c1"})
    assert isinstance(ticket, Ticket)
    assert (ticket.ticket_number, ticket.contact_id) == (42, "c1")
    assert await client.update_contact_tags("c1", action="MERGE", tags=["vip"]) is None
    tree = await client.list_categories()
    assert isinstance(tree[0], Category)
    assert tree[0].child_category_list[0].value == "Refund"
    sent = await client.send_message(contact_id="c1", message="hi")
    assert isinstance(sent, SentMessage)
    assert sent.partition_key == "2026_01"
    assert await client.delete_contact("c1") is None
    deleted = await client.delete_contact("c9")
    assert deleted is not None and deleted.id == "c9"


async def test_a_social_platform_lookup_returns_a_list_even_for_a_single_record(
    make_client: Callable[..., KlinkClient],
) -> None:
    client = make_client(
        Script((200, {"status": "success", "data": {"id": "c1"}}), (200, {"status": "success", "data": None}))
    )
    assert [c.id for c in await client.find_contacts_by_social_platform_id("wa-1")] == ["c1"]
    assert await client.find_contacts_by_social_platform_id("wa-2") == []


async def test_list_items_that_are_not_records_are_skipped_not_fatal(
    make_client: Callable[..., KlinkClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(Script((200, {"data": [{"id": "t1", "name": "vip"}, {"name": "no id"}, "junk"]})))
    tags = await client.list_tags()
    assert [t.id for t in tags] == ["t1"]
    assert "skipped" in caplog.text


async def test_a_created_record_without_an_id_says_the_change_was_applied(
    make_client: Callable[..., KlinkClient],
) -> None:
    client = make_client(Script((200, {"status": "success", "data": {"name": "no id"}})))
    with pytest.raises(errors.KlinkAPIError, match="WAS applied"):
        await client.create_contact({"name": "Ann"})


async def test_a_send_whose_answer_has_no_record_still_succeeds(
    make_client: Callable[..., KlinkClient],
) -> None:
    client = make_client(Script((200, {"status": 200, "message": "Message sent successfully", "data": None})))
    assert (await client.send_message(contact_id="c1", message="hi")).id is None


# ---------------------------------------------------------------------------------------- models


def test_contact_models_keep_unknown_keys_and_accept_both_spellings() -> None:
    contact = Contact.model_validate({"id": "c1", "contactNumber": "+65", "brandNewField": {"x": 1}})
    assert contact.contact_number == "+65"
    assert contact.model_dump(by_alias=True)["brandNewField"] == {"x": 1}
    assert Contact(id="c2", contact_number="1").contact_number == "1"


def test_custom_fields_are_a_map_whether_sent_as_a_map_an_empty_list_or_pairs() -> None:
    assert Contact.model_validate({"id": "c", "customFields": {"cf_a": 1}}).custom_fields == {"cf_a": 1}
    assert Contact.model_validate({"id": "c", "customFields": []}).custom_fields == {}
    assert Contact.model_validate({"id": "c", "customFields": None}).custom_fields == {}
    pairs = [{"key": "cf_a", "value": 1}, {"name": "cf_b", "value": "x"}]
    assert Contact.model_validate({"id": "c", "customFields": pairs}).custom_fields == {
        "cf_a": 1,
        "cf_b": "x",
    }


def test_a_known_field_of_an_unexpected_type_is_dropped_not_fatal() -> None:
    contact = Contact.model_validate(
        {"id": 7, "company": "Acme", "contactEmails": None, "tags": ["vip"], "name": "Ann"}
    )
    assert contact.id == "7"
    assert contact.company is None
    assert contact.contact_emails == []
    assert contact.tags[0].name == "vip"
    assert contact.name == "Ann"


def test_a_ticket_with_an_unusable_nested_contact_keeps_everything_else() -> None:
    ticket = Ticket.model_validate(
        {"id": "t1", "ticketNumber": "12", "contact": {"name": "no id"}, "title": "Hi"}
    )
    assert (ticket.ticket_number, ticket.title, ticket.contact) == (12, "Hi", None)


def test_form_field_definitions_are_snake_case_and_tolerate_null_options() -> None:
    field = FormField.model_validate(
        {
            "id": "f1",
            "system_name": "channel",
            "display_name": "Channel",
            "type": "select",
            "is_default": True,
            "is_archived": False,
            "is_required": True,
            "is_unique": False,
            "options": [{"value": "phone", "label": "Phone", "is_default": True}],
        }
    )
    assert field.options[0].is_default is True
    assert field.is_required is True
    assert FormField.model_validate({"id": "f2", "type": "rating", "options": None}).options == []


def test_a_record_without_an_id_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Contact.model_validate({"name": "no id"})


def test_a_page_knows_whether_more_pages_follow() -> None:
    assert Page[int](items=[1], total=3, page=1, page_size=1, last_page=3).has_more
    assert not Page[int](items=[3], total=3, page=3, page_size=1, last_page=3).has_more
    assert not Page[int]().has_more

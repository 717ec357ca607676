"""Status -> exception map, tolerant error bodies, and no secret in any error or repr."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx2
import pytest

from klink_mcp.api import errors
from klink_mcp.api._http import parse_error_body
from klink_mcp.api.client import KlinkClient

from .conftest import TOKEN, Script, paged

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, errors.BadRequest),
        (401, errors.Unauthorized),
        (403, errors.Forbidden),
        (404, errors.NotFound),
        (409, errors.Conflict),
        (410, errors.NotFound),
        (418, errors.KlinkAPIError),
        (422, errors.BadRequest),
        (429, errors.RateLimited),
        (500, errors.ServerError),
        (502, errors.ServerError),
        (503, errors.ServerError),
    ],
)
async def test_each_error_status_raises_its_own_exception(
    make_client: Callable[..., KlinkClient], status: int, expected: type[errors.KlinkAPIError]
) -> None:
    script = Script((status, {"statusCode": status, "error": "X", "message": "it failed"}))
    client = make_client(script, max_attempts=1)
    with pytest.raises(expected) as caught:
        await client.get_contact("c1")
    assert type(caught.value) is expected
    assert caught.value.status == status
    assert caught.value.messages == ["it failed"]
    assert caught.value.operation == "get_contact"


async def test_a_list_message_becomes_every_validation_reason(
    make_client: Callable[..., KlinkClient],
) -> None:
    body = {
        "statusCode": 400,
        "error": "Bad Request",
        "message": ["name should not be empty", "cf_x is unknown"],
    }
    client = make_client(Script((400, body)))
    with pytest.raises(errors.BadRequest) as caught:
        await client.create_contact({"name": ""})
    assert caught.value.messages == ["name should not be empty", "cf_x is unknown"]
    assert "name should not be empty; cf_x is unknown" in str(caught.value)
    assert caught.value.body == body


@pytest.mark.parametrize(
    ("content", "content_type", "messages"),
    [
        (
            b'{"statusCode": 404, "error": "Not Found", "message": "Contact not found"}',
            "application/json",
            ["Contact not found"],
        ),
        (b'{"message": ["a", "b"]}', "application/json", ["a", "b"]),
        (b'{"error": "Unauthorized"}', "application/json", ["Unauthorized"]),
        (b'{"errors": {"name": ["is required"]}}', "application/json", ["name: is required"]),
        (b'["first", "second"]', "application/json", ["first", "second"]),
        (
            b"<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>",
            "text/html",
            ["502 Bad Gateway"],
        ),
        (b"<html><body><p>Service   down</p></body></html>", "text/html", ["Service down"]),
        (b"upstream connect error", "text/plain", ["upstream connect error"]),
        (b"", "", []),
        (b"   ", "application/json", []),
        (b'{"unexpected": true}', "application/json", []),
    ],
)
def test_error_bodies_of_any_shape_are_read_without_crashing(
    content: bytes, content_type: str, messages: list[str]
) -> None:
    assert parse_error_body(content, content_type)[0] == messages


async def test_an_empty_error_body_falls_back_to_the_reason_phrase(
    make_client: Callable[..., KlinkClient],
) -> None:
    client = make_client(Script((404, b"")))
    with pytest.raises(errors.NotFound) as caught:
        await client.get_contact("c1")
    assert caught.value.messages == ["Not Found"]
    assert str(caught.value) == "Not Found (HTTP 404)"
    assert caught.value.body is None


async def test_an_html_error_page_gives_its_title(make_client: Callable[..., KlinkClient]) -> None:
    page = "<html><head><title>504 Gateway Time-out</title></head><body>" + "x" * 5000 + "</body></html>"
    client = make_client(Script((504, page, {"content-type": "text/html"})), max_attempts=1)
    with pytest.raises(errors.ServerError) as caught:
        await client.get_contact("c1")
    assert caught.value.messages == ["504 Gateway Time-out"]
    assert len(caught.value.body) <= 500


async def test_a_token_echoed_by_the_server_never_reaches_an_error_message(
    make_client: Callable[..., KlinkClient],
) -> None:
    body = {"message": f"token {TOKEN} is expired; header was Bearer {TOKEN}"}
    client = make_client(Script((401, body)))
    with pytest.raises(errors.Unauthorized) as caught:
        await client.list_tags()
    text = str(caught.value) + repr(caught.value) + repr(caught.value.messages)
    assert TOKEN not in text
    assert "[redacted]" in text
    assert "KLINK_API_TOKEN" in str(caught.value)


async def test_the_token_is_not_in_the_client_repr_nor_in_debug_logs(
    make_client: Callable[..., KlinkClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(Script((200, paged([{"id": "c1"}]))))
    caplog.set_level(logging.DEBUG, logger="klink_mcp.api")
    await client.list_contacts(keyword="ann@example.com")
    assert TOKEN not in repr(client)
    assert "SecretStr('**********')" in repr(client)
    logged = caplog.text
    assert "GET /api/v1/contacts -> 200" in logged
    assert TOKEN not in logged
    assert "ann@example.com" not in logged  # query strings carry customer data: never logged


async def test_debug_logs_show_the_path_template_not_ids_that_may_be_phone_numbers(
    make_client: Callable[..., KlinkClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(Script((200, {"status": "success", "data": []})))
    caplog.set_level(logging.DEBUG, logger="klink_mcp.api")
    await client.find_contacts_by_social_platform_id("6591234567")
    assert "GET /api/v1/contacts/social-platform/{socialPlatformId} -> 200" in caplog.text
    assert "6591234567" not in caplog.text


async def test_the_request_carries_bearer_auth_user_agent_and_accept(
    make_client: Callable[..., KlinkClient],
) -> None:
    from klink_mcp import USER_AGENT

    script = Script((200, {"data": []}))
    await make_client(script).list_tags()
    sent = script.requests[0]
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["user-agent"] == USER_AGENT
    assert sent.headers["accept"] == "application/json"
    assert str(sent.url) == "https://k.test/api/v1/tags"


async def test_a_success_with_a_body_that_is_not_json_is_an_api_error(
    make_client: Callable[..., KlinkClient],
) -> None:
    client = make_client(Script((200, "<html>login page</html>")))
    with pytest.raises(errors.KlinkAPIError) as caught:
        await client.get_contact("c1")
    assert "not JSON" in str(caught.value)


async def test_a_create_whose_success_body_is_unreadable_says_it_was_applied(
    make_client: Callable[..., KlinkClient],
) -> None:
    client = make_client(Script((201, "created!")))
    with pytest.raises(errors.KlinkAPIError, match="WAS applied"):
        await client.create_ticket({"title": "t", "contact_id": "c1"})


@pytest.mark.parametrize(
    "payload",
    [
        {"success": False, "message": "contact_id is invalid"},
        {"status": "error", "message": "contact_id is invalid"},
        {"status": 400, "message": "contact_id is invalid", "data": None},
    ],
)
async def test_a_failure_reported_inside_a_2xx_envelope_is_raised(
    make_client: Callable[..., KlinkClient], payload: dict[str, object]
) -> None:
    client = make_client(Script((200, payload)))
    with pytest.raises(errors.KlinkAPIError, match="contact_id is invalid"):
        await client.create_ticket({"title": "t", "contact_id": "x"})


def test_input_errors_are_value_errors_naming_the_field() -> None:
    error = errors.KlinkInputError("contact_id", "must not be empty")
    assert isinstance(error, ValueError)
    assert isinstance(error, errors.KlinkError)
    assert error.field == "contact_id"
    assert str(error) == "contact_id: must not be empty"


def test_the_error_tree_has_the_documented_shape() -> None:
    for cls in (
        errors.BadRequest,
        errors.Unauthorized,
        errors.Forbidden,
        errors.NotFound,
        errors.Conflict,
        errors.RateLimited,
        errors.ServerError,
    ):
        assert issubclass(cls, errors.KlinkAPIError)
    assert issubclass(errors.KlinkTimeout, errors.KlinkConnectionError)
    assert issubclass(errors.AmbiguousWriteError, errors.KlinkConnectionError)
    assert issubclass(errors.KlinkConnectionError, errors.KlinkError)
    assert not issubclass(errors.AmbiguousWriteError, errors.KlinkAPIError)
    assert len({cls.code for cls in (getattr(errors, name) for name in errors.__all__)}) == len(
        errors.__all__
    )


async def test_a_bad_base_url_is_a_configuration_error() -> None:
    from klink_mcp.config import ConfigError

    with pytest.raises(ConfigError):
        KlinkClient("ftp://k.test", TOKEN, transport=httpx2.MockTransport(Script((200, {}))))
    with pytest.raises(ConfigError):
        KlinkClient("https://k.test", " ", transport=httpx2.MockTransport(Script((200, {}))))


@pytest.mark.parametrize("token", ["kpt_abc\r\nX-Evil: 1", "kpt abc", "kpt_ü"])
def test_a_token_a_header_cannot_carry_is_refused_without_repeating_it(token: str) -> None:
    from klink_mcp.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        KlinkClient("https://k.test", token, transport=httpx2.MockTransport(Script((200, {}))))
    assert token not in str(caught.value)
    assert "abc" not in str(caught.value)

"""`KlinkClient`: the async K-LINK SDK, one method per catalogued operation.

Methods say verb + operation + model and check their simple inputs (types, page bounds, non-empty text)
before anything is sent; `_http.HttpCore` does the rest (auth, ids, retries, errors, envelopes). Every
method raises only the errors of `klink_mcp.api.errors`:

    KlinkInputError       bad input, refused before any request
    KlinkAPIError & co.   K-LINK answered with an error
    AmbiguousWriteError   a create/send may or may not have been applied: check before retrying
    KlinkConnectionError  no usable answer (KlinkTimeout for timeouts)

This module must not import `mcp` and knows nothing of the guard: callers decide what may be written.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
import httpx2
from pydantic import BaseModel, SecretStr, ValidationError

from klink_mcp.api._http import (
    DEFAULT_RETRY_BUDGET,
    Attempt,
    Clock,
    HttpCore,
    HttpStats,
    PathParams,
    RawPage,
    RetryBudget,
    Sleep,
    validate_id,
)
from klink_mcp.api.auth import authorization_header, credentials_from_settings
from klink_mcp.api.catalog import Catalog
from klink_mcp.api.errors import KlinkAPIError, KlinkError, KlinkInputError
from klink_mcp.api.models import (
    Category,
    Channel,
    Contact,
    ContactGroup,
    CxLog,
    FormField,
    Page,
    SentMessage,
    Tag,
    Ticket,
)
from klink_mcp.config import DEFAULT_BASE_URL, ConfigError, Settings

log = logging.getLogger("klink_mcp.api")

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

MAX_PAGE_SIZE: Final = 100
# A runaway `lastPage` (a bug upstream) must not fan out into thousands of requests.
MAX_PAGES: Final = 500
TagAction = Literal["MERGE", "REPLACE", "REMOVE"]
_TAG_ACTIONS: Final = ("MERGE", "REPLACE", "REMOVE")
_CX_DATE_FORMAT: Final = "%Y/%m/%d %H:%M:%S"


# ---------------------------------------------------------------------------------------------- checks


def _int(value: object, field: str, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KlinkInputError(field, f"must be an integer, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise KlinkInputError(field, f"must be {bounds}, got {value}")
    return value


def _page_args(page: object, page_size: object) -> tuple[int, int]:
    return _int(page, "page", low=1), _int(page_size, "page_size", low=1, high=MAX_PAGE_SIZE)


def _text(value: object, field: str, *, required: bool = True) -> str:
    if not isinstance(value, str):
        raise KlinkInputError(field, f"must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise KlinkInputError(field, "must not be empty")
    return value


def _optional_text(value: object, field: str) -> str | None:
    return None if value is None else _text(value, field, required=False)


def _body(value: object, field: str = "body", *, changes: bool = False) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise KlinkInputError(field, f"must be an object (dict), got {type(value).__name__}")
    if not all(isinstance(key, str) for key in value):
        raise KlinkInputError(field, "keys must be strings")
    if changes and not value:
        raise KlinkInputError(field, "names no change")
    return dict(value)


def _datetime(value: object, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise KlinkInputError(field, f"must be a datetime, got {type(value).__name__}")
    return value


def _zone(value: object) -> ZoneInfo:
    name = _text(value, "timezone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise KlinkInputError(
            "timezone", f"{name!r} is not a known IANA time zone (e.g. Asia/Singapore)"
        ) from None


def _in_zone(value: datetime, zone: ZoneInfo) -> datetime:
    """Naive datetimes are wall time in `zone`; aware ones are converted to it."""
    return value.replace(tzinfo=zone) if value.tzinfo is None else value.astimezone(zone)


def _iso_utc_millis(value: datetime) -> str:
    """'2026-01-08T16:03:39.923Z' as in the contract's send-message example (naive = UTC)."""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%S.") + f"{aware.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------------------------------------- parsing


def _one(model: type[M], data: Any, operation: str, *, write: bool = False) -> M:
    """Parse one record. For a write, K-LINK has already applied the change, and the error says so."""
    detail = f"got {type(data).__name__}"
    if isinstance(data, Mapping):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            detail = "; ".join(str(err["msg"]) for err in exc.errors(include_input=False))
    applied = " The change WAS applied; do not repeat it." if write else ""
    message = f"{operation}: K-LINK's answer is not a usable {model.__name__} ({detail}).{applied}"
    raise KlinkAPIError(200, message, operation=operation)


def _many(model: type[M], data: Any, operation: str) -> list[M]:
    """Parse a list, skipping (and logging) items that are not records of `model`."""
    if data is None:
        return []
    raw = data if isinstance(data, list) else [data]
    items: list[M] = []
    for item in raw:
        try:
            items.append(model.model_validate(item))
        except ValidationError:
            log.warning("%s: skipped an item that is not a usable %s", operation, model.__name__)
    return items


def _page(model: type[M], raw: RawPage, operation: str) -> Page[M]:
    return Page(
        items=_many(model, raw.items, operation),
        total=raw.total,
        page=raw.page,
        page_size=raw.page_size,
        last_page=raw.last_page,
    )


# ---------------------------------------------------------------------------------------------- client


def _quiet_http_stack_logs() -> None:
    """httpx2 logs every request's full URL at INFO, query string included (customer names and phone
    numbers in `keyword`). Our own request log shows path templates only, so keep the stack's quieter
    unless the operator set its level explicitly."""
    for name in ("httpx2", "httpcore2", "httpx", "httpcore"):
        stack_logger = logging.getLogger(name)
        if stack_logger.level == logging.NOTSET:
            stack_logger.setLevel(logging.WARNING)


class KlinkClient:
    """Async K-LINK client. Use as `async with KlinkClient(...) as client:` or call `aclose()`.

    `sleep`, `rng` and `clock` are injectable so tests control backoff without real waits; `on_attempt`
    is called after every HTTP attempt (see `_http.Attempt`); `stats` counts calls/attempts/retries.
    Reads are tried up to `max_attempts` times, every retry paid from one client-wide `retry_budget`
    of tokens (see `_http.RetryBudget`), so a K-LINK outage is not multiplied by the retries.
    """

    def __init__(
        self,
        base_url: str,
        token: str | SecretStr,
        *,
        transport: httpx2.AsyncBaseTransport | None = None,
        catalog: Catalog | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 20.0,
        call_deadline_s: float = 45.0,
        max_attempts: int = 5,
        retry_budget: float = DEFAULT_RETRY_BUDGET,
        page_concurrency: int = 4,
        sleep: Sleep = anyio.sleep,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        on_attempt: Callable[[Attempt], None] | None = None,
    ) -> None:
        """
        Raises:
            ConfigError: empty token, a base URL that is not http(s), or a non-positive limit.
        """
        secret = token if isinstance(token, SecretStr) else SecretStr(token)
        authorization_header(secret)  # refuses an empty or unsendable secret before anything else
        if page_concurrency < 1:
            raise ConfigError("page_concurrency must be at least 1")
        _quiet_http_stack_logs()
        self._token = secret
        self._page_concurrency = page_concurrency
        self._http = HttpCore(
            base_url,
            secret,
            transport=transport,
            catalog=catalog,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            call_deadline_s=call_deadline_s,
            max_attempts=max_attempts,
            retry_budget=RetryBudget(retry_budget),
            sleep=sleep,
            rng=rng,
            clock=clock,
            on_attempt=on_attempt,
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, transport: httpx2.AsyncBaseTransport | None = None) -> Self:
        """A client configured from `Settings` (timeouts, attempts, concurrency, catalogue overrides).

        In sandbox mode the sandbox token is used; pass the sandbox's transport (or point `base_url` at a
        sandbox server): the sandbox token is never sent to the real K-LINK gateway.

        Raises:
            ConfigError: a bad catalogue override, or sandbox mode aimed at the real gateway.
        """
        if settings.uses_sandbox and transport is None and settings.base_url.rstrip("/") == DEFAULT_BASE_URL:
            raise ConfigError(
                "no K-LINK API token is set (KLINK_API_TOKEN) and no sandbox transport was given; "
                "refusing to call the real K-LINK gateway with the sandbox token"
            )
        token = credentials_from_settings(settings)  # the sandbox token, a bearer token or Basic
        return cls(
            settings.base_url,
            token,
            transport=transport,
            catalog=Catalog.from_settings(settings),
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            call_deadline_s=settings.call_deadline_s,
            max_attempts=settings.max_attempts,
            retry_budget=settings.retry_budget,
            page_concurrency=settings.page_concurrency,
        )

    # -- lifecycle --------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool. Safe to call twice."""
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"KlinkClient(base_url={self._http.base_url!r}, token=SecretStr('**********'))"

    @property
    def catalog(self) -> Catalog:
        """The operations in use, with overrides applied."""
        return self._http.catalog

    @property
    def stats(self) -> HttpStats:
        """Counters of calls, HTTP attempts and retries since the client was opened."""
        return self._http.stats

    # -- paging -----------------------------------------------------------------------------------------

    async def fetch_all_pages(
        self,
        fetch_page: Callable[[int, int], Awaitable[Page[T]]],
        *,
        page_size: int = MAX_PAGE_SIZE,
        max_items: int | None = None,
    ) -> list[T]:
        """Every item of a paged list: page 1 first, then the other pages concurrently (bounded).

        `fetch_page(page, page_size)` fetches one page. Items are returned in page order; items repeated
        across pages (the list shifted while it was read) are kept once. At most `max_items` items and
        500 pages are fetched.

        Raises:
            KlinkInputError: a bad page_size or max_items.
            KlinkError: the first error any page met (the other fetches are cancelled).
        """
        page_size = _int(page_size, "page_size", low=1, high=MAX_PAGE_SIZE)
        if max_items is not None:
            max_items = _int(max_items, "max_items", low=1)
        first = await fetch_page(1, page_size)
        # A server that caps the page size numbers its pages by its own size: follow it, or pages overlap.
        size = min(first.page_size, MAX_PAGE_SIZE) if first.page_size > 0 else page_size
        last = first.last_page
        if max_items is not None:
            last = min(last, math.ceil(max_items / size))
        if last > MAX_PAGES:
            log.warning("paged list claims %d pages; reading only the first %d", last, MAX_PAGES)
            last = MAX_PAGES
        pages: list[list[T]] = [list(first.items)] + [[] for _ in range(2, last + 1)]
        if last > 1:
            await self._fetch_rest(fetch_page, size, last, pages)
        return _dedupe([item for items in pages for item in items])[:max_items]

    async def _fetch_rest(
        self,
        fetch_page: Callable[[int, int], Awaitable[Page[T]]],
        page_size: int,
        last: int,
        pages: list[list[T]],
    ) -> None:
        limiter = anyio.CapacityLimiter(self._page_concurrency)
        failures: list[Exception] = []

        async def fetch(number: int, scope: anyio.CancelScope) -> None:
            async with limiter:
                try:
                    pages[number - 1] = list((await fetch_page(number, page_size)).items)
                except Exception as exc:  # re-raised below, outside the task group
                    failures.append(exc)
                    scope.cancel()

        async with anyio.create_task_group() as group:
            for number in range(2, last + 1):
                group.start_soon(fetch, number, group.cancel_scope)
        if failures:
            raise failures[0]

    # -- contacts ---------------------------------------------------------------------------------------

    async def list_contacts(
        self, *, keyword: str | None = None, page: int = 1, page_size: int = 10
    ) -> Page[Contact]:
        """One page of contacts; `keyword` searches names and contact details.

        Raises:
            KlinkInputError, KlinkAPIError, KlinkConnectionError.
        """
        page, page_size = _page_args(page, page_size)
        query = {"keyword": _optional_text(keyword, "keyword") or None}
        raw = await self._http.call("list_contacts", query=query, page=page, page_size=page_size)
        return _page(Contact, raw, "list_contacts")

    async def create_contact(self, body: dict[str, Any]) -> Contact:
        """Create a contact from a wire body (`name`, `emails`, `phones`, `customFields`...).

        Raises:
            KlinkInputError, KlinkAPIError, KlinkConnectionError,
            AmbiguousWriteError: it may or may not have been created; check before retrying.
        """
        data = await self._http.call("create_contact", body=_body(body))
        return _one(Contact, data, "create_contact", write=True)

    async def find_contacts_by_social_platform_id(self, social_platform_id: str) -> list[Contact]:
        """Contacts whose platform contact (WhatsApp, Messenger...) has this social platform id.

        Raises:
            KlinkInputError, KlinkAPIError, KlinkConnectionError.
        """
        data = await self._http.call(
            "find_contacts_by_social_platform_id",
            path_params={"socialPlatformId": ("social_platform_id", social_platform_id)},
        )
        return _many(Contact, data, "find_contacts_by_social_platform_id")

    async def get_contact_form_fields(self, *, page: int = 1, page_size: int = 100) -> Page[FormField]:
        """One page of contact form-field definitions.

        Raises:
            KlinkInputError, KlinkAPIError, KlinkConnectionError.
        """
        return await self._form_field_page("get_contact_form_fields", page, page_size)

    async def all_contact_form_fields(self) -> list[FormField]:
        """Every contact form-field definition (all pages).

        Raises:
            KlinkAPIError, KlinkConnectionError.
        """
        return await self.fetch_all_pages(
            lambda page, size: self.get_contact_form_fields(page=page, page_size=size)
        )

    async def _form_field_page(self, operation: str, page: int, page_size: int) -> Page[FormField]:
        page, page_size = _page_args(page, page_size)
        return _page(FormField, await self._http.call(operation, page=page, page_size=page_size), operation)

    async def get_contact(self, contact_id: str) -> Contact:
        """One contact by id.

        Raises:
            KlinkInputError, NotFound, KlinkAPIError, KlinkConnectionError.
        """
        data = await self._http.call("get_contact", path_params=_id(contact_id, "contact_id"))
        return _one(Contact, data, "get_contact")

    async def update_contact(self, contact_id: str, body: dict[str, Any]) -> Contact:
        """Change only the keys given (PATCH) and return the updated contact.

        Raises:
            KlinkInputError, NotFound, KlinkAPIError, KlinkConnectionError.
        """
        body = _body(body, changes=True)
        data = await self._http.call("update_contact", path_params=_id(contact_id, "contact_id"), body=body)
        return _one(Contact, data, "update_contact", write=True)

    async def delete_contact(self, contact_id: str) -> Contact | None:
        """Soft-delete a contact; returns the deleted record when K-LINK sends it back.

        Raises:
            KlinkInputError, NotFound, KlinkAPIError, KlinkConnectionError.
        """
        data = await self._http.call("delete_contact", path_params=_id(contact_id, "contact_id"))
        try:
            return _one(Contact, data, "delete_contact")
        except KlinkAPIError:
            return None  # deleted; K-LINK just did not send the record back

    async def list_contact_groups(self) -> list[ContactGroup]:
        """All contact groups.

        Raises:
            KlinkAPIError, KlinkConnectionError.
        """
        return _many(ContactGroup, await self._http.call("list_contact_groups"), "list_contact_groups")

    async def update_contact_tags(self, contact_id: str, *, action: TagAction, tags: list[str]) -> None:
        """MERGE (add), REPLACE (set exactly) or REMOVE tags, given by NAME.

        Raises:
            KlinkInputError, NotFound, KlinkAPIError, KlinkConnectionError.
        """
        path_params = _id(contact_id, "contact_id")
        if action not in _TAG_ACTIONS:
            raise KlinkInputError("action", f"must be one of {', '.join(_TAG_ACTIONS)}, got {action!r}")
        if not isinstance(tags, Sequence) or isinstance(tags, str):
            raise KlinkInputError("tags", f"must be a list of tag names, got {type(tags).__name__}")
        names = [_text(tag, "tags") for tag in tags]
        await self._http.call(
            "update_contact_tags", path_params=path_params, body={"actionType": action, "tags": names}
        )

    # -- tags, channels, categories ---------------------------------------------------------------------

    async def list_tags(self) -> list[Tag]:
        """All tags.

        Raises:
            KlinkAPIError, KlinkConnectionError.
        """
        return _many(Tag, await self._http.call("list_tags"), "list_tags")

    async def list_channels(self) -> list[Channel]:
        """All channels.

        Raises:
            KlinkAPIError, KlinkConnectionError.
        """
        return _many(Channel, await self._http.call("list_channels"), "list_channels")

    async def create_channel(self, *, name: str, type: str) -> Channel:
        """Create a channel (`type` e.g. whatsapp, messenger, line, email, custom).

        Raises:
            KlinkInputError, KlinkAPIError, KlinkConnectionError,
            AmbiguousWriteError: it may or may not have been created; check before retrying.
        """
        body = {"name": _text(name, "name"), "type": _text(type, "type")}
        return _one(Channel, await self._http.call("create_channel", body=body), "create_channel", write=True)

    async def list_categories(self) -> list[Category]:
        """The category tree (roots, each with `child_category_list`).

        Raises:
            KlinkAPIError, KlinkConnectionError.
        """
        return _many(Category, await self._http.call("list_categories"), "list_categories")

    # -- tickets ----------------------------------------------------------------------------------------

    async def list_tickets(
        self,
        *,
        page: int = 1,
        page_size: int = 10,
        status: str | None = None,
        priority: str | None = None,
        channel: str | None = None,
        keyword: str | None = None,
        ticket_number: int | None = None,
        contact_id: str | None = None,
        assignee_id: str | None = None,
    ) -> Page[Ticket]:
        """One page of tickets, optionally filtered (filters are [inferred] query parameters).

        Raises:
            KlinkInputError, KlinkAPIError, KlinkConnectionError.
        """
        page, page_size = _page_args(page, page_size)
        query: dict[str, object] = {
            "status": _optional_text(status, "status"),
            "priority": _optional_text(priority, "priority"),
            "channel": _optional_text(channel, "channel"),
            "keyword": _optional_text(keyword, "keyword"),
            "ticketNumber": None if ticket_number is None else _int(ticket_number, "ticket_number", low=0),
            "contactId": _optional_text(contact_id, "contact_id"),
            "assigneeId": _optional_text(assignee_id, "assignee_id"),
        }
        query = {key: value for key, value in query.items() if value not in (None, "")}
        raw = await self._http.call("list_tickets", query=query, page=page, page_size=page_size)
        return _page(Ticket, raw, "list_tickets")

    async def create_ticket(self, body: dict[str, Any]) -> Ticket:
        """Create a ticket from a wire body (`title`, `contact_id`, `customFields`...).

        Raises:
            KlinkInputError, NotFound (unknown contact), KlinkAPIError, KlinkConnectionError,
            AmbiguousWriteError: it may or may not have been created; check before retrying.
        """
        return _one(
            Ticket, await self._http.call("create_ticket", body=_body(body)), "create_ticket", write=True
        )

    async def list_contact_tickets(
        self, contact_id: str, *, page: int = 1, page_size: int = 10
    ) -> Page[Ticket]:
        """One page of a contact's tickets.

        Raises:
            KlinkInputError, KlinkAPIError, KlinkConnectionError.
        """
        path_params: PathParams = {"contactId": ("contact_id", contact_id)}
        page, page_size = _page_args(page, page_size)
        raw = await self._http.call(
            "list_contact_tickets", path_params=path_params, page=page, page_size=page_size
        )
        return _page(Ticket, raw, "list_contact_tickets")

    async def get_ticket_form_fields(self, *, page: int = 1, page_size: int = 100) -> Page[FormField]:
        """One page of ticket form-field definitions.

        Raises:
            KlinkInputError, KlinkAPIError, KlinkConnectionError.
        """
        return await self._form_field_page("get_ticket_form_fields", page, page_size)

    async def all_ticket_form_fields(self) -> list[FormField]:
        """Every ticket form-field definition (all pages).

        Raises:
            KlinkAPIError, KlinkConnectionError.
        """
        return await self.fetch_all_pages(
            lambda page, size: self.get_ticket_form_fields(page=page, page_size=size)
        )

    async def update_ticket(self, ticket_id: str, body: dict[str, Any]) -> Ticket:
        """Change only the keys given and return the updated ticket.

        Raises:
            KlinkInputError, NotFound, KlinkAPIError, KlinkConnectionError.
        """
        body = _body(body, changes=True)
        data = await self._http.call("update_ticket", path_params=_id(ticket_id, "ticket_id"), body=body)
        return _one(Ticket, data, "update_ticket", write=True)

    async def update_ticket_status(self, ticket_id: str, status: str) -> Ticket:
        """Set a ticket's status (e.g. open, in progress, pending, resolved).

        Raises:
            KlinkInputError, NotFound, KlinkAPIError, KlinkConnectionError.
        """
        path_params = _id(ticket_id, "ticket_id")
        body = {"status": _text(status, "status")}
        data = await self._http.call("update_ticket_status", path_params=path_params, body=body)
        return _one(Ticket, data, "update_ticket_status", write=True)

    # -- CX logs and messages ---------------------------------------------------------------------------

    async def list_cx_logs(
        self,
        *,
        start: datetime,
        end: datetime,
        timezone: str,
        page: int = 1,
        page_size: int = 10,
    ) -> Page[CxLog]:
        """One page of CX logs started between `start` and `end`, read in the IANA zone `timezone`.

        Naive datetimes are wall time in `timezone`; aware ones are converted to it.

        Raises:
            KlinkInputError: an unknown zone, end before start, bad paging (nothing is sent).
            KlinkAPIError, KlinkConnectionError.
        """
        zone = _zone(timezone)
        first = _in_zone(_datetime(start, "start"), zone)
        last = _in_zone(_datetime(end, "end"), zone)
        if last < first:
            raise KlinkInputError("end", "must not be before start")
        page, page_size = _page_args(page, page_size)
        selected = f"{first.strftime(_CX_DATE_FORMAT)}-{last.strftime(_CX_DATE_FORMAT)}"
        raw = await self._http.call(
            "list_cx_logs",
            query={"selectedDate": selected},
            headers={"x-client-timezone": zone.key},
            page=page,
            page_size=page_size,
        )
        return _page(CxLog, raw, "list_cx_logs")

    async def send_message(
        self,
        *,
        contact_id: str,
        message: str,
        message_type: str = "text",
        created_at: datetime | None = None,
    ) -> SentMessage:
        """Send a message to a contact (it reaches a real customer and cannot be undone).

        `created_at` defaults to now; a naive value is taken as UTC.

        Raises:
            KlinkInputError, NotFound, KlinkAPIError, KlinkConnectionError,
            AmbiguousWriteError: it may or may not have been sent; check before sending again.
        """
        validate_id(contact_id, field="contact_id")
        stamp = _datetime(created_at, "created_at") if created_at is not None else datetime.now(UTC)
        body = {
            "contactId": contact_id,
            "messageType": _text(message_type, "message_type"),
            "message": _text(message, "message"),
            "createdAt": _iso_utc_millis(stamp),
        }
        data = await self._http.call("send_message", body=body)
        if not isinstance(data, Mapping):
            # The message is out; an odd answer must not read as a failure (a retry would resend it).
            log.warning("send_message: K-LINK's answer carried no message record")
            return SentMessage()
        return SentMessage.model_validate(data)


def _id(value: object, field: str) -> PathParams:
    return {"id": (field, value)}


def _dedupe(items: list[T]) -> list[T]:
    seen: set[str] = set()
    unique: list[T] = []
    for item in items:
        key = getattr(item, "id", None)
        if isinstance(key, str):
            if key in seen:
                continue
            seen.add(key)
        unique.append(item)
    return unique


__all__ = ["MAX_PAGE_SIZE", "KlinkClient", "KlinkError", "TagAction"]

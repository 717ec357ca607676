"""Contact tools: list, find, read, create, update, delete, groups, tags.

Each tool is a module-level handler (first parameter: the `ServerState`) and a `ToolSpec` in
`SPECS`. `create_contact` and `update_contact` are compiled per tenant: their parameters come from the
tenant's contact form (see `klink_mcp.forms`) and they are re-registered when the form changes.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.types import InputRequiredResult
from pydantic import Field

from klink_mcp.api.errors import ErrorCode
from klink_mcp.api.models import Contact
from klink_mcp.api.models import Page as ApiPage
from klink_mcp.content import UNTRUSTED_NOTE
from klink_mcp.forms import FormSchema
from klink_mcp.guard.policy import Risk, ToolPolicy, update_effect_risk
from klink_mcp.tools import previews
from klink_mcp.tools.errors import ToolFailure
from klink_mcp.tools.filtering import FilteredList, Scanned, honest_page
from klink_mcp.tools.guarded import guarded_outcome, run_guarded
from klink_mcp.tools.params import (
    ConfirmationToken,
    ContactId,
    Page,
    PageSize,
    TagNames,
    custom_fields_param,
    kw,
)
from klink_mcp.tools.results import ListResult, WriteOutcome, form_field_list
from klink_mcp.tools.spec import FINDS_CONTACTS, ToolSpec
from klink_mcp.tools.state import ServerState
from klink_mcp.tools.views import (
    ContactDetail,
    ContactSummary,
    FormFieldView,
    GroupView,
    contact_detail,
    contact_summary,
    group_view,
)

_R, _W, _D = Risk.READ, Risk.WRITE, Risk.DESTRUCTIVE


class CreateContactOutcome(WriteOutcome):
    """`duplicate_found`: nothing was created; `contact` is the existing contact with the same email
    or phone, and `next_step` says how to proceed."""

    status: Literal["done", "approval_required", "confirmation_required", "cancelled", "duplicate_found"]  # type: ignore[assignment]
    contact: ContactDetail | None = None


class UpdateContactOutcome(WriteOutcome):
    contact: ContactDetail | None = None


class DeleteContactOutcome(WriteOutcome):
    deleted_contact_id: str | None = None


class ContactTagsOutcome(WriteOutcome):
    contact_id: str
    tags: list[str] | None = Field(default=None, description="The contact's tags after the change.")


async def list_contacts(
    state: ServerState,
    ctx: Context[Any, Any],
    keyword: Annotated[
        str | None,
        Field(
            max_length=200,
            description="Search text: matches names, emails, phones (any punctuation) and contact numbers.",
        ),
    ] = None,
    page: Page = 1,
    page_size: PageSize = 10,
) -> FilteredList[ContactSummary]:
    needle = (keyword or "").strip()

    async def searched(number: int, size: int) -> ApiPage[Contact]:
        return await state.client.list_contacts(keyword=needle or None, page=number, page_size=size)

    async def every(number: int, size: int) -> ApiPage[Contact]:
        return await state.client.list_contacts(page=number, page_size=size)

    async def progress(done: int, total: int) -> None:
        await ctx.report_progress(done, total, f"read {done} of {total} pages of contacts")

    contacts, facts = await honest_page(
        fetch_filtered=searched,
        fetch_unfiltered=every,
        keep=contact_matcher(needle) if needle else None,
        what="contact keyword",
        page=page,
        page_size=page_size,
        concurrency=state.settings.page_concurrency,
        progress=progress,
    )
    views = [contact_summary(c) for c in contacts]
    if isinstance(facts, Scanned):
        return facts.as_list(views, page, page_size)
    return FilteredList[ContactSummary].of_page(facts, views, page_size)


def contact_matcher(keyword: str) -> Callable[[Contact], bool]:
    """The keyword search as a check on one contact: a case-insensitive part of the name, an email,
    the contact number or a phone (a phone also matches on its digits, whatever the punctuation)."""
    needle = keyword.strip().lower()
    digits = re.sub(r"\D", "", needle)

    def keep(c: Contact) -> bool:
        texts = [c.name, c.contact_number, *(e.email for e in c.contact_emails)]
        if any(needle in str(t or "").lower() for t in texts):
            return True
        for p in c.contact_phones:
            phone = str(p.phone or "")
            if needle in phone.lower() or (len(digits) >= 4 and digits in re.sub(r"\D", "", phone)):
                return True
        return False

    return keep


async def find_contacts_by_social_platform_id(
    state: ServerState,
    social_platform_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=256,
            description="The customer's id on a messaging platform (e.g. a LINE user id, a Messenger "
            "PSID, a WhatsApp number) as K-LINK stores it in platformContacts.",
        ),
    ],
) -> ListResult[ContactSummary]:
    contacts = await state.client.find_contacts_by_social_platform_id(social_platform_id)
    return ListResult[ContactSummary].whole([contact_summary(c) for c in contacts])


async def get_contact_form_fields(
    state: ServerState,
    custom_only: Annotated[bool, Field(description="Only the custom cf_* fields.")] = False,
) -> ListResult[FormFieldView]:
    return form_field_list(await state.client.all_contact_form_fields(), custom_only=custom_only)


async def get_contact(state: ServerState, contact_id: ContactId) -> ContactDetail:
    return contact_detail(await state.client.get_contact(contact_id))


async def delete_contact(
    state: ServerState,
    ctx: Context[Any, Any],
    contact_id: ContactId,
    confirmation_token: ConfirmationToken = None,
) -> DeleteContactOutcome | InputRequiredResult:
    async def execute() -> None:
        await state.client.delete_contact(contact_id)

    ran = await run_guarded(
        state,
        ctx,
        tool="delete_contact",
        args={"contact_id": contact_id},
        confirmation_token=confirmation_token,
        load_preview=lambda: previews.delete_contact(state, contact_id),
        execute=execute,
        target_ids={"contact_id": contact_id},
    )
    if isinstance(ran, InputRequiredResult):
        return ran
    _, outcome = ran
    deleted = contact_id if outcome["status"] == "done" else None
    return DeleteContactOutcome(**outcome, deleted_contact_id=deleted)


async def list_contact_groups(state: ServerState) -> ListResult[GroupView]:
    groups = await state.client.list_contact_groups()
    return ListResult[GroupView].whole([group_view(g) for g in groups])


async def update_contact_tags(
    state: ServerState,
    ctx: Context[Any, Any],
    contact_id: ContactId,
    action: Annotated[
        Literal["MERGE", "REPLACE", "REMOVE"],
        Field(
            description="MERGE adds the tags; REPLACE sets exactly these tags (removing others); "
            "REMOVE takes these tags off. REPLACE and REMOVE need the user's confirmation."
        ),
    ],
    tags: TagNames,
    confirmation_token: ConfirmationToken = None,
) -> ContactTagsOutcome | InputRequiredResult:
    clean = sorted({t.strip() for t in tags if t.strip()})
    if not clean:
        raise ToolFailure(
            ErrorCode.VALIDATION, "tags: give at least one non-blank tag name.", fields=["tags"]
        )
    args = {"contact_id": contact_id, "action": action, "tags": clean}

    async def execute() -> list[str]:
        await state.client.update_contact_tags(contact_id, action=action, tags=clean)
        after = contact_summary(await state.client.get_contact(contact_id))
        return after.tags

    ran = await run_guarded(
        state,
        ctx,
        tool="update_contact_tags",
        args=args,
        confirmation_token=confirmation_token,
        load_preview=lambda: previews.contact_tags(state, contact_id, action, clean),
        execute=execute,
        target_ids={"contact_id": contact_id},
    )
    return guarded_outcome(ContactTagsOutcome, "tags", ran, contact_id=contact_id)


def _tag_update_risk(args: Any, settings: Any = None) -> Risk:
    # The tool layer may name the K-LINK field `actionType` in snake_case or shorter; accept each
    # spelling. A missing or unrecognised action is treated as destructive: fail closed.
    for key in ("action", "action_type", "actionType", "mode"):
        value = args.get(key)
        if value is not None:
            return Risk.WRITE if str(value).strip().upper() == "MERGE" else Risk.DESTRUCTIVE
    return Risk.DESTRUCTIVE


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def _tag_names(tags: list[str] | None) -> list[str]:
    return sorted({t.strip() for t in tags or [] if t.strip()})


# -- compiled from the tenant's contact form ---------------------------------------------------------


def _contact_tags_param(description: str) -> inspect.Parameter:
    return kw(
        "tags",
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=100)]] | None,
            Field(max_length=50, description=description),
        ],
        None,
    )


_TAGS_SET = "Tag names to set on the contact."
_TAGS_REPLACE = (
    "Tag names: REPLACES every tag of the contact (tags not listed are removed; [] removes all), so it "
    "needs the user's approval. To only add tags use update_contact_tags with MERGE."
)


def create_contact_parameters(schema: FormSchema, guarded: bool) -> list[inspect.Parameter]:
    """The parameters of `create_contact`: the form's built-ins, `custom_fields`, tags (and the token)."""
    params = [
        kw("ctx", Context[Any, Any]),
        *schema.builtin_parameters(for_update=False),
        *custom_fields_param(schema, for_update=False, kind="contact"),
        _contact_tags_param(_TAGS_SET),
        kw("allow_duplicate", AllowDuplicate, False),
        *([kw("confirmation_token", ConfirmationToken, None)] if guarded else []),
    ]
    params.sort(key=lambda p: p.default is not p.empty)
    return params


AllowDuplicate = Annotated[
    bool,
    Field(
        description="Create the contact even though one with the same email or phone exists. Only when "
        "the user confirmed they want a second contact."
    ),
]


def _email_key(value: object) -> str:
    return str(value or "").strip().lower()


def _phone_digits(value: object) -> str:
    # Country-code and trunk-prefix spellings differ ('+66 81-234 5678', '0812345678'): compare the
    # digits without leading zeros, one ending the other when at least 8 digits remain.
    return re.sub(r"\D", "", str(value or "")).lstrip("0")


def _same_phone(a: str, b: str) -> bool:
    if not a or not b:
        return False
    short, long = sorted((a, b), key=len)
    return long.endswith(short) and len(short) >= 8


async def find_duplicate(
    state: ServerState, emails: list[str], phones: list[str]
) -> tuple[Contact, str] | None:
    """An existing contact with one of these emails or phones, and which value matched.

    Searches with the contact list's keyword (checked like `list_contacts`, so a tenant that ignores
    the keyword is scanned) and matches exactly on the normalised email or phone.

    Raises:
        KlinkError: a K-LINK call failed.
    """
    wanted_emails = {_email_key(e) for e in emails if _email_key(e)}
    wanted_phones = {d for d in (_phone_digits(p) for p in phones) if d}
    queries = list(dict.fromkeys([*wanted_emails, *(p.strip() for p in phones if p.strip())]))
    queries += [d[-8:] for d in wanted_phones if len(d) >= 8 and d[-8:] not in queries]
    for query in queries:

        async def searched(number: int, size: int, q: str = query) -> ApiPage[Contact]:
            return await state.client.list_contacts(keyword=q, page=number, page_size=size)

        async def every(number: int, size: int) -> ApiPage[Contact]:
            return await state.client.list_contacts(page=number, page_size=size)

        found, _ = await honest_page(
            fetch_filtered=searched,
            fetch_unfiltered=every,
            keep=contact_matcher(query),
            what="contact keyword",
            page=1,
            page_size=100,
            concurrency=state.settings.page_concurrency,
        )
        for contact in found:
            for e in contact.contact_emails:
                if _email_key(e.email) in wanted_emails:
                    return contact, f"email {e.email}"
            for ph in contact.contact_phones:
                if any(_same_phone(_phone_digits(ph.phone), w) for w in wanted_phones):
                    return contact, f"phone {ph.phone}"
    return None


def update_contact_parameters(schema: FormSchema, guarded: bool) -> list[inspect.Parameter]:
    """The parameters of `update_contact`: the contact id, then the form's fields, all optional."""
    params = [
        kw("ctx", Context[Any, Any]),
        kw("contact_id", ContactId),
        *schema.builtin_parameters(for_update=True),
        *custom_fields_param(schema, for_update=True, kind="contact"),
        _contact_tags_param(_TAGS_REPLACE),
        *([kw("confirmation_token", ConfirmationToken, None)] if guarded else []),
    ]
    params.sort(key=lambda p: p.default is not p.empty)
    return params


async def create_contact(
    state: ServerState, schema: FormSchema, **kwargs: Any
) -> CreateContactOutcome | InputRequiredResult:
    ctx = kwargs.pop("ctx")
    token = kwargs.pop("confirmation_token", None)
    allow_duplicate = bool(kwargs.pop("allow_duplicate", False))
    body = schema.wire_body(kwargs)
    if tags := _tag_names(kwargs.get("tags")):
        body["tags"] = tags
    if not allow_duplicate:
        duplicate = await find_duplicate(state, _strings(body.get("emails")), _strings(body.get("phones")))
        if duplicate is not None:
            existing, matched = duplicate
            return CreateContactOutcome(
                status="duplicate_found",
                contact=contact_detail(existing),
                reason=f"Contact {existing.id} already has the {matched}; nothing was created.",
                next_step="Use this contact (update_contact changes it). Only if the user wants a "
                "second contact anyway, call create_contact again with the same arguments plus "
                "allow_duplicate=true.",
            )

    async def execute() -> ContactDetail:
        return contact_detail(await state.client.create_contact(body))

    ran = await run_guarded(
        state,
        ctx,
        tool="create_contact",
        args=body,
        confirmation_token=token,
        load_preview=lambda: previews.generic(
            "Create contact", f"Create contact {body.get('name', '')!r}", "contact", None, body
        ),
        execute=execute,
        target_ids={},
    )
    return guarded_outcome(CreateContactOutcome, "contact", ran)


async def update_contact(
    state: ServerState, schema: FormSchema, **kwargs: Any
) -> UpdateContactOutcome | InputRequiredResult:
    ctx = kwargs.pop("ctx")
    token = kwargs.pop("confirmation_token", None)
    contact_id = kwargs.pop("contact_id")
    body = schema.wire_body(kwargs)
    if kwargs.get("tags") is not None:
        # Present, even empty: a contact update with tags replaces every tag (the policy asks).
        body["tags"] = _tag_names(kwargs.get("tags"))
    if not body:
        raise ToolFailure(ErrorCode.VALIDATION, "Nothing to update: give at least one field to change.")

    async def execute() -> ContactDetail:
        # The before-image is read right before the write, so the audit log's before -> after is
        # what this call changed (the preview's copy may be minutes old).
        before = await state.client.get_contact(contact_id)
        after = await state.client.update_contact(contact_id, body)
        changes.update(previews.contact_change(before, after, body))
        return contact_detail(after)

    changes: dict[str, Any] = {}
    ran = await run_guarded(
        state,
        ctx,
        tool="update_contact",
        args={"contact_id": contact_id, **body},
        confirmation_token=token,
        load_preview=lambda: previews.for_contact(state, contact_id, "Update contact", body),
        execute=execute,
        target_ids={"contact_id": contact_id},
        change=lambda _: changes,
    )
    return guarded_outcome(UpdateContactOutcome, "contact", ran)


# -- the specs ---------------------------------------------------------------------------------------

LIST_CONTACTS = ToolSpec(
    name="list_contacts",
    title="List or search contacts",
    description="Search the tenant's contacts (customers) by name, email, phone or contact number, or "
    "page through all of them. Returns compact summaries with ids; use get_contact for one contact "
    "in full and list_contact_tickets for their tickets. Times are UTC.",
    toolset="contacts",
    effects=ToolPolicy(_R, idempotent=True),
    output=FilteredList[ContactSummary],
    handler=list_contacts,
    hints=FINDS_CONTACTS,
)
CREATE_CONTACT = ToolSpec(
    name="create_contact",
    title="Create a contact",
    description="Create a contact in K-LINK. Parameters are this tenant's contact form: built-in fields at "
    "the top level, custom cf_* fields inside custom_fields. If a contact with the same email or phone "
    "exists, nothing is created: the answer is status 'duplicate_found' with that contact (pass "
    "allow_duplicate=true only when the user wants a second one). Returns the new contact with its id.",
    toolset="contacts",
    effects=ToolPolicy(_W, idempotent=False),  # POST: a repeat creates a second contact
    output=CreateContactOutcome,
    handler=create_contact,
    hints=FINDS_CONTACTS,
    form="contact",
    form_parameters=create_contact_parameters,
)
FIND_CONTACTS_BY_SOCIAL_PLATFORM_ID = ToolSpec(
    name="find_contacts_by_social_platform_id",
    title="Find contacts by social platform id",
    description="Find the contact(s) behind a messaging-platform id (WhatsApp, Messenger, LINE...). "
    "Use this when a webhook event or a message gives a platform id instead of a contact id.",
    toolset="contacts",
    effects=ToolPolicy(_R, idempotent=True),
    output=ListResult[ContactSummary],
    handler=find_contacts_by_social_platform_id,
    hints=FINDS_CONTACTS,
)
GET_CONTACT_FORM_FIELDS = ToolSpec(
    name="get_contact_form_fields",
    title="Contact form fields",
    description="The tenant's contact fields (built-in and custom cf_*), with types, required flags and "
    "the allowed values of select fields. create_contact/update_contact already take these as typed "
    "parameters; use this to see every option of a long select list.",
    toolset="contacts",
    effects=ToolPolicy(_R, idempotent=True),
    output=ListResult[FormFieldView],
    handler=get_contact_form_fields,
    hints=FINDS_CONTACTS,
)
GET_CONTACT = ToolSpec(
    name="get_contact",
    title="Get a contact",
    description="One contact in full: emails, phones, address, notes, social profiles, tags and custom "
    f"fields. {UNTRUSTED_NOTE}",
    toolset="contacts",
    effects=ToolPolicy(_R, idempotent=True),
    output=ContactDetail,
    handler=get_contact,
    hints=FINDS_CONTACTS,
)
UPDATE_CONTACT = ToolSpec(
    name="update_contact",
    title="Update a contact",
    description="Change some fields of a contact (only the fields you pass are sent). Same fields as "
    "create_contact, all optional. Clearing a field, replacing the tags, the name, e-mails or phones "
    "needs the user's approval; other changes run directly and are recorded (before -> after) in the "
    "audit log. To add or remove single tags use update_contact_tags.",
    toolset="contacts",
    # PATCH with set semantics: destructive when it clears, replaces tags or identity (see policy).
    effects=ToolPolicy(
        _D,
        idempotent=True,
        risk_for_args=update_effect_risk,
        guarded_when="When it clears a field or replaces the tags, the name, e-mails or phones (or, "
        "with KLINK_CONFIRM_OVERWRITES, changes any field),",
    ),
    output=UpdateContactOutcome,
    handler=update_contact,
    hints=FINDS_CONTACTS,
    form="contact",
    form_parameters=update_contact_parameters,
)
DELETE_CONTACT = ToolSpec(
    name="delete_contact",
    title="Delete a contact (needs the user's confirmation)",
    description="Delete a contact. This cannot be undone, so the server asks the user first.",
    toolset="contacts",
    effects=ToolPolicy(_D, idempotent=True, irreversible=True),
    output=DeleteContactOutcome,
    handler=delete_contact,
    hints=FINDS_CONTACTS,
)
LIST_CONTACT_GROUPS = ToolSpec(
    name="list_contact_groups",
    title="List contact groups",
    description="The tenant's contact groups (segments), with ids and names.",
    toolset="contacts",
    effects=ToolPolicy(_R, idempotent=True),
    output=ListResult[GroupView],
    handler=list_contact_groups,
    hints=FINDS_CONTACTS,
)
UPDATE_CONTACT_TAGS = ToolSpec(
    name="update_contact_tags",
    title="Add, replace or remove a contact's tags",
    description="Change a contact's tags by tag NAME (list_tags shows existing names; MERGE creates new "
    "ones). MERGE runs directly; REPLACE and REMOVE take tags off, so the server asks the user first.",
    toolset="contacts",
    # MERGE only adds tags (a write); REPLACE and REMOVE take tags away (destructive).
    effects=ToolPolicy(
        _D,
        idempotent=True,
        risk_for_args=_tag_update_risk,
        irreversible=True,
        guarded_when="With action REPLACE or REMOVE (they take tags away)",
    ),
    output=ContactTagsOutcome,
    handler=update_contact_tags,
    hints=FINDS_CONTACTS,
)

SPECS: tuple[ToolSpec, ...] = (
    LIST_CONTACTS,
    FIND_CONTACTS_BY_SOCIAL_PLATFORM_ID,
    GET_CONTACT_FORM_FIELDS,
    GET_CONTACT,
    DELETE_CONTACT,
    LIST_CONTACT_GROUPS,
    UPDATE_CONTACT_TAGS,
    CREATE_CONTACT,
    UPDATE_CONTACT,
)

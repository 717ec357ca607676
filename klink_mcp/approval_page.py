"""The approval page: where a person, not the model, approves or declines one guarded call.

Served by the server itself, on two kinds of address:

* stdio: `LoopbackApprovalServer` starts a small HTTP server on first need on 127.0.0.1 (an ephemeral
  port unless `KLINK_APPROVAL_PORT` fixes one), on the server's own event loop; `aclose()` (or the end
  of the event loop) stops it;
* `serve --http`: `mount_approval_page(app, mcp, allowed_hosts)` routes `/approvals/...` of the MCP
  HTTP app to the same page (outside the bearer-token check: the person's browser has no token; the
  unguessable id in the address is the capability).

`GET /approvals/<id>` shows the whole preview (who, what, which channel, the exact text with every
invisible or bidi character written as a visible ``⟦U+202E⟧`` marker, every argument in full, personal
data masked as in the preview) and Approve / Decline buttons; for a text sent to a customer the person
may edit it. `POST /approvals/<id>` decides. Defences, each needed on its own:

* the id is 192 random bits; an unknown id and a malformed one get the same 404;
* `Host` must be one of the allowed names (DNS rebinding: a hostile site resolving its own name to
  127.0.0.1 cannot talk to the page): 421 otherwise;
* a GET never changes state. The POST must carry the CSRF token of the page's form, an HMAC of the
  approval id and a random value held in a `SameSite=Strict; HttpOnly` cookie set by that GET
  (double submit bound to this approval); a cross-site `Sec-Fetch-Site` or a foreign `Origin` is
  refused. (`Referrer-Policy: no-referrer` makes browsers send ``Origin: null`` on a form POST; that
  value is accepted only together with ``Sec-Fetch-Site: same-origin``, which a page cannot forge);
* the decision is a compare-and-set in the store: one decision per approval, ever;
* every response: a content security policy that loads nothing (`default-src 'none'`; the one inline
  style carries a per-response nonce; `form-action 'self'`; `frame-ancestors 'none'`),
  `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`, `Cache-Control: no-store`, `nosniff`.

Who approves: when the HTTP app has OpenID sign-in (`KLINK_OAUTH_CLIENT_ID`), the page needs a
signed-in person: a GET without one is redirected to `/approvals/login?next=<this page>`, a POST
without one is refused. `may_approve` then decides (the `klink:approve` scope; for the tools in
`KLINK_FOUR_EYES_TOOLS` a different person from the one who asked), the decision records the person
and the request id, and every decision is counted (`observe_approval`). Without sign-in the tools in
`KLINK_FOUR_EYES_TOOLS` cannot be approved on the page at all (nobody can be told apart).

What it cannot stop: a program running as the user on the same machine can drive the page like a
browser (an assistant with a shell tool could `curl` it). Against that, use a client with elicitation
and `KLINK_CONFIRM=elicit`.

This module must not log approval ids, page addresses, CSRF values or message text, must not import
the tool layer, and never runs a tool: the guard does, after reading the decision from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import html
import json
import logging
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from klink_mcp.auth.four_eyes import may_approve
from klink_mcp.auth.oidc import LOGIN_PATH, current_person
from klink_mcp.config import Settings
from klink_mcp.content import clean_outgoing_text, reveal_invisible
from klink_mcp.guard.approvals import ApprovalRecord, ApprovalStore, DecidedBy
from klink_mcp.guard.preview import mask_email, mask_phone
from klink_mcp.ops import current_request_id, observe_approval

__all__ = [
    "APPROVAL_PATH",
    "LOOPBACK_ALLOWED_HOSTS",
    "ApprovalPage",
    "LoopbackApprovalServer",
    "mount_approval_page",
]

logger = logging.getLogger("klink_mcp.approval_page")

APPROVAL_PATH = "/approvals"
LOOPBACK_ALLOWED_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
_COOKIE = "klink_approval_csrf"
_ID_SHAPE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
_MAX_FORM_BYTES = 256 * 1024
_EMAIL_KEY = re.compile(r"e-?mail", re.IGNORECASE)
_PHONE_KEY = re.compile(r"phone|mobile|whatsapp", re.IGNORECASE)

OnDecided = Callable[[ApprovalRecord], Awaitable[None]]

_STYLE = """
body{font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
main{max-width:46rem;margin:2rem auto;background:#fff;border:1px solid #d8dce3;border-radius:10px;padding:1.5rem 2rem}
h1{font-size:1.35rem;margin:.2rem 0 .6rem}
.kind{font-size:.8rem;letter-spacing:.06em;text-transform:uppercase;color:#5b6475}
.warn{background:#fff4e5;border:1px solid #f0b45a;border-radius:6px;padding:.5rem .8rem;margin:.8rem 0}
.note{color:#8a4b00;font-size:.9rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:.8rem 0}
dt{color:#5b6475}dd{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f7f8fa;border:1px solid #e1e4ea;border-radius:6px;
padding:.6rem .8rem;margin:.3rem 0;font:14px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
textarea{width:100%;box-sizing:border-box;min-height:8rem;font:15px/1.4 ui-monospace,Menlo,monospace;padding:.5rem}
.buttons{display:flex;gap:1rem;margin-top:1.2rem}
button{font-size:1rem;padding:.6rem 1.6rem;border-radius:6px;border:1px solid #9aa3b2;background:#fff;cursor:pointer}
button.approve{background:#1f7a3a;border-color:#1f7a3a;color:#fff}
.state{font-weight:600}
footer{color:#5b6475;font-size:.85rem;margin-top:1rem}
"""


def _host_allowed(host: str, allowed: Sequence[str]) -> bool:
    host = host.strip().lower()
    if not host:
        return False
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern.endswith(":*"):
            name = pattern[:-2]
            if host == name or (host.startswith(name + ":") and host[len(name) + 1 :].isdigit()):
                return True
        elif host == pattern:
            return True
    return False


def _security_headers(nonce: str | None = None) -> dict[str, str]:
    style = f"style-src 'nonce-{nonce}'" if nonce else "style-src 'none'"
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; {style}; img-src 'none'; script-src 'none'; connect-src 'none'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _shown(text: str) -> str:
    """Escaped, with every invisible character made visible."""
    return _e(reveal_invisible(text))


def _mask_arg(key: str, value: Any) -> Any:
    if isinstance(value, str) and _EMAIL_KEY.search(key):
        return mask_email(value)
    if isinstance(value, str) and _PHONE_KEY.search(key):
        return mask_phone(value)
    if isinstance(value, list) and (_EMAIL_KEY.search(key) or _PHONE_KEY.search(key)):
        return [_mask_arg(key, item) for item in value]
    if isinstance(value, dict):
        return {k: _mask_arg(str(k), v) for k, v in value.items()}
    return value


class ApprovalPage:
    """The page's routes over an `ApprovalStore`. One instance per guard.

    `on_decided` is awaited after every decision the page stored (the guard audits it there).
    """

    def __init__(
        self,
        store: ApprovalStore,
        *,
        on_decided: OnDecided | None = None,
        clock: Callable[[], float] = time.time,
        allowed_hosts: Sequence[str] = LOOPBACK_ALLOWED_HOSTS,
        settings: Settings | None = None,
        csrf_key: bytes | None = None,
    ) -> None:
        """`csrf_key`: replicas behind a load balancer pass one derived from their shared secret, so
        a page shown by one replica can be submitted to another."""
        self.store = store
        self.settings = settings
        self.sign_in: Any = None  # the HTTP app's ApprovalSignIn when OpenID sign-in is configured
        self._on_decided = on_decided
        self._clock = clock
        self._key = csrf_key if csrf_key is not None else secrets.token_bytes(32)
        self.allowed_hosts: tuple[str, ...] = tuple(allowed_hosts)

    def __repr__(self) -> str:
        return f"ApprovalPage(allowed_hosts={self.allowed_hosts!r})"

    def routes(self) -> list[Route]:
        """The page's Starlette routes (under `APPROVAL_PATH`)."""
        return [Route(APPROVAL_PATH + "/{approval_id}", self._endpoint, methods=["GET", "POST"])]

    def app(self, allowed_hosts: Sequence[str] | None = None) -> Starlette:
        """A Starlette app serving only the page (with its own Host allow-list when given)."""
        if allowed_hosts is not None:
            self.allowed_hosts = tuple(allowed_hosts)
        app = Starlette(routes=self.routes())
        app.state.klink_sign_in = self.sign_in  # read by current_person
        return app

    def _four_eyes(self, record: ApprovalRecord) -> bool:
        return self.settings is not None and record.tool in self.settings.four_eyes_tools

    def _csrf(self, approval_id: str, cookie: str) -> str:
        return hmac.new(self._key, f"{approval_id}|{cookie}".encode(), hashlib.sha256).hexdigest()

    # -- responses -----------------------------------------------------------------------------

    def _page(self, status: int, title: str, body: str, *, cookie: tuple[str, str] | None = None) -> Response:
        nonce = secrets.token_urlsafe(16)
        document = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<meta name="robots" content="noindex"><title>{_e(title)}</title>'
            f'<style nonce="{nonce}">{_STYLE}</style></head><body><main>{body}</main></body></html>'
        )
        response = HTMLResponse(document, status_code=status, headers=_security_headers(nonce))
        if cookie is not None:
            name, path = cookie
            response.set_cookie(
                _COOKIE, name, max_age=3600, path=path, httponly=True, samesite="strict", secure=False
            )
        return response

    def _plain(self, status: int, message: str) -> Response:
        return self._page(status, message, f"<h1>{_e(message)}</h1>")

    # -- the endpoint --------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        if not _host_allowed(request.headers.get("host", ""), self.allowed_hosts):
            return Response("Misdirected request", status_code=421, headers=_security_headers())
        approval_id = request.path_params["approval_id"]
        record = await self.store.get(approval_id) if _ID_SHAPE.match(approval_id) else None
        if record is None:
            return self._plain(404, "No such approval (it may have expired).")
        person = current_person(request)
        if self.sign_in is not None and person is None:
            if request.method == "GET":
                target = f"{LOGIN_PATH}?{urlencode({'next': request.url.path})}"
                return RedirectResponse(target, status_code=303, headers=_security_headers())
            return self._plain(403, "Refused: sign in to decide on this approval.")
        if request.method == "GET":
            return self._show(request, record)
        return await self._decide(request, record)

    def _show(
        self, request: Request, record: ApprovalRecord, *, notice: str | None = None, status: int = 200
    ) -> Response:
        cookie = request.cookies.get(_COOKIE, "")
        if not re.fullmatch(r"[A-Za-z0-9_-]{32,64}", cookie):
            cookie = secrets.token_urlsafe(32)
        now = self._clock()
        body = self._render(record, now, csrf=self._csrf(record.id, cookie), notice=notice)
        return self._page(
            status, "Approve this action?", body, cookie=(cookie, f"{APPROVAL_PATH}/{record.id}")
        )

    def _origin_ok(self, request: Request) -> bool:
        site = request.headers.get("sec-fetch-site")
        if site is not None and site != "same-origin":
            return False
        origin = request.headers.get("origin")
        if origin is None:
            return False
        if origin == "null":
            # Referrer-Policy: no-referrer serialises the origin of a form POST as "null"; the browser's
            # own Sec-Fetch-Site then vouches for it.
            return site == "same-origin"
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
        return origin.lower() == expected

    async def _decide(self, request: Request, record: ApprovalRecord) -> Response:
        if not self._origin_ok(request):
            return self._plain(403, "Refused: this form must be sent from the approval page itself.")
        if int(request.headers.get("content-length") or 0) > _MAX_FORM_BYTES:
            return self._plain(413, "Refused: the form is too large.")
        form = await request.form(max_files=0, max_fields=8)
        cookie = request.cookies.get(_COOKIE, "")
        given = str(form.get("csrf") or "")
        if not cookie or not given or not hmac.compare_digest(given, self._csrf(record.id, cookie)):
            return self._plain(403, "Refused: open the approval page again and use its buttons.")
        decision = str(form.get("decision") or "")
        if decision not in ("approve", "decline"):
            return self._plain(400, "Refused: unknown decision.")
        now = self._clock()
        if record.state_at(now) != "pending":
            return self._show(request, record, notice="This approval was already decided or has expired.")
        approve = decision == "approve"
        person = current_person(request)
        if approve and (self.sign_in is not None or self._four_eyes(record)):
            allowed, why = (
                may_approve(person, record.requester, record.tool, self.settings)
                if self.settings is not None
                else (person is not None, "Sign in to approve.")
            )
            if not allowed:
                return self._show(request, record, notice=f"Not approved: {why}", status=403)
        text: str | None = None
        removed = 0
        if approve and record.text_field is not None:
            original = record.args.get(record.text_field)
            submitted = form.get("text") if record.editable else None
            raw = (
                submitted if isinstance(submitted, str) else (original if isinstance(original, str) else None)
            )
            if raw is not None:
                cleaned = clean_outgoing_text(raw)
                if not cleaned.text.strip():
                    return self._show(request, record, notice="The text is empty: nothing to send.")
                text, removed = cleaned.text, cleaned.removed
        decided = await self.store.decide(
            record.id,
            approve=approve,
            now=now,
            decided_by=DecidedBy(
                via="url_elicitation" if record.delivery == "url_elicitation" else "page",
                client=request.client.host if request.client else None,
                user_agent=(request.headers.get("user-agent") or "")[:400] or None,
                person=None if person is None else person.subject,
                request_id=current_request_id(),
            ),
            approved_text=text,
            removed_invisible=removed,
        )
        if decided is None:
            latest = await self.store.get(record.id)
            return self._show(
                request, latest or record, notice="This approval was already decided or has expired."
            )
        observe_approval("granted" if approve else "denied")
        if self._on_decided is not None:
            await self._on_decided(decided)
        return self._show(request, decided)

    # -- rendering -----------------------------------------------------------------------------

    def _render(self, record: ApprovalRecord, now: float, *, csrf: str, notice: str | None) -> str:
        preview = record.preview
        target = preview.get("target") or {}
        state = record.state_at(now)
        parts: list[str] = [f'<div class="kind">klink-mcp asks you to approve: {_e(record.tool)}</div>']
        parts.append(f"<h1>{_shown(str(preview.get('action', record.tool)))}</h1>")
        parts.append(f"<p>{_shown(str(preview.get('summary', '')))}</p>")
        if notice:
            parts.append(f'<p class="warn">{_e(notice)}</p>')
        if preview.get("irreversible"):
            parts.append('<p class="warn"><strong>This cannot be undone.</strong></p>')
        rows = [("Target", f"{target.get('kind', '')} {target.get('id', '')}")]
        for key, label in (("name", "Name"), ("masked_email", "E-mail"), ("masked_phone", "Phone")):
            if target.get(key):
                rows.append((label, str(target[key])))
        for key, value in (preview.get("details") or {}).items():
            rows.append((str(key), str(value)))
        parts.append("<dl>" + "".join(f"<dt>{_shown(k)}</dt><dd>{_shown(v)}</dd>" for k, v in rows) + "</dl>")
        text_value = record.args.get(record.text_field) if record.text_field else None
        if isinstance(text_value, str):
            cleaned = clean_outgoing_text(text_value)
            parts.append("<h2>Exact text to be sent</h2>")
            parts.append(f"<pre>{_shown(text_value)}</pre>")
            if cleaned.note:
                parts.append(
                    f'<p class="note">{_e(cleaned.note)} before sending (shown above as ⟦U+…⟧ markers).</p>'
                )
        masked = {k: _mask_arg(k, v) for k, v in record.args.items()}
        parts.append("<h2>Arguments, in full</h2>")
        parts.append(f"<pre>{_shown(json.dumps(masked, ensure_ascii=False, indent=2, sort_keys=True))}</pre>")
        parts.append(self._decision_block(record, state, csrf, text_value))
        return "".join(parts)

    def _decision_block(self, record: ApprovalRecord, state: str, csrf: str, text_value: Any) -> str:
        if state == "pending":
            remaining = max(int(record.expires_at - self._clock()), 0)
            editor = ""
            if record.editable and isinstance(text_value, str):
                editor = (
                    '<h2><label for="text">Edit before approving (this exact text is sent)</label></h2>'
                    f'<textarea id="text" name="text">{_e(clean_outgoing_text(text_value).text)}</textarea>'
                )
            return (
                f'<form method="post" action="{APPROVAL_PATH}/{_e(record.id)}">'
                f'<input type="hidden" name="csrf" value="{_e(csrf)}">{editor}'
                '<div class="buttons"><button class="approve" type="submit" name="decision" value="approve" '
                'id="approve">Approve</button><button type="submit" name="decision" value="decline" '
                f'id="decline">Decline</button></div></form><footer>Expires in {remaining // 60} min '
                f"{remaining % 60} s. Approve only if you asked for exactly this.</footer>"
            )
        words = {
            "approved": "Approved. Go back to your assistant: it runs the action when it calls the tool again.",
            "declined": "Declined. Nothing will be done.",
            "expired": "Expired. Nothing will be done; ask your assistant to try again.",
            "consumed": "Approved and done.",
        }
        out = f'<p class="state" id="state" data-state="{_e(state)}">{_e(words.get(state, state))}</p>'
        if state in ("approved", "consumed") and record.approved_text is not None:
            out += (
                f'<h2>Text that will be sent</h2><pre id="approved-text">{_shown(record.approved_text)}</pre>'
            )
        return out


class LoopbackApprovalServer:
    """The page on 127.0.0.1 (stdio mode), started on first need on the running event loop."""

    def __init__(self, page: ApprovalPage, port: int = 0) -> None:
        self.page = page
        self.port = port
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._base_url: str | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"LoopbackApprovalServer(base_url={self._base_url!r})"

    @property
    def base_url(self) -> str | None:
        """``http://127.0.0.1:<port>`` once started, else None."""
        return self._base_url

    async def ensure_started(self) -> str:
        """Start the server if needed and return its base URL.

        Raises:
            OSError: the port cannot be bound (e.g. `KLINK_APPROVAL_PORT` is taken).
        """
        async with self._lock:
            if self._base_url is not None and self._task is not None and not self._task.done():
                return self._base_url
            import uvicorn

            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", self.port))
                sock.listen(64)
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            port = sock.getsockname()[1]
            config = uvicorn.Config(
                self.page.app(LOOPBACK_ALLOWED_HOSTS),
                log_config=None,
                access_log=False,  # the path carries the approval id
                lifespan="off",
                timeout_graceful_shutdown=1,
                server_header=False,
            )
            config.load()
            server = _quiet_server_class()(config)
            server.lifespan = config.lifespan_class(config)  # what uvicorn's serve() sets before startup()
            await server.startup(sockets=[sock])
            self._server = server
            self._task = asyncio.get_running_loop().create_task(self._run(server, sock))
            self._base_url = f"http://127.0.0.1:{port}"
            logger.info("approval page listening on 127.0.0.1:%d", port)
            return self._base_url

    @staticmethod
    async def _run(server: Any, sock: socket.socket) -> None:
        try:
            await server.main_loop()
        finally:
            # Cancelled with the event loop, or asked to stop: the listening socket goes either way.
            for srv in getattr(server, "servers", []):
                srv.close()
            for connection in list(server.server_state.connections):
                connection.shutdown()
            sock.close()

    async def aclose(self) -> None:
        """Stop serving (idempotent)."""
        task, self._task = self._task, None
        self._base_url = None
        if task is None:
            return
        self._server.should_exit = True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@functools.cache
def _quiet_server_class() -> Any:
    """uvicorn's server without its signal handlers (the MCP server owns the process's signals)."""
    import uvicorn

    class QuietServer(uvicorn.Server):  # type: ignore[misc]
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer


class _ApprovalDispatch:
    """ASGI: `/approvals/...` to the page, everything else (lifespan included) to the MCP app."""

    def __init__(self, app: ASGIApp, page_app: ASGIApp, passthrough: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.page_app = page_app
        self.passthrough = passthrough  # paths under /approvals/ the app serves (the OpenID sign-in)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        passed = any(path == p or path.startswith(p + "/") for p in self.passthrough)
        if path.startswith(APPROVAL_PATH + "/") and not passed:
            await self.page_app(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def mount_approval_page(
    app: ASGIApp,
    mcp: Any,
    allowed_hosts: Sequence[str],
    *,
    passthrough: Sequence[str] = (),
    sign_in: Any = None,
) -> ASGIApp:
    """`app` with the approval page of `mcp`'s guard under `/approvals/` (for `serve --http`).

    The page sits in front of the bearer-token check on purpose (see the module docstring); it checks
    `Host` itself against `allowed_hosts` (the MCP endpoint's list). Without a guard it returns `app`.
    """
    state = getattr(mcp, "klink_state", None)
    guard = getattr(state, "guard", None)
    page = getattr(guard, "page", None)
    if guard is None or not isinstance(page, ApprovalPage):
        return app
    guard.page_mounted = True
    page.sign_in = sign_in  # who approves: the person signed in with the identity provider
    return _ApprovalDispatch(app, page.app(allowed_hosts), frozenset(passthrough))

"""Prompt templates: the `klink_mcp/prompts/*.md` files, parsed, checked and rendered as MCP prompts.

A file is TOML front matter between `+++` lines (`name`, `description`, `[[arguments]]` with `name`,
`description`, `required`, and optionally `format`, `default`, `example`) and a Markdown body.

The body's syntax:

* `{arg}` is the argument's value (the caller's, else its `default`); `{arg|json}` the same as a JSON
  string literal (for values inside tool calls: a quote in a user's text cannot break the call).
* `{#arg}...{/arg}` is kept only when the caller gave `arg`, `{^arg}...{/arg}` only when they did not,
  so an optional argument that is not given leaves no trace in the text. An optional argument without
  a default may appear only inside its own `{#arg}` section (checked when the file is parsed).
* `{base + N days}` / `{base - N hours}` (optionally `|json`): date arithmetic done here, so that a
  prompt never asks a model to glue words to a time ("last mondayT00:00:00"). `base` is `now` (UTC,
  `YYYY-MM-DDTHH:MM:SSZ`) or an argument of format `date` (gives a date) or `date-time`; the amount is
  a number or an `integer` argument.

Argument formats (`date`, `date-time`, `timezone`, `integer` with optional `minimum`/`maximum`) are
checked before rendering; computed defaults are `@now-24h` (a date-time) and `@previous-monday` (the
Monday of the last full week, in the prompt's `timezone` argument when it has one).

Tool calls in a body are written in backticks as `tool(arg=value, ...)`, and tool, argument and result
field names in backticks too, so tests can check every one against the live tool schemas.

A call with a missing, unknown or malformed argument is refused with a protocol error (invalid params)
that names the argument, the expected format and an example; never an internal error. So is a
`prompts/get` for a prompt that does not exist (`unknown_prompts_refused`). This module must
not call tools or read anything but the packaged prompt files.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources as importlib_resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.mcpserver.prompts.base import Message, Prompt, UserMessage
from mcp.server.mcpserver.prompts.base import PromptArgument as McpPromptArgument
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS

FORMATS = ("date", "date-time", "timezone", "integer")
COMPUTED_DEFAULTS = ("@now-24h", "@previous-monday")
FORMAT_HINTS = {
    "date": "a date as YYYY-MM-DD, e.g. 2026-10-26",
    "date-time": "an ISO-8601 date-time such as 2026-10-30T08:00:00Z or 2026-10-30T15:00:00+07:00 "
    "(or a date YYYY-MM-DD, meaning midnight UTC)",
    "timezone": "an IANA time zone name, e.g. Asia/Bangkok or UTC",
    "integer": "a whole number, e.g. 20",
}
_SECTION = re.compile(r"\{(?P<kind>[#^])(?P<name>[a-z_]+)\}(?P<body>.*?)\{/(?P=name)\}", re.DOTALL)
_SHIFT = re.compile(
    r"\{(?P<base>[a-z_]+) ?(?P<op>[+-]) ?(?P<amount>\d+|[a-z_]+) (?P<unit>days|hours)(?P<json>\|json)?\}"
)
_PLACEHOLDER = re.compile(r"\{(?P<name>[a-z_]+)(?P<json>\|json)?\}")
MAX_VALUE_CHARS = 500


class PromptFileError(ValueError):
    """A prompt file has no valid front matter, or its body uses an argument it does not declare."""


@dataclass(frozen=True)
class PromptSpec:
    """One prompt file. `arguments` are (name, description, required) triples, in file order."""

    name: str
    description: str
    arguments: tuple[tuple[str, str, bool], ...]
    body: str
    formats: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, str] = field(default_factory=dict)
    examples: Mapping[str, str] = field(default_factory=dict)
    bounds: Mapping[str, tuple[int | None, int | None]] = field(default_factory=dict)

    @property
    def argument_names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.arguments)

    def problems(self, values: Mapping[str, Any]) -> list[str]:
        """What is wrong with `values` for this prompt (empty when it can be rendered)."""
        out: list[str] = []
        names = self.argument_names
        for key in values:
            if key not in names:
                listed = ", ".join(names) or "no arguments"
                out.append(f"unknown argument {key!r} (this prompt takes: {listed})")
        for name, _, required in self.arguments:
            value = _given(values, name)
            if value is None:
                if required:
                    out.append(f"missing required argument {name!r}: {self._expected(name)}")
                continue
            problem = self._check(name, value)
            if problem:
                out.append(f"argument {name!r}: {problem}")
        return out

    def _expected(self, name: str) -> str:
        fmt = self.formats.get(name)
        description = next((d for n, d, _ in self.arguments if n == name), "")
        hint = FORMAT_HINTS.get(fmt or "", description)
        example = self.examples.get(name)
        return f"{hint}" + (f" (e.g. {example})" if example and "e.g." not in hint else "")

    def _check(self, name: str, value: str) -> str | None:
        if len(value) > MAX_VALUE_CHARS:
            return f"is {len(value)} characters long, at most {MAX_VALUE_CHARS}"
        fmt = self.formats.get(name)
        shown = json.dumps(value[:60], ensure_ascii=True)
        if fmt == "date" and _parse_date(value) is None:
            return f"got {shown}, expected {FORMAT_HINTS['date']}"
        if fmt == "date-time" and _parse_datetime(value) is None:
            return f"got {shown}, expected {FORMAT_HINTS['date-time']}"
        if fmt == "timezone" and _zone(value) is None:
            return f"got {shown}, expected {FORMAT_HINTS['timezone']}"
        if fmt == "integer":
            low, high = self.bounds.get(name, (None, None))
            if not re.fullmatch(r"\d{1,9}", value.strip()):
                return f"got {shown}, expected {_integer_hint(low, high)}"
            number = int(value)
            if (low is not None and number < low) or (high is not None and number > high):
                return f"got {number}, expected {_integer_hint(low, high)}"
        return None

    def render(self, values: Mapping[str, Any], *, now: datetime | None = None) -> str:
        """The prompt text for `values` (checked first).

        Raises:
            MCPError: INVALID_PARAMS naming each missing, unknown or malformed argument.
        """
        problems = self.problems(values)
        if problems:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"Invalid arguments for prompt {self.name}: " + "; ".join(problems),
                data={"prompt": self.name},
            )
        now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        given = {name: v for name in self.argument_names if (v := _given(values, name)) is not None}
        resolved = dict(given)
        resolved["now"] = _format_datetime(now)
        # Literal defaults first: a computed one may depend on them (the week in the report's zone).
        for name in sorted(self.argument_names, key=lambda n: self.defaults.get(n, "").startswith("@")):
            if name not in resolved and name in self.defaults:
                resolved[name] = self._default(name, resolved, now)
        for name, fmt in self.formats.items():
            if fmt == "date-time" and name in resolved:
                resolved[name] = _format_datetime(_parse_datetime(resolved[name]) or now)

        def section(match: re.Match[str]) -> str:
            shown = (match.group("name") in given) == (match.group("kind") == "#")
            return match.group("body") if shown else ""

        text = self.body
        while _SECTION.search(text):
            text = _SECTION.sub(section, text)
        text = _SHIFT.sub(lambda m: _shift(m, resolved, now), text)
        text = _PLACEHOLDER.sub(
            lambda m: (
                json.dumps(resolved[m.group("name")], ensure_ascii=False)
                if m.group("json")
                else resolved[m.group("name")]
            ),
            text,
        )
        return text.strip() + "\n"

    def _default(self, name: str, resolved: Mapping[str, str], now: datetime) -> str:
        default = self.defaults[name]
        if default == "@now-24h":
            return _format_datetime(now - timedelta(hours=24))
        if default == "@previous-monday":
            zone = _zone(resolved.get("timezone", "UTC")) or ZoneInfo("UTC")
            today = now.astimezone(zone).date()
            return (today - timedelta(days=today.weekday() + 7)).isoformat()
        return default

    def to_mcp(self) -> Prompt:
        """The MCP prompt: arguments as declared, rendering through `render` (errors are protocol errors)."""
        return TemplatePrompt(
            name=self.name,
            description=self.description,
            arguments=[
                McpPromptArgument(name=n, description=d or None, required=r) for n, d, r in self.arguments
            ],
            fn=self.render,
        )


class TemplatePrompt(Prompt):
    """An MCP prompt rendered from a `PromptSpec`.

    The SDK's own `Prompt.render` reports a missing required argument as a ValueError, which reaches
    the client as "Internal server error" with a traceback in the log; a template checks its
    arguments itself and answers with a protocol error that names them.
    """

    async def render(self, arguments: dict[str, Any] | None, context: Any = None) -> list[Message]:  # type: ignore[override]
        return [UserMessage(str(self.fn(arguments or {})))]


def _given(values: Mapping[str, Any], name: str) -> str | None:
    value = values.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _integer_hint(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"a whole number from {low} to {high}, e.g. {low if low > 1 else high // 2 or 1}"
    return FORMAT_HINTS["integer"]


def _parse_date(value: str) -> date | None:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


def _parse_datetime(value: str) -> datetime | None:
    text = value.strip()
    day = _parse_date(text)
    if day is not None:
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?", text):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _format_datetime(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` in UTC: what every date-time argument of the tools accepts."""
    return moment.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _shift(match: re.Match[str], resolved: Mapping[str, str], now: datetime) -> str:
    base, amount_text = match.group("base"), match.group("amount")
    amount = int(amount_text) if amount_text.isdigit() else int(resolved[amount_text])
    delta = timedelta(days=amount) if match.group("unit") == "days" else timedelta(hours=amount)
    if match.group("op") == "-":
        delta = -delta
    day = None if base == "now" else _parse_date(resolved[base])
    if day is not None:
        text = (day + delta).isoformat()
    else:
        text = _format_datetime((now if base == "now" else _parse_datetime(resolved[base]) or now) + delta)
    return json.dumps(text) if match.group("json") else text


def parse_prompt(text: str, *, source: str) -> PromptSpec:
    """Parse and check one prompt file.

    Raises:
        PromptFileError: missing or invalid front matter, an unknown format or computed default, or a
            body that uses an undeclared argument (or an optional one without a default outside its
            `{#arg}` section).
    """
    if not text.startswith("+++"):
        raise PromptFileError(f"{source}: must start with a '+++' TOML front matter block")
    try:
        _, front, body = text.split("+++", 2)
        meta = tomllib.loads(front)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise PromptFileError(f"{source}: invalid front matter: {exc}") from exc
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise PromptFileError(f"{source}: front matter needs a name")
    args, formats, defaults, examples, bounds = [], {}, {}, {}, {}
    for entry in meta.get("arguments", []):
        arg = str(entry["name"])
        args.append((arg, str(entry.get("description", "")), bool(entry.get("required", False))))
        if "format" in entry:
            if entry["format"] not in FORMATS:
                raise PromptFileError(f"{source}: argument {arg!r} has unknown format {entry['format']!r}")
            formats[arg] = str(entry["format"])
        if "default" in entry:
            default = str(entry["default"])
            if default.startswith("@") and default not in COMPUTED_DEFAULTS:
                raise PromptFileError(f"{source}: argument {arg!r} has unknown computed default {default!r}")
            defaults[arg] = default
        if "example" in entry:
            examples[arg] = str(entry["example"])
        if "minimum" in entry or "maximum" in entry:
            bounds[arg] = (entry.get("minimum"), entry.get("maximum"))
    spec = PromptSpec(
        name=name,
        description=str(meta.get("description", "")),
        arguments=tuple(args),
        body=body.strip(),
        formats=formats,
        defaults=defaults,
        examples=examples,
        bounds=bounds,
    )
    _check_body(spec, source)
    return spec


def _check_body(spec: PromptSpec, source: str) -> None:
    declared = set(spec.argument_names)
    required = {n for n, _, r in spec.arguments if r}
    always = required | set(spec.defaults)

    def check_name(name: str, inside: set[str]) -> None:
        if name == "now":
            return
        if name not in declared:
            raise PromptFileError(f"{source}: the body uses {{{name}}}, which is not a declared argument")
        if name not in always and name not in inside:
            raise PromptFileError(
                f"{source}: optional argument {name!r} has no default, so it may only appear inside "
                f"{{#{name}}}...{{/{name}}}"
            )

    def walk(text: str, inside: set[str]) -> None:
        for match in _SECTION.finditer(text):
            check_name(match.group("name"), inside | {match.group("name")})
            kept = inside | ({match.group("name")} if match.group("kind") == "#" else set())
            walk(match.group("body"), kept)
        rest = _SECTION.sub("", text)
        for match in _SHIFT.finditer(rest):
            check_name(match.group("base"), inside)
            if not match.group("amount").isdigit():
                check_name(match.group("amount"), inside)
        for match in _PLACEHOLDER.finditer(_SHIFT.sub("", rest)):
            check_name(match.group("name"), inside)

    walk(spec.body, set())


def unknown_prompts_refused(prompt_names: Callable[[], Iterable[str]]) -> ServerMiddleware[Any]:
    """MCPServer middleware: `prompts/get` for a prompt that does not exist is an invalid-params error.

    The SDK answers it with "Internal server error" and logs a traceback; this names the prompt, the
    nearest existing ones and the full list. `prompt_names()` is asked on each such request.
    """

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params if isinstance(ctx.params, Mapping) else {}
        name = params.get("name")
        if ctx.method == "prompts/get" and isinstance(name, str):
            names = sorted(prompt_names())
            if name not in names:
                near = difflib.get_close_matches(name, names, n=2, cutoff=0.6)
                hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
                shown = json.dumps(name[:60], ensure_ascii=True)
                raise MCPError(
                    code=INVALID_PARAMS,
                    message=f"Unknown prompt {shown}{hint} Prompts: {', '.join(names)}",
                    data={"prompt": name[:60]},
                )
        return await call_next(ctx)

    return middleware


def load_prompts() -> list[PromptSpec]:
    """Every prompt shipped in `klink_mcp/prompts/*.md`, sorted by name.

    Raises:
        PromptFileError: a shipped prompt file is invalid (see `parse_prompt`).
    """
    folder = importlib_resources.files("klink_mcp") / "prompts"
    specs = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".md"):
            specs.append(parse_prompt(entry.read_text(encoding="utf-8"), source=entry.name))
    return specs

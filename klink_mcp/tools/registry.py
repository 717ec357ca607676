"""Serving tool specs on an `MCPServer`: bind the handler to the state, add it, publish slim schemas.

`register_spec` is the one way a tool reaches the server. The SDK builds the input schema from the
tool function's signature (the handler's parameters after the state, or the compiled form
parameters); the published input/output schemas are then slimmed (`schema_slim`) and, for a tool the
guard never asks about, stripped of the confirmation fields. Anticipated failures become tool errors
through `translate_error` with the spec's hints.

Private SDK parts are reached only through `klink_mcp.sdk_adapter`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server import MCPServer
from mcp.types import InputRequiredResult
from pydantic import BaseModel

from klink_mcp.forms import FormSchema
from klink_mcp.guard.policy import Risk
from klink_mcp.sdk_adapter import publish_tool_schemas, registered_tool
from klink_mcp.tools.errors import HANDLED_ERRORS, translate_error
from klink_mcp.tools.results import compact_result
from klink_mcp.tools.schema_slim import (
    drop_descriptions,
    slim_input_schema,
    slim_schema,
    without_confirmation_fields,
)
from klink_mcp.tools.spec import ToolSpec
from klink_mcp.tools.state import ServerState

logger = logging.getLogger("klink_mcp.tools")


def build_function(
    name: str,
    impl: Callable[..., Awaitable[Any]],
    params: list[inspect.Parameter],
    returns: Any,
) -> Callable[..., Awaitable[Any]]:
    """A function whose signature is `params` (for the generated JSON Schema) and which calls `impl(**kwargs)`."""

    async def tool_fn(**kwargs: Any) -> Any:
        return await impl(**kwargs)

    tool_fn.__name__ = name
    tool_fn.__qualname__ = name
    tool_fn.__signature__ = inspect.Signature(params, return_annotation=returns)  # type: ignore[attr-defined]
    tool_fn.__annotations__ = {p.name: p.annotation for p in params} | {"return": returns}
    return tool_fn


def tool_function(spec: ToolSpec, state: ServerState, schema: FormSchema | None = None) -> Callable[..., Any]:
    """The function the SDK serves for `spec`: its handler bound to `state` (and the form schema).

    Raises:
        ValueError: `spec` is compiled from a form and no `schema` was given.
    """
    if spec.form is not None:
        if schema is None or spec.form_parameters is None:
            raise ValueError(f"{spec.name} is compiled from the {spec.form} form: give its schema")
        params = spec.form_parameters(schema, state.guard.is_guarded(spec.name))
        returns: Any = spec.output if spec.effects.risk is Risk.READ else spec.output | InputRequiredResult
        impl = functools.partial(spec.handler, state, schema)
    else:
        signature = inspect.signature(spec.handler, eval_str=True)
        params = list(signature.parameters.values())[1:]  # the first one is the ServerState
        returns = signature.return_annotation
        impl = functools.partial(spec.handler, state)

    async def run(**kwargs: Any) -> Any:
        try:
            result = await impl(**kwargs)
        except HANDLED_ERRORS as exc:
            logger.info("tool %s failed: %s", spec.name, type(exc).__name__)
            return translate_error(exc, spec.hints)
        if (
            spec.compact_output
            and isinstance(result, BaseModel)
            and not isinstance(result, InputRequiredResult)
        ):
            return compact_result(result)
        return result

    return build_function(spec.name, run, params, returns)


def description_of(spec: ToolSpec, state: ServerState, note: str = "") -> str:
    """The published description: the spec's, the guard's paragraph for destructive tools, and `note`."""
    text = spec.description
    if spec.confirms_always:
        text = f"{text} {state.guard.describe(spec.name)}"
    return text + note


def register_spec(
    mcp: MCPServer[Any],
    state: ServerState,
    spec: ToolSpec,
    *,
    schema: FormSchema | None = None,
    note: str = "",
) -> None:
    """Add (or replace) the tool of `spec` on `mcp`, with its derived annotations and slimmed schemas.

    Raises:
        ValueError: as `tool_function`.
    """
    unregister(mcp, spec.name)
    mcp.add_tool(
        tool_function(spec, state, schema),
        name=spec.name,
        title=spec.title,
        description=description_of(spec, state, note),
        annotations=spec.annotations,
        structured_output=True,
    )
    tool = registered_tool(mcp, spec.name)
    assert tool is not None
    output = tool.output_schema
    if output is not None:
        # compact_result drops every null, so nullable output fields are published without null.
        output = drop_descriptions(slim_schema(output, collapse_nulls=spec.compact_output))
        if "preview" in output.get("properties", {}) and not state.guard.is_guarded(spec.name):
            output = without_confirmation_fields(output)
    publish_tool_schemas(
        tool,
        input_schema=slim_input_schema(tool.parameters),  # closed here, once: see arg_errors
        output_schema=output,
        # compact_result serializes the very model the schema was generated from, so the SDK's second
        # validation of every result (a full re-parse) buys nothing; tests check every tool's results
        # against the published schema through a real client.
        skip_output_check=spec.compact_output,
    )


def unregister(mcp: MCPServer[Any], name: str) -> None:
    """Remove a tool if it is registered (re-registration after a form change)."""
    if registered_tool(mcp, name) is not None:
        mcp.remove_tool(name)

"""The guard: server-side policy for writes, human confirmation, and the audit log.

- `policy`    - the one risk table (read / write / destructive); tool annotations derive from it.
- `tokens`    - single-use confirmation tokens bound to tool, arguments and target version.
- `preview`   - what the user approves: a sanitized, masked, deterministic `Preview`.
- `confirm`   - `Guard.authorize(...)`: the confirmation flow every writing tool calls.
- `audit`     - one JSON line per decision and outcome, plus an in-memory ring.
- `canonical` - canonical JSON and argument digests shared by tokens and audit.

Nothing in this package imports `klink_mcp.tools` or the K-LINK client (`klink_mcp.api`); import the
submodules directly (this file imports nothing, so `import klink_mcp.guard.policy` stays cheap).
"""

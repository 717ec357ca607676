"""The guard: server-side policy for writes, human confirmation, and the audit log.

- `policy`    - the one risk table (read / write / destructive); tool annotations derive from it.
- `approvals` - pending approvals a person decides on the approval page (`klink_mcp.approval_page`),
                in a store whose transitions are compare-and-set (single use enforced there).
- `tokens`    - single-use confirmation tokens (KLINK_CONFIRM=token) bound to tool, arguments, preview.
- `preview`   - what the user approves: a sanitized, masked, deterministic `Preview`.
- `confirm`   - `Guard.authorize(...)`: the confirmation flow every writing tool calls.
- `audit`     - one JSON line per decision and outcome, plus an in-memory ring.
- `canonical` - canonical JSON and argument digests shared by tokens and audit.

Nothing in this package imports `klink_mcp.tools` or the K-LINK client (`klink_mcp.api`); import the
submodules directly (this file imports nothing, so `import klink_mcp.guard.policy` stays cheap).
"""

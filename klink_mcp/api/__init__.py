"""A plain async SDK for the K-LINK REST API (no MCP here: a test enforces that this package never imports it).

- `client.KlinkClient`: one method per operation of the contract;
- `catalog`: the 21 operations as data, with configurable method/path overrides;
- `errors`: the one error tree every method raises from;
- `models`: tolerant wire models.

Nothing is imported here, so `klink_mcp.api.errors` stays cheap to import on its own.
"""

"""klink-mcp: an MCP server that gives AI assistants typed, guarded access to a K-LINK tenant.

Nothing runs at import time: build a server with `klink_mcp.server.build_server`.
"""

__version__ = "0.1.0"
USER_AGENT = f"klink-mcp/{__version__}"

__all__ = ["USER_AGENT", "__version__"]

"""`python -m klink_mcp` is the same as the `klink-mcp` console script."""

from klink_mcp.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m klink_mcp.sandbox`: the same as `klink-mcp sandbox`."""

import sys

from klink_mcp.sandbox.cli import main

raise SystemExit(main(sys.argv[1:]))

"""The README's install and connect instructions name commands that exist, and CI proves them.

The install paths themselves (wheel in a fresh venv, `uvx --from <checkout>`, `pipx install <checkout>`)
are exercised end to end by `scripts/wheel-smoke`, which `.ci/run` calls; these tests keep the README,
the package metadata and the CI script in step with each other.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CHECKOUT_ARGS = ["--from", "/path/to/klink-mcp", "klink-mcp"]


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def _json_blocks(text: str) -> list[dict[str, object]]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]


def test_the_console_script_the_readme_runs_is_the_one_the_package_installs() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"klink-mcp": "klink_mcp.cli:main"}


def test_every_client_snippet_starts_the_server_from_the_checkout_until_it_is_published() -> None:
    connect = _section("Connect it to your assistant")
    blocks = _json_blocks(connect)
    assert len(blocks) == 2  # Claude Desktop, VS Code
    servers = [next(iter(b.get("mcpServers", b.get("servers", {})).values())) for b in blocks]  # type: ignore[attr-defined]
    for server in servers:
        assert server["command"] == "uvx" and server["args"] == CHECKOUT_ARGS, server
    claude_code = re.search(r"claude mcp add klink .*", connect)
    assert claude_code and claude_code.group(0).endswith("-- uvx " + " ".join(CHECKOUT_ARGS))
    # The bare published form is mentioned only as the future one, never as a command to run today.
    assert '"args": ["klink-mcp"]' in connect and "Once the package is" in connect
    assert "not on PyPI yet" in _section("Install")


def test_the_install_section_names_every_path_the_smoke_script_proves() -> None:
    install = _section("Install")
    smoke = (ROOT / "scripts" / "wheel-smoke").read_text()
    for readme_says, script_runs in [
        ("uvx --from /path/to/klink-mcp klink-mcp", '/uvx" --quiet --from "$ROOT" klink-mcp'),
        ("pipx install /path/to/klink-mcp", '/pipx" install --quiet "$ROOT"'),
        ("python -m build", 'python -m build --outdir "$DIST" "$ROOT"'),
    ]:
        assert readme_says in install, readme_says
        assert script_runs in smoke, script_runs


def test_ci_runs_the_readme_test_command_from_a_copy_and_the_install_smoke() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./scripts/check" in README
    assert "KLINK_REQUIRE_REAL_SERVICES=1 ./scripts/check" in ci
    assert 'git -C "$SRC" archive' in ci and 'cd "$CHECKOUT"' in ci and "mktemp -d" in ci
    run_check, run_smoke = ci.index("=1 ./scripts/check\n"), ci.index("\n./scripts/wheel-smoke\n")
    assert ci.index('cd "$CHECKOUT"') < run_check < run_smoke
    assert ci.index('for script in "$SRC"/.ci/install-*.sh') < run_check

# Sourced by scripts/*: make sure .venv exists with the project installed (editable, with dev extras).
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv (first run)..." >&2
  "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
stamp=.venv/.klink-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing klink-mcp and its dev tools into .venv..." >&2
  python -m pip install --quiet --upgrade pip >&2
  python -m pip install --quiet -e '.[dev]' >&2
  touch "$stamp"
fi

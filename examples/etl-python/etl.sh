#!/usr/bin/env bash
# What the scenarios run: the example ETL in its virtualenv (made by setup.sh).
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv/bin/python" ]; then
  echo "etl-python: no virtualenv at $here/.venv; run $here/setup.sh first" >&2
  exit 2
fi
exec "$here/.venv/bin/python" "$here/etl.py" "$@"

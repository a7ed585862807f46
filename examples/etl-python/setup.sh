#!/usr/bin/env bash
# The example's own setup step: a virtualenv next to this file with its pinned clients from PyPI.
# Idempotent: does nothing when the virtualenv already has them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if "$venv/bin/python" -c 'import confluent_kafka, pymysql' >/dev/null 2>&1 \
   && "$venv/bin/pip" freeze --disable-pip-version-check 2>/dev/null | grep -qix 'confluent-kafka==2.16.1'; then
  exit 0
fi
echo "etl-python: installing $(grep -v '^#' "$here/requirements.txt" | tr '\n' ' ')into $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"

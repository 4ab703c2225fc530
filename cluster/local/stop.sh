#!/usr/bin/env bash
# Stop a local ranksearch stack: ends exactly the processes it started, by PID (never `ray stop`,
# which would end every Ray process on the machine). Usage: cluster/local/stop.sh DIR
set -euo pipefail
if [ $# -ne 1 ]; then echo "usage: $0 STACK_DIR (printed by start.sh)" >&2; exit 2; fi
here="$(cd "$(dirname "$0")" && pwd)"
py="${RANKSEARCH_PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$here/../../.venv/bin/python" ]; then py="$here/../../.venv/bin/python"; else py="python3"; fi
fi
exec "$py" "$here/stack.py" stop --dir "$1"

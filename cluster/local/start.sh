#!/usr/bin/env bash
# Start the local ranksearch stack on loopback: S3 (moto), MLflow, a Ray head and 2 worker nodes.
# Usage: cluster/local/start.sh [--dir /tmp/rs-dev] [--workers 2] [--json]   (see stack.py --help)
# Prints where every service listens and the file to `source` for client settings.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${RANKSEARCH_PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$here/../../.venv/bin/python" ]; then py="$here/../../.venv/bin/python"; else py="python3"; fi
fi
exec "$py" "$here/stack.py" start "$@"

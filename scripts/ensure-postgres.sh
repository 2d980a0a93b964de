#!/usr/bin/env bash
# Makes sure the local PostgreSQL the tests use (127.0.0.1:5432, trust auth) is up; starts the Debian cluster if not.
set -euo pipefail
ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ready; then exit 0; fi
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "ensure-postgres: PostgreSQL is not running on 127.0.0.1:5432 and pg_ctlcluster is not installed (apt-get install postgresql)" >&2
  exit 1
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
echo "ensure-postgres: starting PostgreSQL $version" >&2
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 60); do
  if ready; then exit 0; fi
  sleep 0.5
done
echo "ensure-postgres: PostgreSQL did not become ready on 127.0.0.1:5432 within 30 s" >&2
exit 1

#!/usr/bin/env bash
# Runs the whole ViewPulse pipeline on this host: every process under cmd/,
# against Redis and PostgreSQL from the environment (defaults: local ones).
# Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."

export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export DB_HOST="${DB_HOST:-127.0.0.1}" DB_PORT="${DB_PORT:-5432}" DB_NAME="${DB_NAME:-ivs_live}" DB_USER="${DB_USER:-postgres}"

# The database itself must exist; the processes create the tables.
if [ -z "${DATABASE_URL:-}" ] && command -v psql >/dev/null; then
  if ! psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
    echo "creating database $DB_NAME"
    psql -h "$DB_HOST" -p "$DB_PORT" -U "$DB_USER" -d postgres -c "CREATE DATABASE \"$DB_NAME\"" >/dev/null
  fi
fi

go build -o bin/ ./cmd/...
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for cmd in ingest projector snapshotter; do
  if [ -x "bin/$cmd" ]; then
    "bin/$cmd" &
    pids+=($!)
  fi
done
echo "pipeline running (pids ${pids[*]}); ingest on ${HTTP_ADDR:-:8080}. Ctrl-C stops it."
wait -n "${pids[@]}"

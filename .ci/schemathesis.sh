#!/usr/bin/env bash
# The OpenAPI document against the running service. Schemathesis reads /openapi.json from a
# freshly started `amtsbuch serve` (embedded SQLite store in a temporary directory,
# development tokens) and sends what the document allows and what it forbids, once for an
# operator, a citizen and a data protection officer. Every check it has runs, positive-data
# acceptance included: a request the document calls valid must not be refused, one it calls
# invalid must be, and every answer must have the status, media type, headers and body the
# document gives it. Any failure fails the step.
#
# Bounded: a fixed number of examples per operation and a time limit per caller.
#   AMTSBUCH_SCHEMATHESIS_EXAMPLES  examples per operation and phase (default 30)
#   AMTSBUCH_SCHEMATHESIS_SEED      the generator's seed (default fixed, so a failure repeats)
#   AMTSBUCH_SCHEMATHESIS_TIMEOUT   seconds one caller's run may take (default 200)
#   AMTSBUCH_SCHEMATHESIS_BIN       an `amtsbuch` binary to test (default: build it)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

version=4.32.5
examples=${AMTSBUCH_SCHEMATHESIS_EXAMPLES:-30}
seed=${AMTSBUCH_SCHEMATHESIS_SEED:-20261206}
limit=${AMTSBUCH_SCHEMATHESIS_TIMEOUT:-200}

# Schemathesis from PyPI, pinned, in a virtual environment of its own.
cache=${HOME:-/root}/.cache/amtsbuch
venv=$cache/schemathesis-$version
if ! "$venv/bin/st" --version 2>/dev/null | grep -qF "$version"; then
  echo "installing schemathesis $version into $venv"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt-get install -y -q python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version"
fi

bin=${AMTSBUCH_SCHEMATHESIS_BIN:-}
if [ -z "$bin" ]; then
  cargo build --locked -q -p amtsbuch --bin amtsbuch
  bin=${CARGO_TARGET_DIR:-target}/debug/amtsbuch
fi
bin=$(realpath "$bin")

work=$(mktemp -d)
server=
nats=
finish() {
  status=$?
  for pid in $server $nats; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ] && [ -f "$work/serve.log" ]; then
    echo "--- the server's log (last 40 lines)" >&2
    tail -n 40 "$work/serve.log" >&2
  fi
  rm -rf "$work"
  exit "$status"
}
trap finish EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A NATS server of its own, so that the NATS routes answer as in production and nothing
# is left behind on the machine's.
nats_server=$(command -v nats-server || echo /usr/sbin/nats-server)
nats_port=$(free_port)
"$nats_server" -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
nats=$!
for _ in $(seq 1 50); do
  (echo > "/dev/tcp/127.0.0.1/$nats_port") >/dev/null 2>&1 && break
  sleep 0.1
done

port=$(free_port)
base=http://127.0.0.1:$port
# A server of its own: nothing from the caller's environment configures it.
(
  cd "$work"
  for variable in $(compgen -e | grep '^AMTSBUCH_' || true); do unset "$variable"; done
  exec "$bin" serve --dev --dev-key "$work/dev-token.pk8" --listen "127.0.0.1:$port" \
    --database-url "sqlite://$work/amtsbuch.db" --checkpoint-interval-ms 200 \
    --nats-url "nats://127.0.0.1:$nats_port"
) >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { echo "the server did not start" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "$base/readyz" >/dev/null

token() { "$bin" token --dev-key "$work/dev-token.pk8" --ttl 3600 "$@"; }
operator=$(token --role operator --subject ci-operator)
dpo=$(token --role dpo --subject ci-dpo)

# Something to find: an account the citizen's token is bound to, a consent of it, and a
# few events of the raw log, so that reads, receipts and proofs have data behind them.
account=$(curl -fsS -X POST "$base/accounts" -H "Authorization: Bearer $operator" \
  -H 'Content-Type: application/json' \
  -d '{"kind":"personal","master_data":{"type":"person","given_names":"Erika","family_name":"Musterfrau"}}' \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["account_id"])')
citizen=$(token --role citizen --subject ci-citizen --account "$account")
curl -fsS -X POST "$base/streams/schemathesis-1/events" -H "Authorization: Bearer $operator" \
  -H 'Content-Type: application/json' -H 'Expected-Version: no-stream' \
  -d "$(python3 -c 'import json; print(json.dumps([{"type": "Seeded", "data": {"n": n}} for n in range(50)]))')" >/dev/null
sleep 1

# The core's exceptions and each domain module's own (api/src/<module>/schemathesis.toml).
cat "$repo/.ci/schemathesis.toml" > "$work/schemathesis.toml"
for part in "$repo"/api/src/*/schemathesis.toml; do
  [ -f "$part" ] || continue
  printf '\n' >> "$work/schemathesis.toml"
  cat "$part" >> "$work/schemathesis.toml"
done

# Schemathesis keeps a cache in its working directory; keep it out of the clone.
cd "$work"
failed=()
for caller in operator citizen dpo; do
  echo "--- schemathesis as $caller"
  bearer=${!caller}
  if ! timeout --signal=INT --kill-after=20 "$limit" \
      "$venv/bin/st" --no-color --config-file "$work/schemathesis.toml" run "$base/openapi.json" \
      --header "Authorization: Bearer $bearer" \
      --checks all \
      --max-examples "$examples" \
      --seed "$seed" \
      --workers 1 \
      --request-timeout 10 \
      --no-shrink \
      --suppress-health-check all \
      --continue-on-failure \
      --warnings off \
      --report junit --report-dir "$work/report-$caller"; then
    failed+=("$caller")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "schemathesis found failures (as: ${failed[*]}); the document and the service disagree" >&2
  exit 1
fi
echo "schemathesis: the service answers as /openapi.json says, for an operator, a citizen and a DPO"

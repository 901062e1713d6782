#!/usr/bin/env bash
# A real S3 server for the tests: starts a single-node Garage on 127.0.0.1
# (or reuses the one this script started before) and prints the
# `export TEST_WHARF_S3_...` lines that point the tests at it:
#
#     eval "$(.ci/garage.sh)"
#
# Installs Garage 2.5.0 with cargo unless `garage --version` reports it.
# S3 API on 127.0.0.1:3900, RPC on :3901, admin (health) on :3903; config,
# keys, data and log in ${WHARF_GARAGE_DIR:-/tmp/wharf-garage}. Only the
# export lines go to stdout. Stop the server with
# `kill "$(cat /tmp/wharf-garage/garage.pid)"`.
set -euo pipefail

version=2.5.0
dir=${WHARF_GARAGE_DIR:-/tmp/wharf-garage}
bucket=wharf-test
region=garage
s3_addr=127.0.0.1:3900
rpc_addr=127.0.0.1:3901
admin_addr=127.0.0.1:3903
export PATH="$HOME/.cargo/bin:$PATH"

say() { echo "garage.sh: $*" >&2; }
hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
healthy() { curl -fsS -o /dev/null --max-time 1 "http://$admin_addr/health" 2>/dev/null; }
# `garage --version` says "garage v2.5.0 [...]", or "garage cargo:2.5.0 [...]" when built by cargo install.
has_version() { garage --version 2>/dev/null | grep -qE "[v:]${version//./\\.}([^0-9]|$)"; }

print_exports() {
  # shellcheck source=/dev/null
  . "$dir/credentials"
  cat <<EOF
export TEST_WHARF_S3_ENDPOINT=http://$s3_addr
export TEST_WHARF_S3_REGION=$region
export TEST_WHARF_S3_BUCKET=$bucket
export TEST_WHARF_S3_ACCESS_KEY_ID=$GARAGE_DEFAULT_ACCESS_KEY
export TEST_WHARF_S3_SECRET_ACCESS_KEY=$GARAGE_DEFAULT_SECRET_KEY
EOF
}

if healthy; then
  if [ ! -f "$dir/credentials" ]; then
    say "a Garage answers on $admin_addr, but $dir/credentials is missing: it was not started by this script"
    exit 1
  fi
  say "reusing the Garage answering on $admin_addr"
  print_exports
  exit 0
fi

if ! has_version; then
  # Another install may be under way (a CI step, a developer's shell): wait for it.
  while pgrep -f "cargo install garage" >/dev/null; do
    say "waiting for a running 'cargo install garage' to finish"
    sleep 10
  done
  if ! has_version; then
    say "installing garage $version (about 7 minutes with an empty cargo cache)"
    cargo install "garage@$version" --locked --no-default-features \
      --features bundled-libs,lmdb >&2
  fi
fi

mkdir -p "$dir/meta" "$dir/data"
chmod 700 "$dir"
umask 077
if [ ! -f "$dir/credentials" ]; then
  # Garage keys: "GK" and 24 hex digits; secrets of 64 hex digits.
  cat >"$dir/credentials" <<EOF
GARAGE_DEFAULT_ACCESS_KEY=GK$(hex 12)
GARAGE_DEFAULT_SECRET_KEY=$(hex 32)
RPC_SECRET=$(hex 32)
ADMIN_TOKEN=$(hex 32)
EOF
fi
# shellcheck source=/dev/null
. "$dir/credentials"
cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "lmdb"
replication_factor = 1

rpc_bind_addr = "$rpc_addr"
rpc_public_addr = "$rpc_addr"
rpc_secret = "$RPC_SECRET"

[s3_api]
s3_region = "$region"
api_bind_addr = "$s3_addr"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "$admin_addr"
admin_token = "$ADMIN_TOKEN"
EOF
chmod 600 "$dir/garage.toml" "$dir/credentials"

say "starting garage in $dir (log: $dir/garage.log)"
GARAGE_DEFAULT_ACCESS_KEY=$GARAGE_DEFAULT_ACCESS_KEY \
  GARAGE_DEFAULT_SECRET_KEY=$GARAGE_DEFAULT_SECRET_KEY \
  GARAGE_DEFAULT_BUCKET=$bucket \
  nohup garage -c "$dir/garage.toml" server --single-node --default-bucket \
  </dev/null >"$dir/garage.log" 2>&1 &
echo $! >"$dir/garage.pid"

for _ in $(seq 150); do
  if healthy; then
    print_exports
    exit 0
  fi
  if ! kill -0 "$(cat "$dir/garage.pid")" 2>/dev/null; then
    say "garage exited; the end of its log:"
    tail -n 20 "$dir/garage.log" >&2
    exit 1
  fi
  sleep 0.2
done
say "garage did not become healthy within 30 s; the end of its log:"
tail -n 20 "$dir/garage.log" >&2
exit 1

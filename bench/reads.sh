#!/bin/bash
# Read rates of two cairn binaries side by side, with bench/barekv serving
# each answer's bytes as the ceiling: GET /v1/kv/bench/?recurse (100 keys
# of 48 bytes), /v1/health/service/web?passing and /v1/catalog/service/web
# (10 instances). Everything listens on 127.0.0.1 (ports 18800-18822).
# Each line ends with the ratios to barekv of the same round: the rate's
# and the server's CPU time per request's (barekv's over cairn's), the
# steadier of the two on a loaded machine.
#
#   bench/reads.sh /tmp/cairn-main /tmp/cairn-new     # ROUNDS=5 DUR=3s CONNS=16
set -e
old=$(realpath "$1"); new=$(realpath "$2")
[ -x "$old" ] && [ -x "$new" ] || { echo "usage: bench/reads.sh OLD-BINARY NEW-BINARY" >&2; exit 2; }
tmp=$(mktemp -d /tmp/cairn-reads.XXXX)
go build -o "$tmp/httpload" ./bench/httpload
go build -o "$tmp/barekv" ./bench/barekv
pids=()
trap 'kill ${pids[@]} 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
start() { # bin port
  "$1" agent -server -bootstrap-expect 1 -data-dir "$tmp/data$2" -bind 127.0.0.1 -client 127.0.0.1 \
    -http-port $2 -server-port $(($2+1)) -serf-lan-port $(($2+2)) -dns-port -1 > "$tmp/$2.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 150); do curl -sf -X PUT -d x 127.0.0.1:$2/v1/kv/warm >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "$1 did not start; log: $tmp/$2.log" >&2; exit 1
}
start "$old" 18800
start "$new" 18810
v=$(head -c 48 /dev/zero | tr '\0' v)
for p in 18800 18810; do
  for i in $(seq -w 0 99); do curl -sf -X PUT --data-binary "$v" 127.0.0.1:$p/v1/kv/bench/key0$i >/dev/null; done
  for n in $(seq 0 9); do
    curl -sf -X PUT -d "{\"Node\":\"n$n\",\"Address\":\"10.0.0.$n\",\"Service\":{\"ID\":\"web\",\"Service\":\"web\",\"Port\":80,\"Tags\":[\"a\"]}}" \
      127.0.0.1:$p/v1/catalog/register >/dev/null
  done
done
paths=("/v1/kv/bench/?recurse" "/v1/health/service/web?passing" "/v1/catalog/service/web")
urls=()
for k in 0 1 2; do
  "$tmp/barekv" -addr 127.0.0.1:$((18820+k)) -body "$(curl -s "127.0.0.1:18810${paths[$k]}")" & pids+=($!)
  urls+=(-url "http://127.0.0.1:18800${paths[$k]}" -pid ${pids[0]} -url "http://127.0.0.1:18810${paths[$k]}" -pid ${pids[1]}
    -url "http://127.0.0.1:$((18820+k))${paths[$k]}" -pid $!)
done
sleep 1
"$tmp/httpload" -conns "${CONNS:-16}" -rounds "${ROUNDS:-5}" -duration "${DUR:-3s}" -group 3 "${urls[@]}"

#!/usr/bin/env bash
# scripts/drain.sh SINKHOST [N] [PERF_DATA]: one drain of compare.sh's load (N x 256 B,
# seed settings, the Go benchrig receiver, its own nats-server) by the sinkhost binary
# SINKHOST (its plugins/ beside it); prints rate, CPU us per message and peak RSS.
# With PERF_DATA, records a call-graph profile instead (report with --no-inline).
# For A/B of two builds: copy each binary with its plugins/ and alternate them.
set -euo pipefail
S=$1; N=${2:-20000}; PERF=${3:-}
B=${PEER_BIN:-$PWD/target/peer}
[ -x "$B/benchrig" ] || PEER_BIN=$B ../shared/peer/build.sh >/dev/null
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port=$((20000 + RANDOM % 20000)); export NATS_URL=nats://127.0.0.1:$port
"$B/nats-server" -a 127.0.0.1 -p $port -js -sd "$work/js" >"$work/nats.log" 2>&1 & pids+=($!)
sleep 1
mkdir -p "$work/cfg"
cat >"$work/cfg/00-stream.yml" <<Y
stream:
  name: hns_ticketing_events
  subjects: ["ticket.>", "order.>", "payment.>", "match.>", "queue.>", "quota.>", "blacklist.>", "loyalty.>", "mail.>", "stripe.>"]
  max_age: 72h
  storage: file
Y
"$B/benchrig" ensure-stream
rp=$((port+1)); hp=$((port+2))
cat >"$work/cfg/10-bench.yml" <<Y
subscriptions:
  - name: bench
    subject: ">"
    consumer: bench
    webhook:
      url: "http://127.0.0.1:$rp/api/v1/webhooks/nats"
      headers:
        Authorization: "Bearer bench-secret"
    timeout: "15s"
    retries: 3
    backoff: "2s"
    max_concurrency: 50
    ack_wait: "120s"
Y
"$B/benchrig" publish -n "$N" -size 256 -subjects order.created,mail.welcome,stripe.drupal >/dev/null
"$B/benchrig" receive -addr 127.0.0.1:$rp -expect "$N" -wait 180s >"$work/recv.json" 2>/dev/null & recv=$!
sleep 0.3
if [ -n "$PERF" ]; then
  SINKHOST_LISTEN=127.0.0.1:$hp perf record -F 400 --call-graph dwarf,32768 -o "$PERF" "$S" run --config-dir "$work/cfg" >"$work/s.log" 2>&1 & c=$!
else
  SINKHOST_LISTEN=127.0.0.1:$hp "$S" run --config-dir "$work/cfg" >"$work/s.log" 2>&1 & c=$!
fi
wait $recv || true
if [ -z "$PERF" ]; then
  rss=$(awk '/VmHWM/{print $2}' /proc/$c/status); cpu=$(awk '{print $14+$15}' /proc/$c/stat)
  python3 -c "import json; d=json.load(open('$work/recv.json')); print(f'rate={d[\"rate\"]:.0f} dups={d[\"duplicates\"]} rss_kb=$rss cpu_us={$cpu*1e6/$(getconf CLK_TCK)/$N:.1f}')"
else
  python3 -c "import json; d=json.load(open('$work/recv.json')); print(f'rate={d[\"rate\"]:.0f}')"
fi
kill -INT $c; wait $c 2>/dev/null || true

#!/usr/bin/env bash
# N `moe-mnist serve` replicas on loopback behind HAProxy, which health-checks GET /v2/health/ready.
#
#   scripts/replicas.sh run N [options] [-- serve options]   start, print the URL, wait; Ctrl-C/SIGTERM stops all
#   scripts/replicas.sh up N --dir DIR [options] [-- serve options]   start in the background (state in DIR)
#   scripts/replicas.sh restart --dir DIR [--model FILE]     rolling restart, one replica at a time
#   scripts/replicas.sh kill --dir DIR I                     kill -9 replica I (1..N), for failure drills
#   scripts/replicas.sh status --dir DIR                     HAProxy's view: one line per replica
#   scripts/replicas.sh down --dir DIR                       stop the replicas (draining) and HAProxy
# options: --model FILE.onnx (default runs/mnist/model.fp32.onnx), --port P (the balancer's port; default a
# free one in 20000-60000), --drain-s S (default 1), --cli BIN (default $MOE_MNIST_CLI, build/bin/moe-mnist,
# then moe-mnist on PATH).
#
# A replica stops the way Kubernetes stops a pod: SIGTERM -> /v2/health/ready answers 503 while every other
# route still answers (serve --drain-s); HAProxy's check (every 200 ms, down after 1 failure) takes it out of
# rotation; after the drain it finishes what is in flight and exits. HAProxy retries a request that found
# a dead or stopping replica (connection refused, empty response, 503) on another one (retry-on + redispatch).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf '[replicas] %s\n' "$*" >&2; }
die() { printf '[replicas] error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

[ $# -ge 1 ] || { usage >&2; exit 2; }
cmd=$1; shift
n="" dir="" model="" port="" drain=1 cli="" victim=""
case "$cmd" in
  run|up) [ $# -ge 1 ] && [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 64 ] || die "$cmd: give the number of replicas (1..64)"; n=$1; shift ;;
  restart|kill|status|down) ;;
  -h|--help) usage; exit 0 ;;
  *) die "unknown command '$cmd' (run, up, restart, kill, status, down; see --help)" ;;
esac
serve_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --model) model=$(realpath -m "$2"); shift 2 ;;
    --port) port=$2; shift 2 ;;
    --drain-s) drain=$2; shift 2 ;;
    --cli) cli=$(realpath -m "$2"); shift 2 ;;
    --) shift; serve_args=("$@"); break ;;
    *) if [ "$cmd" = kill ] && [[ $1 =~ ^[0-9]+$ ]]; then victim=$1; shift; else die "unknown option '$1' (see --help)"; fi ;;
  esac
done

free_port() {  # a free loopback TCP port in 20000-60000
  local p
  for _ in $(seq 50); do
    p=$(( 20000 + RANDOM % 40000 ))
    python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$p" 2>/dev/null && { echo "$p"; return; }
  done
  die "no free port found in 20000-60000"
}

# HAProxy's statistics as CSV; field 2 is the server, 18 its status (UP, DOWN, MAINT, ...).
servers_status() { curl -fs "http://127.0.0.1:$(cat "$dir/stats_port")/stats;csv" | awk -F, '$1 == "replicas" && $2 ~ /^r[0-9]+$/ { print $2, $18 }'; }
wait_status() {  # wait_status SERVER STATUS [SECONDS]
  local until=$(( SECONDS + ${3:-20} ))
  while [ $SECONDS -lt $until ]; do
    servers_status | grep -qx "$1 $2" && return 0
    sleep 0.1
  done
  die "HAProxy never saw $1 $2 (now: $(servers_status | tr '\n' ' '))"
}

start_replica() {  # start_replica I PORT: serve on 127.0.0.1:PORT (0 = any), waits until it listens
  local i=$1 p=$2 log="$dir/replica-$1.log" pid
  : > "$log"
  # HAProxy fronts HTTP; the replicas' gRPC endpoints are off (one port each would be needed).
  "$(cat "$dir/cli")" serve --model "$(cat "$dir/model")" --host 127.0.0.1 --port "$p" --grpc-port 0 --drain-s "$(cat "$dir/drain_s")" \
    $(cat "$dir/serve_args") >> "$log" 2>&1 < /dev/null &
  pid=$!
  echo "$pid" > "$dir/replica-$i.pid"
  for _ in $(seq 300); do
    grep -q "listening on" "$log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "replica $i exited at start"; }
    sleep 0.05
  done
  grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1 | sed 's/.*://' > "$dir/replica-$i.port"
  [ -s "$dir/replica-$i.port" ] || die "replica $i printed no port: $(cat "$log")"
}

stop_replica() {  # stop_replica I: SIGTERM (drain, then finish in-flight), wait for its exit
  local pid rc=0
  pid=$(cat "$dir/replica-$1.pid" 2>/dev/null) || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  grep -q "moe-mnist serve: stopped" "$dir/replica-$1.log" || say "replica $1 did not report a clean stop"
  rm -f "$dir/replica-$1.pid"
  return $rc
}

write_haproxy_cfg() {
  {
    cat <<CFG
# Written by scripts/replicas.sh.
global
  maxconn 4096
defaults
  mode http
  timeout connect 500ms
  timeout client 30s
  timeout server 30s
  timeout http-request 10s
  timeout http-keep-alive 10s
  # A request that met a dead replica (refused, reset, no answer) or a stopping one (503) goes to another one.
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response response-timeout 503
  option http-buffer-request
frontend inference
  bind 127.0.0.1:$(cat "$dir/port")
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /v2/health/ready
  http-check expect status 200
  default-server inter 200ms fastinter 100ms downinter 200ms fall 1 rise 2
CFG
    for i in $(seq "$(cat "$dir/n")"); do echo "  server r$i 127.0.0.1:$(cat "$dir/replica-$i.port") check"; done
    cat <<CFG
listen stats
  bind 127.0.0.1:$(cat "$dir/stats_port")
  stats enable
  stats uri /stats
CFG
  } > "$dir/haproxy.cfg"
}

up() {
  command -v haproxy >/dev/null || die "haproxy not found (apt install haproxy, or run scripts/setup.sh)"
  [ -n "$cli" ] || cli=${MOE_MNIST_CLI:-}
  [ -n "$cli" ] || { [ -x "$root/build/bin/moe-mnist" ] && cli=$root/build/bin/moe-mnist; } || true
  [ -n "$cli" ] || cli=$(command -v moe-mnist) || die "no moe-mnist binary: build it or pass --cli BIN"
  model=${model:-$root/runs/mnist/model.fp32.onnx}
  [ -f "$model" ] || die "model '$model' not found: pass --model FILE.onnx"
  [ -n "$dir" ] || die "up: give --dir DIR for the state (pids, ports, logs)"
  mkdir -p "$dir"
  [ ! -f "$dir/haproxy.pid" ] || ! kill -0 "$(cat "$dir/haproxy.pid")" 2>/dev/null || die "$dir already holds a running set (replicas.sh down --dir $dir)"
  echo "$n" > "$dir/n"; echo "$cli" > "$dir/cli"; echo "$model" > "$dir/model"; echo "$drain" > "$dir/drain_s"
  echo "${serve_args[*]:-}" > "$dir/serve_args"
  echo "${port:-$(free_port)}" > "$dir/port"; free_port > "$dir/stats_port"
  for i in $(seq "$n"); do start_replica "$i" 0; done
  write_haproxy_cfg
  haproxy -c -q -f "$dir/haproxy.cfg" || die "HAProxy rejects $dir/haproxy.cfg"
  haproxy -db -f "$dir/haproxy.cfg" > "$dir/haproxy.log" 2>&1 < /dev/null &
  echo $! > "$dir/haproxy.pid"
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$(cat "$dir/stats_port")/stats;csv" >/dev/null 2>&1 && break; sleep 0.05; done
  for i in $(seq "$n"); do wait_status "r$i" UP; done
  say "$n replicas of $(basename "$model") behind HAProxy at http://127.0.0.1:$(cat "$dir/port") (stats: http://127.0.0.1:$(cat "$dir/stats_port")/stats)"
}

down() {
  [ -n "$dir" ] && [ -f "$dir/n" ] || die "down: --dir DIR of a set started with 'up'"
  for i in $(seq "$(cat "$dir/n")"); do stop_replica "$i" & done
  wait
  if [ -f "$dir/haproxy.pid" ]; then kill "$(cat "$dir/haproxy.pid")" 2>/dev/null || true; rm -f "$dir/haproxy.pid"; fi
}

restart() {  # one at a time: drain and stop, start on the same port (new --model if given), wait until UP
  [ -n "$dir" ] && [ -f "$dir/n" ] || die "restart: --dir DIR of a set started with 'up'"
  [ -z "$model" ] || { [ -f "$model" ] || die "model '$model' not found"; echo "$model" > "$dir/model"; }
  for i in $(seq "$(cat "$dir/n")"); do
    stop_replica "$i"
    start_replica "$i" "$(cat "$dir/replica-$i.port")"
    wait_status "r$i" UP
    say "replica $i restarted ($(basename "$(cat "$dir/model")"))"
  done
}

case "$cmd" in
  up) up ;;
  down) down ;;
  restart) restart ;;
  status) [ -n "$dir" ] || die "status: give --dir DIR"; servers_status ;;
  kill)
    [ -n "$dir" ] && [ -n "$victim" ] && [ -f "$dir/replica-$victim.pid" ] || die "kill: --dir DIR and a running replica number"
    kill -9 "$(cat "$dir/replica-$victim.pid")"; rm -f "$dir/replica-$victim.pid" ;;
  run)
    own=0
    if [ -z "$dir" ]; then dir=$(mktemp -d); own=1; fi
    trap 'say "stopping"; down; [ "$own" = 1 ] && rm -rf "$dir"; exit 0' INT TERM
    up
    echo "http://127.0.0.1:$(cat "$dir/port")"
    while kill -0 "$(cat "$dir/haproxy.pid")" 2>/dev/null; do sleep 1; done
    die "HAProxy exited: $(tail -5 "$dir/haproxy.log")" ;;
esac

# Helpers of the end-to-end scripts (sourced first). Sourcing makes T (the test's temp folder)
# and PIDS, and on exit kills what the script started (PIDS, and anything run from $T), calls
# on_exit if the script defines one, and removes $T. fail reports the tail of $T/yolod.log;
# start_yolod, ctl, json and new_id need YOLOD, WORKER, YOLOCTL and STATE (the state dir of the
# yolod to start).
T=$(mktemp -d)
PIDS=()
CGROUPS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  pkill -9 -f "$T/" 2>/dev/null
  if declare -F on_exit >/dev/null; then on_exit; fi
  for g in "${CGROUPS[@]}"; do
    for p in $(cat "$g/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$g" 2>/dev/null && break; sleep 0.2; done
  done
  rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; [[ -f $T/yolod.log ]] && tail -20 "$T/yolod.log" >&2; exit 1; }
# wait_for SECONDS COMMAND...: polls COMMAND until it succeeds or the deadline passes.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}
# expect CODE PATTERN COMMAND...: the exit code, and PATTERN in its output.
expect() {
  local code=$1 pattern=$2; shift 2
  local out rc
  out=$("$@" 2>&1); rc=$?
  [[ $rc == "$code" ]] || fail "'$*' exited $rc, expected $code: $out"
  [[ -z $pattern || $out == *"$pattern"* ]] || fail "'$*' did not say '$pattern': $out"
}
# start_yolod EXTRA_FLAGS...: a yolod on a free port with state dir $STATE; sets YOLOD_PID and
# SERVER once it has written its address. YOLOD_WRAP=in_cgroup starts it inside $CGROUP;
# METRICS_LISTEN replaces its metrics address (127.0.0.1:0).
start_yolod() {
  rm -f "$STATE/yolod.addr"
  ${YOLOD_WRAP:-} "$YOLOD" --listen 127.0.0.1:0 --metrics-listen "${METRICS_LISTEN:-127.0.0.1:0}" --state-dir "$STATE" --worker "$WORKER" "$@" >>"$T/yolod.log" 2>&1 &
  YOLOD_PID=$!
  PIDS+=("$YOLOD_PID")
  wait_for 20 test -s "$STATE/yolod.addr" || fail "yolod did not start"
  SERVER=$(cat "$STATE/yolod.addr")
}
ctl() { "$YOLOCTL" -s "$SERVER" "$@"; }
# json ID PYTHON_EXPRESSION_ON_e: a value of `describe experiment ID -o json`.
json() {
  ctl -o json describe experiment "$1" | /usr/bin/python3 -c "import json,sys; e=json.load(sys.stdin); print($2)"
}
# The host's RAM in use now, in whole percent, and watchdog levels that put it at warning or
# danger.
used_pct() { awk '/MemTotal/{t=$2} /MemAvailable/{a=$2} END{printf "%d", (t-a)*100/t}' /proc/meminfo; }
# The levels are fractions of the use now, so that they hold on a host that is nearly idle (at
# 2.7 % in use, integer percentages left no room for danger below it).
levels_at() { awk -v f="$1" '/MemTotal/{t=$2} /MemAvailable/{a=$2} END{u=(t-a)*100/t; split(f, k, ",");
  printf "ram=%.2f,%.2f,%s", u*k[1], u*k[2], (k[3] == "" ? 99 : sprintf("%.2f", u*k[3]))}' /proc/meminfo; }
warning_levels() { levels_at 0.3,0.6; }
danger_levels() { levels_at 0.25,0.5,0.75; }
# free_port: a TCP port free on loopback now (for servers that cannot take port 0).
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# The id in start-experiment's output.
new_id() { sed -n 's/^experiment \(exp-[0-9a-f]*\) created.*/\1/p'; }
# make_cgroup LIMIT_BYTES: a memory cgroup of this test's own with that limit (cgroup v2's
# memory.max, or v1's memory.limit_in_bytes) that a process may be moved into; sets CGROUP to
# its folder, or returns 1 where this machine does not let the test make one.
# in_cgroup COMMAND... becomes COMMAND inside it (exec): call it as a background job or in
# $(...), so that $! is COMMAND's own pid.
make_cgroup() {
  local name="yolotest.$$.${#CGROUPS[@]}"
  CGROUP=
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    grep -qw memory /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || return 1
    mkdir "/sys/fs/cgroup/$name" 2>/dev/null || return 1
    CGROUP=/sys/fs/cgroup/$name
    CGROUPS+=("$CGROUP")
    echo "$1" >"$CGROUP/memory.max" 2>/dev/null || return 1
  elif [[ -d /sys/fs/cgroup/memory ]]; then
    mkdir "/sys/fs/cgroup/memory/$name" 2>/dev/null || return 1
    CGROUP=/sys/fs/cgroup/memory/$name
    CGROUPS+=("$CGROUP")
    echo "$1" >"$CGROUP/memory.limit_in_bytes" 2>/dev/null || return 1
  else
    return 1
  fi
  bash -c 'echo $$ >"$0/cgroup.procs"' "$CGROUP" 2>/dev/null || return 1
}
in_cgroup() { exec bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CGROUP" "$@"; }

#!/usr/bin/env bash
# End to end with the real servers: a real yolod, Prometheus scraping it every second with the
# alert rules of deploy/prometheus, the real Alertmanager with deploy/alertmanager's route, and
# a webhook receiver of the test's own, all on loopback on free ports. While a short experiment
# runs (with an injected out-of-memory error that the worker recovers from), every PromQL
# expression of the Grafana dashboard and every selector of the alert rules returns data through
# Prometheus' HTTP API; with the RAM thresholds lowered through yoloctl, YolodRamWarning fires in
# Prometheus and reaches the webhook through Alertmanager. The status page is shown in headless
# Chromium with its charts filled and no error of its own (SCREENSHOT=FILE keeps the picture).
# Then /metrics with a token: refused without it, served with it; off loopback, HTTPS only.
# Usage: metrics_e2e_test.sh YOLOD YOLOCTL YOLO_WORKER REPO_ROOT
set -uo pipefail
YOLOD=$1 YOLOCTL=$2 WORKER=$3 REPO=$4
source "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
ALERTMANAGER=$(command -v prometheus-alertmanager || command -v alertmanager)
for tool in prometheus promtool curl "$ALERTMANAGER"; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (scripts/setup.sh)"; exit 77; }
done
STATE=$T/state
START=$(date +%s)

echo "== a webhook receiver, Alertmanager, yolod and Prometheus"
HOOK_PORT=$(free_port)
$PY - "$HOOK_PORT" "$T/alerts.jsonl" >"$T/hook.log" 2>&1 <<'PYEOF' &
import http.server, sys
port, out = int(sys.argv[1]), sys.argv[2]
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(out, "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", port), Hook).serve_forever()
PYEOF
PIDS+=($!)
AM_PORT=$(free_port)
sed -e "s|http://127.0.0.1:9095/yolod-alerts|http://127.0.0.1:$HOOK_PORT/alerts|" \
  -e 's/group_wait: 10s/group_wait: 1s/' -e 's/group_interval: 1m/group_interval: 5s/' \
  "$REPO/deploy/alertmanager/alertmanager.yml" >"$T/alertmanager.yml"
amtool check-config "$T/alertmanager.yml" >/dev/null 2>&1 || fail "amtool check-config"
"$ALERTMANAGER" --config.file="$T/alertmanager.yml" --storage.path="$T/am" \
  --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= >"$T/am.log" 2>&1 &
PIDS+=($!)
wait_for 30 curl -sf "http://127.0.0.1:$AM_PORT/-/ready" || fail "Alertmanager did not start: $(tail -5 "$T/am.log")"

"$WORKER" make-dataset shapes out="$T/data" train=32 val=8 imgsz=64 seed=0 >/dev/null || fail "make-dataset"
start_yolod --watchdog-interval 0.2 --enable-fault-injection
wait_for 10 test -s "$STATE/metrics.addr" || fail "no metrics.addr"
expect 0 "SERVING" ctl health  # grpc.health.v1, as the Compose and Kubernetes health checks ask
METRICS=$(cat "$STATE/metrics.addr")
curl -sf "http://$METRICS/metrics" >"$T/scrape.txt" || fail "no /metrics"
promtool check metrics <"$T/scrape.txt" || fail "promtool check metrics found problems"
grep -q '^yolod_memory_threshold_ratio{level="warning",resource="ram"} 0.8' "$T/scrape.txt" ||
  fail "no RAM warning threshold in /metrics"

PROM_PORT=$(free_port)
cat >"$T/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ["$REPO/deploy/prometheus/rules/yolod.yml"]
alerting:
  alertmanagers: [{static_configs: [{targets: ["127.0.0.1:$AM_PORT"]}]}]
scrape_configs:
  - job_name: yolod
    static_configs: [{targets: ["$METRICS"]}]
YAML
promtool check config "$T/prometheus.yml" >/dev/null || fail "promtool check config"
prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/prom" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$T/prometheus.log" 2>&1 &
PIDS+=($!)
PROM=http://127.0.0.1:$PROM_PORT
wait_for 30 curl -sf "$PROM/-/ready" || fail "Prometheus did not start: $(tail -5 "$T/prometheus.log")"
# has QUERY: the instant query returns at least one series.
has() { curl -sf --get "$PROM/api/v1/query" --data-urlencode "query=$1" | grep -q '"result":\[{'; }

echo "== a short experiment, scraped while it runs"
ID=$(ctl start-experiment --data "$T/data/data.yaml" --imgsz 64 --batch 8 --workers 1 --epochs 40 \
  --plots False --fault_oom_epoch 2 --name scraped | new_id)
[[ -n $ID ]] || fail "no experiment"
wait_for 90 has 'yolod_experiment_images_per_second > 0' || fail "Prometheus saw no training"
wait_for 90 has 'yolod_oom_recoveries_total{by="worker"} > 0' || fail "no OOM recovery in Prometheus"

echo "== RAM thresholds lowered through yoloctl: the warning alert reaches the webhook"
ctl memory levels set "$(warning_levels)" >/dev/null || fail "memory levels set"
wait_for 30 has 'yolod_memory_level{resource="ram"} >= 2' || fail "RAM level not at warning in Prometheus"
wait_for 120 has 'ALERTS{alertname="YolodRamWarning",alertstate="firing"}' ||
  fail "YolodRamWarning did not fire: $(curl -s "$PROM/api/v1/alerts")"
wait_for 60 grep -q '"alertname":"YolodRamWarning"' "$T/alerts.jsonl" ||
  fail "the alert did not reach the webhook: $(tail -5 "$T/am.log")"
grep -q '"status":"firing"' "$T/alerts.jsonl" || fail "the webhook got no firing alert"
grep -q '"runbook_url":"docs/operations.md#warning"' "$T/alerts.jsonl" || fail "no runbook in the alert"
wait_for 60 has 'yolod_watchdog_actions_total{kind="policy"} > 0' || fail "no policy action counted"
wait_for 60 has 'yolod_memory_actions_total{kind="policy_applied"} > 0' || fail "policy not applied"

echo "== every expression of the dashboard and the rules returns data"
sleep 5  # a few more scrapes for the rates' windows
CHECK=(--rules "$REPO/deploy/prometheus/rules/yolod.yml")
[[ -f $REPO/deploy/grafana/dashboards/yolod.json ]] && CHECK+=(--dashboard "$REPO/deploy/grafana/dashboards/yolod.json")
$PY "$(dirname "$0")/promql_check.py" "$PROM" "$START" "${CHECK[@]}" --skip-gpu >"$T/promql.txt" 2>&1 ||
  fail "expressions without data: $(grep -v '^ok\|^skip' "$T/promql.txt")"
tail -1 "$T/promql.txt"
[[ -n ${PROMQL_OUT:-} ]] && cp "$T/promql.txt" "$PROMQL_OUT"

echo "== the status page in headless Chromium"
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [[ -n $CHROMIUM ]]; then
  PAGE=(--headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,1100
    --virtual-time-budget=5000 --user-data-dir="$T/chromium")
  "$CHROMIUM" "${PAGE[@]}" --enable-logging=stderr --v=0 --dump-dom "http://$METRICS/" \
    >"$T/dom.html" 2>"$T/chromium.log" || fail "chromium failed: $(tail -5 "$T/chromium.log")"
  grep -q '<div id="error"></div>' "$T/dom.html" ||
    fail "the page shows an error: $(grep -o '<div id="error">[^<]*' "$T/dom.html")"
  grep -q "<td>$ID</td>" "$T/dom.html" || fail "the page does not list $ID"
  grep -q 'class="level warning"' "$T/dom.html" || fail "the page does not show RAM at warning"
  ! grep -E 'CONSOLE.*(Uncaught|Error|error)' "$T/chromium.log" || fail "errors in the page's console"
  # The charts hold data: the page keeps each chart's point count on its canvas.
  grep -Eq 'data-points="[1-9]' "$T/dom.html" || fail "the charts have no data"
  "$CHROMIUM" "${PAGE[@]}" --screenshot="$T/status.png" "http://$METRICS/" >/dev/null 2>&1 ||
    fail "no screenshot"
  [[ $(head -c 8 "$T/status.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] || fail "not a PNG"
  [[ -n ${SCREENSHOT:-} ]] && cp "$T/status.png" "$SCREENSHOT"
else
  echo "SKIP: no chromium for the status page"
fi
ctl stop "$ID" >/dev/null 2>&1 || true  # it may have finished
kill "$YOLOD_PID"; wait "$YOLOD_PID" 2>/dev/null

echo "== with a token, /metrics and the page's data need it"
echo "s3cret-token" >"$T/token"; chmod 600 "$T/token"
STATE=$T/state2 start_yolod --token-file "$T/token"
METRICS=$(cat "$T/state2/metrics.addr")
[[ $(curl -s -o /dev/null -w '%{http_code}' "http://$METRICS/metrics") == 401 ]] || fail "metrics served without the token"
[[ $(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer wrong' "http://$METRICS/api/status") == 401 ]] ||
  fail "status served with a wrong token"
# (Each answer goes to a file first: grep -q stopping early would fail curl under pipefail.)
curl -sf -H 'Authorization: Bearer s3cret-token' "http://$METRICS/metrics" >"$T/m.txt" &&
  grep -q yolod_experiments "$T/m.txt" || fail "metrics refused with the token"
curl -sf "http://$METRICS/" >"$T/page.html" && grep -q '<canvas id="ram">' "$T/page.html" ||
  fail "the page itself should need no token"
kill "$YOLOD_PID"; wait "$YOLOD_PID" 2>/dev/null

echo "== off loopback: HTTPS with the gRPC certificate, and the token"
expect 2 "metrics_listen: 0.0.0.0:0" "$YOLOD" --listen 127.0.0.1:0 --metrics-listen 0.0.0.0:0 \
  --state-dir "$T/state3" --worker "$WORKER"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 1 \
  -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >/dev/null 2>&1 ||
  fail "openssl req"
METRICS_LISTEN=0.0.0.0:0 STATE=$T/state3 start_yolod --tls-cert "$T/cert.pem" \
  --tls-key "$T/key.pem" --token-file "$T/token"
PORT=$(sed 's/.*://' "$T/state3/metrics.addr")
curl -sf --cacert "$T/cert.pem" -H 'Authorization: Bearer s3cret-token' \
  "https://127.0.0.1:$PORT/metrics" >"$T/m.txt" && grep -q yolod_experiments "$T/m.txt" ||
  fail "no /metrics over HTTPS"
[[ $(curl -s -o /dev/null -w '%{http_code}' --cacert "$T/cert.pem" "https://127.0.0.1:$PORT/metrics") == 401 ]] ||
  fail "HTTPS /metrics served without the token"
! curl -sf -m 5 "http://127.0.0.1:$PORT/metrics" >/dev/null 2>&1 || fail "plain HTTP answered off loopback"
curl -sf --cacert "$T/cert.pem" -H 'Authorization: Bearer s3cret-token' \
  "https://127.0.0.1:$PORT/metrics" >/dev/null || fail "a plain request broke the HTTPS server"
echo "PASS"

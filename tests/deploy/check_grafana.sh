#!/usr/bin/env bash
# Checks deploy/grafana/dashboards/yolod.json offline against Grafana's published dashboard
# types (@grafana/schema, pinned in package.json) with tsc, and that every panel, target and
# annotation uses the data source uid "prometheus"; also the provisioning files' essentials.
#   tests/deploy/check_grafana.sh               check; exit 0 valid, 1 not, 77 skipped
#   tests/deploy/check_grafana.sh --list-exprs  print "<panel title>\t<expr>" per PromQL expression
#   tests/deploy/check_grafana.sh FILE.json     check another dashboard file
# Verified to fail (exit 1) on a broken copy of the dashboard: with `"panels": "x"` (tsc: not
# assignable to `(YolodRow | YolodPanel)[]`), with an unknown key in a panel, with
# thresholdsStyle mode "areas", with a target's datasource uid changed, with `"type": "query"` of
# the variable changed to "qurey", and with schemaVersion 38.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
need_node_modules

if [[ ${1:-} == --list-exprs ]]; then
  exec node "$DEPLOY_TESTS/check_grafana.mjs" --list-exprs "${@:2}"
fi
node "$DEPLOY_TESTS/check_grafana.mjs" "$@" || fail "the dashboard is not valid (above)"

if [[ $# -eq 0 ]]; then
  # The provisioning files the dashboard relies on: data source uid prometheus, file provider.
  node --input-type=module - "$REPO_ROOT/deploy/grafana/provisioning" <<'JS' || fail "provisioning (above)"
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
const require = createRequire(process.env.DEPLOY_TESTS + '/package.json');
const YAML = require('yaml');
const dir = process.argv[2];
const load = (f) => YAML.parse(readFileSync(`${dir}/${f}`, 'utf8'));
const errors = [];
const ds = load('datasources/prometheus.yml');
const prom = (ds?.datasources ?? []).find((d) => d.uid === 'prometheus');
if (ds?.apiVersion !== 1) errors.push('datasources/prometheus.yml: apiVersion is not 1');
if (!prom || prom.type !== 'prometheus' || prom.name !== 'Prometheus' || prom.url !== 'http://prometheus:9090') {
  errors.push('datasources/prometheus.yml: no data source {name: Prometheus, type: prometheus, uid: prometheus, url: http://prometheus:9090}');
}
const dash = load('dashboards/yolod.yml');
const file = (dash?.providers ?? []).find((p) => p.type === 'file');
if (dash?.apiVersion !== 1) errors.push('dashboards/yolod.yml: apiVersion is not 1');
if (file?.options?.path !== '/var/lib/grafana/dashboards') {
  errors.push('dashboards/yolod.yml: no file provider with options.path /var/lib/grafana/dashboards');
}
for (const e of errors) console.error(e);
process.exit(errors.length ? 1 : 0);
JS
  echo "check_grafana: provisioning: valid"
fi

#!/usr/bin/env bash
# Checks the manifests in deploy/k8s offline (check_k8s.mjs says how): against Kubernetes'
# schemas (kubernetes-models) and the Prometheus Operator's ServiceMonitor CRD
# (@kubernetes-models/prometheus-operator), unknown fields through their TypeScript types, and
# how the files fit together. Exit 0 valid, 1 not, 77 skipped (node missing, not installable).
#   tests/deploy/check_k8s.sh [DIR]
# Verified to fail (exit 1) on a broken copy: containers: "x", a misspelt `livenesProbe`,
# nvidia.com/gpu limit 2, `grpc: {port: 50051}` probes, a Service port name that the
# ServiceMonitor does not find, a real-looking token in secret.yaml, scheme http, and an
# unknown key in the ConfigMap's yolod.yaml.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
need_node_modules
node "$DEPLOY_TESTS/check_k8s.mjs" "$@" || fail "the manifests are not valid (above)"

#!/usr/bin/env bash
# Checks docker-compose.yml (alone and with docker-compose.gpu.yml) and deploy/docker/Dockerfile
# offline; builds and starts nothing.
#   1. `docker-compose config -q` of both variants (Debian's docker-compose 1.29), in a temporary
#      copy where the files the services mount and that are not in the checkout yet
#      (deploy/prometheus/..., deploy/alertmanager/...) are empty stand-ins; then the resolved
#      configuration's essentials (ports on 127.0.0.1 only, yolod on loopback, Prometheus in
#      yolod's network namespace, the mounts, the GPU reservation in the GPU variant only).
#   2. The Dockerfile: dockerfile-utils' linter (pinned in package.json) and its structure.
#   3. With a build in build/ (or $BUILD_DIR): the runtime package list deploy/docker/runtime-packages.sh derives
#      from the programs holds no -dev package and resolves with apt-get from nothing installed
#      (simulated, against this machine's package lists).
# Exit 0 valid, 1 not, 77 skipped (docker-compose or node missing and not installable).
# Verified to fail (exit 1) on a port published on 0.0.0.0, on yolod given --listen 0.0.0.0:50051,
# on the GPU reservation removed from docker-compose.gpu.yml, on `services.yolod.ports: 5` (the
# config itself), and on a Dockerfile with `RUNN`, a missing HEALTHCHECK or `USER root`.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

if ! command -v docker-compose >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose >&2 ||
      skip "docker-compose is missing and apt-get could not install it"
  else
    skip "docker-compose is missing (apt-get install docker-compose)"
  fi
fi
need_node_modules

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp docker-compose.yml docker-compose.gpu.yml "$tmp/"
mkdir -p "$tmp/deploy"
cp -r deploy/grafana deploy/docker "$tmp/deploy/"
for f in deploy/prometheus/prometheus.yml deploy/alertmanager/alertmanager.yml; do
  mkdir -p "$tmp/$(dirname "$f")"
  if [[ -f $f ]]; then
    cp "$f" "$tmp/$f"
  else
    echo "check_compose: note: $f is not in the checkout yet; an empty stand-in is used" >&2
    : >"$tmp/$f"
  fi
done
if [[ -d deploy/prometheus/rules ]]; then
  cp -r deploy/prometheus/rules "$tmp/deploy/prometheus/"
else
  echo "check_compose: note: deploy/prometheus/rules/ is not in the checkout yet; an empty one is used" >&2
  mkdir -p "$tmp/deploy/prometheus/rules"
fi

for variant in plain gpu; do
  files=(-f docker-compose.yml)
  [[ $variant == gpu ]] && files+=(-f docker-compose.gpu.yml)
  (cd "$tmp" && docker-compose "${files[@]}" config -q) ||
    fail "docker-compose ${files[*]} config -q: the file is not valid (above)"
  (cd "$tmp" && docker-compose "${files[@]}" config) >"$tmp/config-$variant.yml"
  node "$DEPLOY_TESTS/check_compose.mjs" compose "$tmp/config-$variant.yml" "$variant" ||
    fail "docker-compose ${files[*]}: (above)"
  echo "check_compose: docker-compose ${files[*]} config: valid"
done

node "$DEPLOY_TESTS/check_compose.mjs" dockerfile deploy/docker/Dockerfile ||
  fail "deploy/docker/Dockerfile: (above)"
echo "check_compose: deploy/docker/Dockerfile: valid (dockerfile-utils $(node -p "require('$DEPLOY_TESTS/node_modules/dockerfile-utils/package.json').version"))"

build_dir=${BUILD_DIR:-build}  # as scripts/build.sh
programs=("$build_dir/server/daemon/yolod" "$build_dir/server/worker/yolo-worker" "$build_dir/client/yoloctl")
if ! ls "${programs[@]}" >/dev/null 2>&1; then
  echo "check_compose: note: no build in $build_dir: the runtime package list is not checked" >&2
elif ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null || ! command -v dpkg-query >/dev/null; then
  echo "check_compose: note: no apt package lists here: the runtime package list is not checked" >&2
else
  deploy/docker/runtime-packages.sh "${programs[@]}" >"$tmp/runtime-packages.txt" ||
    fail "deploy/docker/runtime-packages.sh could not derive the runtime packages (above)"
  if grep -E -- '-dev$' "$tmp/runtime-packages.txt"; then
    fail "the runtime package list holds -dev packages (above)"
  fi
  : >"$tmp/empty-status"
  xargs -a "$tmp/runtime-packages.txt" apt-get -s -q -o Dir::State::status="$tmp/empty-status" \
    install --no-install-recommends >"$tmp/apt.log" 2>&1 ||
    { cat "$tmp/apt.log" >&2; fail "the runtime packages do not resolve with apt-get (above)"; }
  echo "check_compose: runtime packages: $(wc -l <"$tmp/runtime-packages.txt") derived, \
$(grep -c '^Inst ' "$tmp/apt.log") to install on a bare debian:12 (apt-get -s)"
fi

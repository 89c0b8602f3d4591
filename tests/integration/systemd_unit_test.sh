#!/usr/bin/env bash
# deploy/systemd/yolod.service: installed by `cmake --install`, accepted by systemd-analyze
# verify (with ExecStart pointing at the installed programs), and hardened: systemd-analyze
# security rates it below 5.0 ("OK" or better) offline. Skipped (77) without systemd-analyze.
# Usage: systemd_unit_test.sh BUILD_DIR
set -uo pipefail
BUILD=$1
UNIT=$(dirname "$0")/../../deploy/systemd/yolod.service
source "$(dirname "$0")/lib.sh"
command -v systemd-analyze >/dev/null || { echo "SKIP: no systemd-analyze"; exit 77; }

cmake --install "$BUILD" --prefix "$T/prefix" >"$T/install.log" 2>&1 || fail "install: $(cat "$T/install.log")"
for f in bin/yolod bin/yoloctl bin/yolo-worker share/yolod/systemd/yolod.service share/doc/yolod/README.md; do
  [[ -e $T/prefix/$f ]] || fail "cmake --install left out $f"
done
"$T/prefix/bin/yoloctl" version >/dev/null || fail "the installed yoloctl does not run"
"$T/prefix/bin/yolo-worker" args >/dev/null || fail "the installed yolo-worker does not run"

# The unit as installed under this prefix: only the programs' folder differs.
sed "s|/usr/local/bin/|$T/prefix/bin/|g" "$UNIT" >"$T/yolod.service"
OUT=$(systemd-analyze verify "$T/yolod.service" 2>&1) || fail "systemd-analyze verify: $OUT"
[[ -z $OUT ]] || fail "systemd-analyze verify warns: $OUT"
for key in DynamicUser=yes NoNewPrivileges=yes ProtectSystem=strict ProtectHome= PrivateTmp=yes \
  StateDirectory=yolod MemoryAccounting=yes Restart=on-failure KillMode=mixed; do
  grep -q "^$key" "$UNIT" || fail "the unit lacks $key"
done
SCORE=$(systemd-analyze security --offline=yes "$T/yolod.service" 2>/dev/null |
  sed -n 's/.*Overall exposure level for yolod.service: \([0-9.]*\).*/\1/p')
[[ -n $SCORE ]] || fail "no exposure score: $(systemd-analyze security --offline=yes "$T/yolod.service" 2>&1 | tail -3)"
echo "exposure $SCORE"
awk -v s="$SCORE" 'BEGIN { exit !(s < 5.0) }' || fail "exposure $SCORE is not below 5.0"
echo "PASS"

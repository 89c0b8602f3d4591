# Sourced by the scripts beside it: Ultralytics 8.1.47 from ../shared/peer, set up as its run.sh
# sets it up, and peer() to run peer_parity.py with it. Needs ROOT (the checkout).
SHARED_PEER=${SHARED_PEER:-$(cd "$ROOT/.." && pwd)/shared/peer}
PEER=${PEER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/yolod-peer}
PY=${PY:-/usr/bin/python3}
mkdir -p "$PEER/cfg"
[[ -d $PEER/ultralytics-8.1.47 ]] || tar -xzf "$SHARED_PEER/ultralytics-8.1.47.tar.gz" -C "$PEER"
[[ -f $PEER/cfg/Arial.ttf ]] || cp /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf "$PEER/cfg/Arial.ttf"
"$PY" -c "import torch, cv2, yaml, pandas, matplotlib" 2>/dev/null ||
  { echo "the peer's Python packages are missing: run $SHARED_PEER/run.sh once" >&2; exit 1; }
export PYTHONPATH=$PEER/ultralytics-8.1.47 YOLO_CONFIG_DIR=$PEER/cfg YOLO_OFFLINE=True
peer() { "$PY" "$ROOT/bench/parity/peer_parity.py" "$@"; }

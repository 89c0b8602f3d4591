# Sourced by the check_*.sh scripts beside it: the repository root, skip and failure exits, and
# the pinned npm packages (package.json, package-lock.json) installed on first use.
# shellcheck shell=bash
DEPLOY_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DEPLOY_TESTS
REPO_ROOT=$(cd "$DEPLOY_TESTS/../.." && pwd)
export REPO_ROOT
readonly SKIP=77

skip() {
  echo "$(basename "$0"): SKIP: $*" >&2
  exit "$SKIP"
}

fail() {
  echo "$(basename "$0"): FAIL: $*" >&2
  exit 1
}

# node and npm, from Debian when missing and we may install (root, apt-get); else a skip.
need_node() {
  if command -v node >/dev/null && command -v npm >/dev/null; then
    return 0
  fi
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "$(basename "$0"): installing nodejs and npm from Debian" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm >&2 ||
      skip "node and npm are missing and apt-get could not install them"
    return 0
  fi
  skip "node and npm are missing (apt-get install nodejs npm)"
}

# tests/deploy/node_modules from the committed package-lock.json (npm ci) when it is missing or
# older than the lock. Without the registry that is a skip; any other npm ci failure (a lock that
# does not match package.json) is a failure. ctest -j may run the checks at once: one installs
# while the others wait (flock on package.json).
need_node_modules() {
  need_node
  local marker="$DEPLOY_TESTS/node_modules/.package-lock.json" lock_fd log
  exec {lock_fd}<"$DEPLOY_TESTS/package.json"
  if command -v flock >/dev/null; then
    flock "$lock_fd"
  fi
  if [[ -f $marker && ! $DEPLOY_TESTS/package-lock.json -nt $marker ]]; then
    exec {lock_fd}<&-
    return 0
  fi
  log=$(mktemp)
  if ! npm ci --prefix "$DEPLOY_TESTS" --no-audit --no-fund >"$log" 2>&1; then
    cat "$log" >&2
    if grep -qE 'ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNREFUSED|ECONNRESET|ENETUNREACH|EHOSTUNREACH|network' "$log"; then
      rm -f "$log"
      skip "npm ci could not reach the registry to install tests/deploy/package-lock.json"
    fi
    rm -f "$log"
    fail "npm ci --prefix tests/deploy failed"
  fi
  rm -f "$log"
  exec {lock_fd}<&-
}

#!/bin/sh
# Prints the Debian packages that programs need at run time, one per line, sorted: the package
# that owns each shared library they load (ldd; a /usr-merged path is tried both ways), and
# plplot-driver-cairo, the PNG device yoloctl's PLplot opens with dlopen, which ldd cannot see.
# The Dockerfile's runtime stage installs this list, so that the package list is kept in one
# place (scripts/setup.sh) and the image holds no compiler or -dev package.
#   deploy/docker/runtime-packages.sh /opt/yolod/bin/yolod /opt/yolod/bin/yolo-worker ...
# Fails when a library is not found or no package owns it. POSIX sh: it runs in debian:12.
set -eu
export LC_ALL=C  # sort and comm agree
if [ "$#" -eq 0 ]; then
  echo "usage: $0 PROGRAM..." >&2
  exit 2
fi
if ldd "$@" | grep -q 'not found'; then
  ldd "$@" >&2
  echo "$0: a shared library is not found" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u | xargs readlink -f | sort -u \
  >"$tmp/paths"
# One dpkg-query for all (one per library takes half a minute); "pkg[, pkg]: path" lines.
owners() { xargs -r dpkg-query -S <"$1" 2>/dev/null || true; }
owners "$tmp/paths" >"$tmp/owned"
# Paths dpkg knows under the other spelling of a /usr-merged system (/lib vs /usr/lib).
sed 's|^.*: /|/|' "$tmp/owned" | sort -u >"$tmp/found"
comm -23 "$tmp/paths" "$tmp/found" | sed 's|^/usr/|/|' | sort -u >"$tmp/retry"
owners "$tmp/retry" >>"$tmp/owned"
sed 's|^.*: /|/|' "$tmp/owned" | sort -u >"$tmp/found"
comm -23 "$tmp/retry" "$tmp/found" >"$tmp/unowned"
if [ -s "$tmp/unowned" ]; then
  echo "$0: no Debian package owns:" >&2
  cat "$tmp/unowned" >&2
  exit 1
fi
{
  sed 's|: /.*$||' "$tmp/owned" | tr ',' '\n' | sed 's/^ *//; s/:.*$//'
  echo plplot-driver-cairo
} | sort -u

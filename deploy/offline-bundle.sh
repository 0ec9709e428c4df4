#!/usr/bin/env bash
# Make an offline bundle for `install.sh --offline DIR` (school networks are often locked down):
#
#   deploy/offline-bundle.sh DIR [EXTRA_APT_PACKAGE...]
#
# Run it on a machine WITH network access that has the same release and architecture as the
# doors (Raspberry Pi OS Bookworm arm64 for Pis; Debian 12 amd64 for a test VM), as root.
# It writes:
#   DIR/debs/    every .deb the installer may need with all its dependencies, resolved as if
#                nothing were installed, plus a Packages index (a flat apt repository)
#   DIR/wheels/  this project's Python dependencies as wheels (with the "intercom" extra),
#                plus setuptools/wheel to build it
#   DIR/MANIFEST release, architecture, Python version and date
# Copy DIR to the door (USB stick, scp) and run: sudo deploy/install.sh --offline DIR ...
# apt installs only what is missing and never downgrades: the bundle is a source, not a list.
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 1 ] || { echo "usage: offline-bundle.sh DIR [EXTRA_APT_PACKAGE...]" >&2; exit 2; }
OUT="$1"; shift
# What install.sh installs (python3-picamera2/python3-lgpio only where the archive has them),
# mosquitto for --with-mosquitto, nginx for the panel's front; extras from the command line.
WANT=(python3-venv openssl mosquitto nginx python3-picamera2 python3-lgpio "$@")
mkdir -p "$OUT/debs" "$OUT/wheels"
OUT="$(cd "$OUT" && pwd)"

pkgs=()
for pkg in "${WANT[@]}"; do
  if apt-cache show "$pkg" >/dev/null 2>&1; then pkgs+=("$pkg"); else echo "offline-bundle: $pkg is not in this machine's apt sources: left out"; fi
done
echo "offline-bundle: resolving and downloading: ${pkgs[*]}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
: >"$tmp/status"                     # an empty dpkg status: resolve the full dependency closure
mkdir -p "$tmp/archives/partial"
apt-get install -y -q --download-only --no-install-recommends \
  -o "Dir::State::status=$tmp/status" -o "Dir::Cache::archives=$tmp/archives" -o Debug::NoLocking=1 \
  "${pkgs[@]}" >"$tmp/apt.log" 2>&1 || { cat "$tmp/apt.log" >&2; exit 1; }
cp -f "$tmp"/archives/*.deb "$OUT/debs/"
if command -v dpkg-scanpackages >/dev/null 2>&1; then
  (cd "$OUT/debs" && dpkg-scanpackages --multiversion . /dev/null 2>/dev/null >Packages)
elif command -v apt-ftparchive >/dev/null 2>&1; then
  (cd "$OUT/debs" && apt-ftparchive packages . >Packages)
else
  echo "offline-bundle: needs dpkg-scanpackages (apt install dpkg-dev) or apt-ftparchive (apt-utils)" >&2; exit 1
fi

PY="${PYTHON:-python3}"
echo "offline-bundle: wheels for this project ($("$PY" -V 2>&1))"
# with the intercom extra (install.sh installs it unless --without-intercom): aiortc, PyAV, numpy
"$PY" -m pip download --quiet --only-binary=:all: --dest "$OUT/wheels" "$SRC[intercom]" setuptools wheel 2>&1 \
  | grep -v "^WARNING: Location" || true
ls "$OUT"/wheels/*.whl >/dev/null

{
  grep -E '^(ID|VERSION_CODENAME)=' /etc/os-release
  echo "ARCH=$(dpkg --print-architecture)"
  echo "PYTHON=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  echo "DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$OUT/MANIFEST"
echo "offline-bundle: $OUT: $(ls "$OUT"/debs/*.deb | wc -l) packages, $(ls "$OUT"/wheels/*.whl | wc -l) wheels," \
     "$(du -sh "$OUT" | cut -f1)"

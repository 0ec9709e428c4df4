#!/usr/bin/env bash
# The installed system, run for real: a Debian 12 VM with systemd as init, where
# deploy/install.sh, the hardened units and the README's commands are exercised end to end.
#
#   bash scripts/vm-test.sh            # build (or reuse) the image, boot it, run every check
#   bash scripts/vm-test.sh --keep     # keep the run directory (disk, console log) afterwards
#
# 1. host set-up: mmdebstrap, qemu-system-x86, e2fsprogs, dpkg-dev (apt, only when missing);
# 2. a Debian 12 (bookworm, the base of Raspberry Pi OS) root file system from mmdebstrap,
#    cached in $ENTRY_BUZZER_VM_CACHE (default ~/.cache/entry-buzzer-vm), keyed by a hash of
#    its package list and apt sources; an offline bundle (deploy/offline-bundle.sh: .debs and
#    wheels) cached the same way: the VM has no network, as many school networks;
# 3. a fresh disk per run: the cached root, a user "pi" with sudo (as Raspberry Pi OS), the
#    project from `git archive HEAD` in /home/pi/entry-buzzer, the bundle, the test agent, and
#    the test-only drop-ins that give the service gpiozero's mock pins (no gpio-sim in Debian's
#    kernel);
# 4. boots it under QEMU (KVM when a short probe shows it works, else TCG) and runs
#    scripts/vm/rig.py: install as the README says, then the eight checks. Exit 0 only if all pass.
set -euo pipefail
{   # one compound command: bash reads it whole before running, so editing this file mid-run is safe
cd "$(dirname "$0")/.."
REPO="$PWD"
KEEP=0 RIG_ARGS=()
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    --only=*) RIG_ARGS+=("$arg") ;;      # debugging: --only=install,service,...
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "vm-test: unknown option $arg" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  exec sudo --preserve-env=ENTRY_BUZZER_VM_CACHE,HOME bash "$0" "$@"
fi
T0=$(date +%s)
log() { echo "vm-test: [$(( $(date +%s) - T0 ))s] $*"; }

# ---------------------------------------------------------------- host set-up
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /usr/sbin/mke2fs ] || need+=(e2fsprogs)
command -v dpkg-scanpackages >/dev/null || need+=(dpkg-dev)
if [ ${#need[@]} -gt 0 ]; then
  log "installing host tools: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

CACHE="${ENTRY_BUZZER_VM_CACHE:-$HOME/.cache/entry-buzzer-vm}"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"; flock 9        # one run at a time per cache

# ---------------------------------------------------------------- root file system (cached)
# What a fresh Raspberry Pi OS Lite has that the installer and the README rely on (sudo,
# python3, curl, dbus), plus the kernel to boot and mosquitto-clients to watch the broker.
IMAGE_PKGS="systemd-sysv,udev,dbus,linux-image-amd64,initramfs-tools,sudo,python3,curl,ca-certificates,procps,kmod,iproute2,mosquitto-clients"
SOURCES="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep -v '^#' || true)"
key="$(printf 'v1\nbookworm minbase\n%s\n%s\n' "$IMAGE_PKGS" "$SOURCES" | sha256sum | cut -c1-16)"
ROOTFS="$CACHE/rootfs-$key.tar"
if [ -s "$ROOTFS" ]; then
  log "root file system: cached ($ROOTFS)"
else
  log "root file system: building with mmdebstrap (about 2 minutes) ..."
  t=$(date +%s)
  rm -rf "$CACHE"/rootfs-*
  mmdebstrap --quiet --variant=minbase --include="$IMAGE_PKGS" bookworm "$CACHE/rootfs-$key.partial.tar"
  mv "$CACHE/rootfs-$key.partial.tar" "$ROOTFS"
  log "root file system: built in $(( $(date +%s) - t ))s"
fi

# ---------------------------------------------------------------- offline bundle (cached)
bkey="$(cat pyproject.toml deploy/offline-bundle.sh <(echo "$SOURCES") | sha256sum | cut -c1-16)"
BUNDLE="$CACHE/bundle-$bkey"
if [ -s "$BUNDLE/MANIFEST" ]; then
  log "offline bundle: cached ($BUNDLE)"
else
  log "offline bundle: deploy/offline-bundle.sh ..."
  rm -rf "$CACHE"/bundle-*
  bash deploy/offline-bundle.sh "$BUNDLE.tmp" >"$CACHE/bundle.log" 2>&1 || { cat "$CACHE/bundle.log" >&2; exit 1; }
  mv "$BUNDLE.tmp" "$BUNDLE"
  tail -1 "$CACHE/bundle.log"
fi

# ---------------------------------------------------------------- this run's disk
RUN="$(mktemp -d "$CACHE/run.XXXXXX")"
cleanup() { if [ "$KEEP" = 1 ]; then log "kept $RUN"; else rm -rf "$RUN"; fi; }
trap cleanup EXIT
R="$RUN/root"
mkdir "$R"
tar -C "$R" -xf "$ROOTFS"
echo door-north >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdoor-north\n' >"$R/etc/hosts"
echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" >"$R/etc/fstab"
# the test agent (not part of the product): runs the host's scripts over virtio-serial
install -m 0755 scripts/vm/agent.py "$R/usr/local/sbin/vmrig-agent"
cat >"$R/etc/systemd/system/vmrig-agent.service" <<'EOF'
[Unit]
Description=VM test agent (virtio-serial port "rig")
DefaultDependencies=no
After=local-fs.target systemd-udevd.service
[Service]
ExecStart=/usr/local/sbin/vmrig-agent
Restart=always
[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/vmrig-agent.service "$R/etc/systemd/system/multi-user.target.wants/vmrig-agent.service"
# the owner's account, as on Raspberry Pi OS: "pi" with password-less sudo, in adm (reads the journal)
chroot "$R" useradd --create-home --shell /bin/bash --groups sudo,adm,video pi
echo "pi ALL=(ALL) NOPASSWD: ALL" >"$R/etc/sudoers.d/010_pi-nopasswd"
chmod 0440 "$R/etc/sudoers.d/010_pi-nopasswd"
# test-only: Debian's kernel has no gpio-sim/gpio-mockup, so the units get gpiozero's mock pins,
# and so do the commands the owner types (login shell, kept by sudo)
echo "export GPIOZERO_PIN_FACTORY=mock" >"$R/etc/profile.d/vm-mock-gpio.sh"
echo 'Defaults env_keep += "GPIOZERO_PIN_FACTORY"' >"$R/etc/sudoers.d/020_vm-mock-gpio"
chmod 0440 "$R/etc/sudoers.d/020_vm-mock-gpio"
for unit in entry-buzzer.service entry-buzzer-relock.service; do
  mkdir -p "$R/etc/systemd/system/$unit.d"
  printf '# VM test only: no GPIO hardware in the VM\n[Service]\nEnvironment=GPIOZERO_PIN_FACTORY=mock\n' \
    >"$R/etc/systemd/system/$unit.d/vm-mock-gpio.conf"
done
# the project as a clone would bring it (git archive of HEAD), and the offline bundle
mkdir -p "$R/home/pi/entry-buzzer"
git -c safe.directory="$REPO" archive --format=tar HEAD | tar -C "$R/home/pi/entry-buzzer" -xf -
cp -r "$BUNDLE" "$R/home/pi/entry-buzzer-offline"
pi_uid="$(chroot "$R" id -u pi)"
chown -R "$pi_uid:$pi_uid" "$R/home/pi"
cp "$R"/boot/vmlinuz-* "$RUN/vmlinuz"
cp "$R"/boot/initrd.img-* "$RUN/initrd.img"
truncate -s 6G "$RUN/disk.img"
mke2fs -q -F -t ext4 -L root -d "$R" "$RUN/disk.img"
rm -rf "$R"
log "disk ready (HEAD $(git -c safe.directory="$REPO" rev-parse --short HEAD)); booting"

# ---------------------------------------------------------------- boot and check
set +e
python3 scripts/vm/rig.py --run "$RUN" --repo "$REPO" "${RIG_ARGS[@]}" &
rig=$!
trap 'kill -TERM $rig 2>/dev/null' TERM INT        # a timeout stops the rig, which stops QEMU
wait $rig; rc=$?
set -e
log "total $(( $(date +%s) - T0 ))s; rig exit $rc"
if [ "$rc" -ne 0 ] && [ "$KEEP" = 0 ]; then
  mkdir -p "$REPO/test-artifacts"; cp "$RUN"/*.log "$REPO/test-artifacts/" 2>/dev/null || true
  log "logs copied to test-artifacts/ (console.log, rig.log)"
fi
exit "$rc"
}

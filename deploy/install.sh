#!/usr/bin/env bash
# Install the entry-buzzer door controller on Raspberry Pi OS (Bookworm), in one command:
#
#   sudo deploy/install.sh                 # install or upgrade, then start the service
#   sudo deploy/install.sh --dry-run       # print every step, change nothing
#   sudo deploy/install.sh --uninstall     # remove the program; keep config and journal
#   sudo deploy/install.sh --uninstall --purge   # ... and the config, secrets, journal, user
#
# Idempotent: every step checks first and only acts when something is missing or
# different, so running it again changes nothing (it prints "0 changes").
#
# --root DIR installs into DIR instead of / (tests, image building): apt, useradd,
# chown and systemctl are printed as skipped there, never run.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: install.sh [options]
  --dry-run          print every step without doing it
  --root DIR         install into DIR instead of / (no apt, users, chown or systemctl)
  --no-venv          do not create the venv or pip install (the program must be there already)
  --no-apt           do not install apt packages
  --offline DIR      no network: apt packages and Python wheels from a bundle made by
                     deploy/offline-bundle.sh DIR on a networked machine of the same release
  --with-mosquitto   also install a local Mosquitto broker (apt: mosquitto)
  --with-intercom    install the intercom's media engine, the Python extra "intercom" (aiortc,
                     PyAV, numpy: about 120 MB in the venv). The default, because the shipped
                     config has [intercom] enabled = true
  --without-intercom do not: the door and the panel work as before and a live view answers
                     503 with the reason (set [intercom] enabled = false to hide it)
  --campus SLUG      site.campus for a new config (default: the example's)
  --door SLUG        site.door for a new config (default: the example's)
  --admin NAME       create the first admin account NAME (asks for the password)
  --admin-password-file FILE   with --admin: read its password from FILE instead
  --no-start         enable the service but do not start it now
  --uninstall        stop and remove the service and program; keeps config and journal
  --purge            with --uninstall: also remove config, secrets, journal and the user
  -h, --help         this help
EOF
}

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT=""
DRY=0 NO_VENV=0 NO_APT=0 MOSQUITTO=0 UNINSTALL=0 PURGE=0 START=1 INTERCOM=1
CAMPUS="" DOOR="" ADMIN="" ADMIN_PASSWORD_FILE="" OFFLINE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --root) ROOT="${2:?--root needs a directory}"; shift ;;
    --root=*) ROOT="${1#--root=}" ;;
    --no-venv) NO_VENV=1 ;;
    --no-apt) NO_APT=1 ;;
    --offline) OFFLINE="${2:?--offline needs a bundle directory}"; shift ;;
    --with-mosquitto) MOSQUITTO=1 ;;
    --with-intercom) INTERCOM=1 ;;
    --without-intercom) INTERCOM=0 ;;
    --campus) CAMPUS="${2:?--campus needs a slug}"; shift ;;
    --door) DOOR="${2:?--door needs a slug}"; shift ;;
    --admin) ADMIN="${2:?--admin needs a name}"; shift ;;
    --admin-password-file) ADMIN_PASSWORD_FILE="${2:?--admin-password-file needs a file}"; shift ;;
    --no-start) START=0 ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [ "$PURGE" = 1 ] && [ "$UNINSTALL" = 0 ]; then
  echo "install.sh: --purge only goes with --uninstall" >&2; exit 2
fi
for slug in "$CAMPUS" "$DOOR"; do
  if [ -n "$slug" ] && ! [[ "$slug" =~ ^[a-z0-9][a-z0-9_-]{0,62}$ ]]; then
    echo "install.sh: '$slug' is not a slug (lowercase letters, digits, - and _)" >&2; exit 2
  fi
done
# ---- offline bundle (--offline DIR): see deploy/offline-bundle.sh
APT_OFFLINE=() PIP_OFFLINE=()
if [ -n "$OFFLINE" ]; then
  OFFLINE="$(cd "$OFFLINE" 2>/dev/null && pwd)" || { echo "install.sh: --offline: no such directory" >&2; exit 2; }
  if [ ! -s "$OFFLINE/debs/Packages" ] || [ ! -d "$OFFLINE/wheels" ]; then
    echo "install.sh: --offline $OFFLINE is not a bundle (needs debs/Packages and wheels/; make one with deploy/offline-bundle.sh)" >&2; exit 2
  fi
  # apt sees only the bundle (a flat local repository) and the installed packages; its own lists are untouched.
  APT_OFFLINE_STATE="$(mktemp -d)"; trap 'rm -rf "$APT_OFFLINE_STATE"' EXIT
  mkdir -p "$APT_OFFLINE_STATE/lists/partial"
  echo "deb [trusted=yes] file:$OFFLINE/debs ./" >"$APT_OFFLINE_STATE/sources.list"
  APT_OFFLINE=(-o "Dir::Etc::SourceList=$APT_OFFLINE_STATE/sources.list" -o Dir::Etc::SourceParts=/dev/null
               -o "Dir::State::Lists=$APT_OFFLINE_STATE/lists" -o APT::Get::List-Cleanup=0
               -o APT::Sandbox::User=root)   # the bundle may sit in a home directory _apt cannot read
  PIP_OFFLINE=(--no-index --find-links "$OFFLINE/wheels")
fi
# ---- end offline bundle
if [ -n "$ROOT" ]; then
  [ -d "$ROOT" ] || { echo "install.sh: --root $ROOT is not a directory" >&2; exit 2; }
  ROOT="$(cd "$ROOT" && pwd)"
  [ "$ROOT" != "/" ] || ROOT=""
fi
if [ -z "$ROOT" ] && [ "$DRY" = 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (sudo), or use --dry-run / --root DIR" >&2; exit 2
fi

# ---------------------------------------------------------------- layout
USER_NAME=entry-buzzer
PREFIX=/opt/entry-buzzer
VENV=$PREFIX/venv
SHARE=$PREFIX/share
BIN=$PREFIX/bin
ETC=/etc/entry-buzzer
CRED=$ETC/credentials
CONFIG=$ETC/config.toml
STATE=/var/lib/entry-buzzer
LINK=/usr/local/bin/entry-buzzer     # on PATH, so the README's commands run verbatim
UNIT_DIR=/etc/systemd/system
UNITS=(entry-buzzer-relock.service entry-buzzer.service)
APT_PACKAGES=(python3-venv python3-picamera2 python3-lgpio openssl nginx)   # nginx: the panel's front
# Only in the Raspberry Pi OS archive (archive.raspberrypi.com), not in Debian: missing ones are reported.
PI_PACKAGES=(python3-picamera2 python3-lgpio)
[ "$MOSQUITTO" = 1 ] && APT_PACKAGES+=(mosquitto)
# The program that validates the config: the installed one, or ENTRY_BUZZER_BIN (tests, --no-venv).
EB_BIN="${ENTRY_BUZZER_BIN:-$ROOT$VENV/bin/entry-buzzer}"

CHANGES=0
say()  { echo "$*"; }
step() { echo "==> $*"; }
# run CMD...: a change. Printed always; executed unless --dry-run.
run() {
  CHANGES=$((CHANGES + 1))
  if [ "$DRY" = 1 ]; then echo "    [dry-run] $*"; else echo "    + $*"; "$@"; fi
}
# system CMD...: a change to the host itself (apt, users, chown, systemctl): skipped under --root.
system() {
  if [ -n "$ROOT" ]; then echo "    [skipped: --root] $*"; return 0; fi
  run "$@"
}
ok() { echo "    ok: $*"; }

# write_file DEST MODE LABEL: install stdin (described as LABEL) as DEST with MODE,
# only when DEST is missing or different.
write_file() {
  local dest="$1" mode="$2" label="$3" tmp
  tmp="$(mktemp)"; cat >"$tmp"
  if [ -f "$dest" ] && cmp -s "$tmp" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then
    ok "$dest unchanged"
  else
    CHANGES=$((CHANGES + 1))
    if [ "$DRY" = 1 ]; then echo "    [dry-run] install -m $mode $label $dest"; else
      echo "    + install -m $mode $label $dest"
      install -m "$mode" "$tmp" "$dest"
    fi
  fi
  rm -f "$tmp"
}

ensure_dir() {  # ensure_dir DIR MODE
  local dir="$1" mode="$2"
  if [ -d "$dir" ] && [ "$(stat -c %a "$dir")" = "${mode#0}" ]; then ok "$dir"; else run install -d -m "$mode" "$dir"; fi
}

ensure_owner() {  # ensure_owner OWNER:GROUP PATH
  local owner="$1" path="$2"
  if [ -n "$ROOT" ]; then echo "    [skipped: --root] chown $owner $path"; return 0; fi
  if [ -e "$path" ] && [ "$(stat -c %U:%G "$path")" = "$owner" ]; then ok "$path owned by $owner"; else run chown "$owner" "$path"; fi
}

source_hash() {  # a fingerprint of the program's sources: reinstall only when it changes
  local paths=()
  for p in pyproject.toml controller web intercom entry_buzzer; do [ -e "$SRC/$p" ] && paths+=("$p"); done
  (cd "$SRC" && find "${paths[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
    | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)
}

# ---------------------------------------------------------------- nginx front (issue 10)
# The panel's front on the school network: nginx terminates HTTPS on $PANEL_PORT with the
# credentials above and passes bounded requests to the controller's Unix socket. All of it
# lives in this one function (called once, before the service starts) to keep merges simple.
NGINX_SITE_SRC=deploy/nginx/entry-buzzer.conf
NGINX_AVAILABLE=/etc/nginx/sites-available/entry-buzzer
NGINX_ENABLED=/etc/nginx/sites-enabled/entry-buzzer
NGINX_DEFAULT_SITE=/etc/nginx/sites-enabled/default
PANEL_PORT=8443
NGINX_USER=www-data

# render_nginx_site SOCKET: the shipped template with its four tokens replaced (tests do the same).
render_nginx_site() {
  sed -e "s|@PANEL_PORT@|$PANEL_PORT|g" -e "s|@PANEL_SOCKET@|$1|g" \
      -e "s|@TLS_CERT@|$CRED/web-tls.crt|g" -e "s|@TLS_KEY@|$CRED/web-tls.key|g" "$SRC/$NGINX_SITE_SRC"
}

setup_nginx_front() {
  step "nginx front for the panel (HTTPS on port $PANEL_PORT)"
  if ! grep -Eq '^[[:space:]]*listen[[:space:]]*=[[:space:]]*"unix"' "$ROOT$CONFIG" 2>/dev/null; then
    say "    $CONFIG has no [web] listen = \"unix\": the controller serves the panel itself; nginx site not enabled."
    say "    To put nginx in front (recommended, see README 'Serving'): set listen = \"unix\", empty"
    say "    tls_cert_file and tls_key_file in [web], then run this installer again."
    return 0
  fi
  local socket changed=0 before
  socket="$(sed -n -E 's/^[[:space:]]*socket_path[[:space:]]*=[[:space:]]*"([^"]+)".*/\1/p' "$ROOT$CONFIG" | head -n1)"
  socket="${socket:-/run/entry-buzzer/panel.sock}"
  for dir in /etc/nginx /etc/nginx/sites-available /etc/nginx/sites-enabled; do
    [ -d "$ROOT$dir" ] || run install -d -m 0755 "$ROOT$dir"
  done
  before="$CHANGES"
  write_file "$ROOT$NGINX_AVAILABLE" 0644 "$NGINX_SITE_SRC (port $PANEL_PORT, unix:$socket)" < <(render_nginx_site "$socket")
  if [ -L "$ROOT$NGINX_ENABLED" ] && [ "$(readlink "$ROOT$NGINX_ENABLED")" = "$NGINX_AVAILABLE" ]; then
    ok "site enabled"
  else
    run ln -sfn "$NGINX_AVAILABLE" "$ROOT$NGINX_ENABLED"
  fi
  if [ -e "$ROOT$NGINX_DEFAULT_SITE" ] || [ -L "$ROOT$NGINX_DEFAULT_SITE" ]; then
    run rm -f "$ROOT$NGINX_DEFAULT_SITE"     # Debian's welcome page on port 80: not on a door controller
  else
    ok "default site disabled"
  fi
  [ "$CHANGES" != "$before" ] && changed=1
  # nginx's workers reach the socket through the service's group (socket 0660 in a 0750 dir).
  if [ -n "$ROOT" ]; then
    system usermod --append --groups "$USER_NAME" "$NGINX_USER"
  elif id -nG "$NGINX_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$USER_NAME"; then
    ok "$NGINX_USER in $USER_NAME"
  else
    run usermod --append --groups "$USER_NAME" "$NGINX_USER"; changed=1
  fi
  if [ -n "$ROOT" ]; then
    system nginx -t
    system systemctl enable nginx
    system systemctl reload-or-restart nginx
  elif [ "$DRY" = 1 ]; then
    say "    [dry-run] nginx -t && systemctl enable nginx && systemctl reload-or-restart nginx"
  elif [ "$changed" = 1 ] || ! systemctl is-active --quiet nginx 2>/dev/null; then
    run nginx -t -q
    run systemctl enable nginx
    run systemctl reload-or-restart nginx
  else
    ok "nginx running with this site"
  fi
}

remove_nginx_front() {   # uninstall: the site goes, nginx itself stays (it may serve more)
  step "remove the panel's nginx site"
  local removed=0 f
  for f in "$NGINX_ENABLED" "$NGINX_AVAILABLE"; do
    if [ -e "$ROOT$f" ] || [ -L "$ROOT$f" ]; then run rm -f "$ROOT$f"; removed=1; else ok "$f already removed"; fi
  done
  if [ "$removed" = 1 ]; then
    if [ -n "$ROOT" ]; then system systemctl reload nginx
    elif systemctl is-active --quiet nginx 2>/dev/null; then run systemctl reload nginx; fi
  fi
}

# ---------------------------------------------------------------- uninstall
uninstall() {
  step "stop and disable the service (ExecStopPost relocks the strike)"
  for unit in entry-buzzer.service entry-buzzer-relock.service; do
    if [ -n "$ROOT" ]; then
      system systemctl disable --now "$unit"
    elif [ -f "$UNIT_DIR/$unit" ]; then
      run systemctl disable --now "$unit"
    else
      ok "$unit not installed"
    fi
  done
  step "remove unit files"
  local removed=0
  for unit in "${UNITS[@]}"; do
    if [ -e "$ROOT$UNIT_DIR/$unit" ]; then run rm -f "$ROOT$UNIT_DIR/$unit"; removed=1; else ok "$unit already removed"; fi
  done
  [ "$removed" = 1 ] && system systemctl daemon-reload
  step "remove the command $LINK"
  if [ -L "$ROOT$LINK" ] && [ "$(readlink "$ROOT$LINK")" = "$VENV/bin/entry-buzzer" ]; then
    run rm -f "$ROOT$LINK"
  else ok "$LINK not ours or already removed"; fi
  remove_nginx_front
  step "remove the program ($PREFIX)"
  if [ -e "$ROOT$PREFIX" ]; then run rm -rf "$ROOT$PREFIX"; else ok "$PREFIX already removed"; fi
  if [ "$PURGE" = 1 ]; then
    step "purge config, secrets and journal"
    for path in "$ETC" "$STATE"; do
      if [ -e "$ROOT$path" ]; then run rm -rf "$ROOT$path"; else ok "$path already removed"; fi
    done
    step "remove the system user"
    if [ -n "$ROOT" ] || id -u "$USER_NAME" >/dev/null 2>&1; then system userdel "$USER_NAME"; else ok "no user $USER_NAME"; fi
  else
    say "    kept: $ETC (config, secrets) and $STATE (journal, snapshots); --purge removes them"
  fi
  if [ "$DRY" = 1 ]; then say "dry run: done, $CHANGES changes would be made"; else say "uninstall: done, $CHANGES changes"; fi
}

if [ "$UNINSTALL" = 1 ]; then
  uninstall
  exit 0
fi

# ---------------------------------------------------------------- install
[ -n "$ROOT" ] && say "installing into $ROOT (temp root: no apt, users, chown or systemctl)"
[ "$DRY" = 1 ] && say "dry run: printing every step, changing nothing"
if [ -z "$ROOT" ] && [ -r /etc/os-release ] && ! grep -q '^VERSION_CODENAME=bookworm' /etc/os-release; then
  say "warning: this installer targets Raspberry Pi OS Bookworm; continuing"
fi

step "apt packages: ${APT_PACKAGES[*]}"
if [ "$NO_APT" = 1 ]; then
  say "    [skipped: --no-apt] apt-get install ${APT_PACKAGES[*]}"
elif [ -n "$ROOT" ]; then
  say "    [skipped: --root] apt-get install -y --no-install-recommends ${APT_PACKAGES[*]}"
else
  missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then ok "all installed"; else
    # refreshing the package lists is not a change to the system (keeps "0 changes" on plain Debian)
    if [ "$DRY" = 1 ]; then echo "    [dry-run] apt-get update"; else echo "    + apt-get update"; apt-get "${APT_OFFLINE[@]}" update -q; fi
    # ---- Raspberry Pi OS packages on plain Debian: say they are missing and what that means
    available=() unavailable=()
    for pkg in "${missing[@]}"; do
      if [[ " ${PI_PACKAGES[*]} " == *" $pkg "* ]] && [ "$DRY" = 0 ] \
         && ! apt-cache "${APT_OFFLINE[@]}" show "$pkg" >/dev/null 2>&1; then unavailable+=("$pkg"); else available+=("$pkg"); fi
    done
    if [ ${#unavailable[@]} -gt 0 ]; then
      say "    missing: ${unavailable[*]}: not in this system's apt sources (they come from the Raspberry Pi OS"
      say "    archive; this is not Raspberry Pi OS). Without python3-lgpio there are no Pi GPIO pins: the"
      say "    controller cannot drive a strike or read the buzzer, and will not start unless a test system"
      say "    sets GPIOZERO_PIN_FACTORY=mock. Without python3-picamera2 set camera.kind = \"simulated\"."
      say "    On a Raspberry Pi, install Raspberry Pi OS Bookworm and run this again."
    fi
    # ---- end Raspberry Pi OS packages
    [ ${#available[@]} -eq 0 ] || run env DEBIAN_FRONTEND=noninteractive apt-get "${APT_OFFLINE[@]}" install -y --no-install-recommends "${available[@]}"
  fi
fi

step "system user $USER_NAME (groups gpio, video)"
if [ -n "$ROOT" ]; then
  system groupadd --system gpio
  system useradd --system --user-group --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
  system usermod --append --groups gpio,video "$USER_NAME"
else
  getent group gpio >/dev/null && ok "group gpio exists" || run groupadd --system gpio
  getent group video >/dev/null && ok "group video exists" || run groupadd --system video
  if id -u "$USER_NAME" >/dev/null 2>&1; then ok "user $USER_NAME exists"; else
    run useradd --system --user-group --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
  fi
  for group in gpio video; do
    if id -nG "$USER_NAME" 2>/dev/null | tr ' ' '\n' | grep -qx "$group"; then ok "$USER_NAME in $group"; else
      run usermod --append --groups "$group" "$USER_NAME"
    fi
  done
fi

step "directories"
for dir in /opt "$PREFIX" "$SHARE" "$BIN" /etc /var /var/lib /etc/systemd "$UNIT_DIR"; do
  [ -d "$ROOT$dir" ] && continue
  run install -d -m 0755 "$ROOT$dir"
done
ensure_dir "$ROOT$ETC" 0755
ensure_dir "$ROOT$CRED" 0700
ensure_dir "$ROOT$STATE" 0700
ensure_owner "$USER_NAME:$USER_NAME" "$ROOT$STATE"
# The journal's identity copy outside the state directory (controller/identity.py): wiping
# /var/lib/entry-buzzer must not look like a first boot. The unit makes only this folder of
# /etc writable to the service (ReadWritePaths=).
ensure_dir "$ROOT$ETC/identity" 0755
ensure_owner "$USER_NAME:$USER_NAME" "$ROOT$ETC/identity"

# The intercom's media engine is the "intercom" extra (--with-intercom, the default).
PIP_TARGET="$SRC" EXTRAS=""
if [ "$INTERCOM" = 1 ]; then PIP_TARGET="$SRC[intercom]" EXTRAS="+intercom"; fi
step "program: venv with system site packages (picamera2, lgpio from apt) in $VENV"
if [ "$INTERCOM" = 1 ]; then say "    with the intercom's media engine (extra \"intercom\": aiortc, PyAV, numpy)"
else say "    without the intercom's media engine (--without-intercom): live views answer 503"; fi
if [ "$NO_VENV" = 1 ]; then
  say "    [skipped: --no-venv] python3 -m venv --system-site-packages $VENV; pip install $PIP_TARGET"
else
  if [ -x "$ROOT$VENV/bin/python" ]; then ok "venv exists"; else
    run python3 -m venv --system-site-packages "$ROOT$VENV"
  fi
  # the extra is part of the fingerprint: adding the intercom later reinstalls
  want="$(source_hash)$EXTRAS"
  have="$(cat "$ROOT$PREFIX/.source-hash" 2>/dev/null || true)"
  if [ "$want" = "$have" ] && [ -x "$ROOT$VENV/bin/entry-buzzer" ]; then ok "entry-buzzer up to date"; else
    run "$ROOT$VENV/bin/python" -m pip install --quiet --upgrade "${PIP_OFFLINE[@]}" "$PIP_TARGET"
    if [ "$DRY" = 0 ]; then echo "$want" >"$ROOT$PREFIX/.source-hash"; fi
  fi
fi

step "documentation and helpers in $SHARE and $BIN"
write_file "$ROOT$SHARE/hardware.md" 0644 hardware.md <"$SRC/hardware.md"
write_file "$ROOT$SHARE/config.example.toml" 0644 deploy/config.example.toml <"$SRC/deploy/config.example.toml"
write_file "$ROOT$BIN/selftest" 0755 deploy/selftest.sh <"$SRC/deploy/selftest.sh"
if [ -L "$ROOT$LINK" ] && [ "$(readlink "$ROOT$LINK")" = "$VENV/bin/entry-buzzer" ]; then ok "$LINK"
elif [ -e "$ROOT$LINK" ] && [ ! -L "$ROOT$LINK" ]; then say "    warning: $LINK exists and is not a link: left alone"
else
  [ -d "$ROOT$(dirname "$LINK")" ] || run install -d -m 0755 "$ROOT$(dirname "$LINK")"
  run ln -sfn "$VENV/bin/entry-buzzer" "$ROOT$LINK"
fi

step "config $CONFIG (from deploy/config.example.toml; an existing config is never overwritten)"
if [ -e "$ROOT$CONFIG" ]; then ok "kept existing $CONFIG"; else
  sed_args=()
  [ -n "$CAMPUS" ] && sed_args+=(-e "s/^campus = \"[^\"]*\"/campus = \"$CAMPUS\"/")
  [ -n "$DOOR" ] && sed_args+=(-e "s/^door = \"[^\"]*\"/door = \"$DOOR\"/")
  write_file "$ROOT$CONFIG" 0640 deploy/config.example.toml < <(sed "${sed_args[@]:-s/^//}" "$SRC/deploy/config.example.toml")
fi
ensure_owner "root:$USER_NAME" "$ROOT$CONFIG"

step "secrets in $CRED (root only; systemd hands them to the service as credentials)"
if [ -s "$ROOT$CRED/web-secret-key" ]; then ok "web secret key exists"; else
  if [ "$DRY" = 1 ]; then run "openssl rand -hex 32 > $ROOT$CRED/web-secret-key (mode 0600)"; else
    CHANGES=$((CHANGES + 1)); echo "    + openssl rand -hex 32 > $ROOT$CRED/web-secret-key (mode 0600)"
    (umask 077; openssl rand -hex 32 >"$ROOT$CRED/web-secret-key")
  fi
fi
if [ -e "$ROOT$CRED/mqtt-password" ]; then ok "mqtt-password exists"; else
  run install -m 0600 /dev/null "$ROOT$CRED/mqtt-password"
  say "    (empty until MQTT is set up: write the district's password there, see config.toml [mqtt])"
fi

step "self-signed certificate for the panel (HTTPS)"
if [ -s "$ROOT$CRED/web-tls.crt" ] && [ -s "$ROOT$CRED/web-tls.key" ]; then ok "certificate exists"; else
  host="$(hostname 2>/dev/null || echo entry-buzzer)"
  old_umask="$(umask)"; umask 077     # the key is never readable by anyone else, not even briefly
  run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$ROOT$CRED/web-tls.key"
  run openssl req -x509 -key "$ROOT$CRED/web-tls.key" -days 3650 -sha256 -subj "/CN=$host" \
    -addext "subjectAltName=DNS:$host,DNS:$host.local,DNS:localhost,IP:127.0.0.1" -out "$ROOT$CRED/web-tls.crt"
  umask "$old_umask"
  if [ "$DRY" = 0 ]; then chmod 0600 "$ROOT$CRED/web-tls.key" "$ROOT$CRED/web-tls.crt"; fi
fi

step "check the config"
if [ "$DRY" = 1 ]; then
  say "    [dry-run] CREDENTIALS_DIRECTORY=$CRED $EB_BIN check-config $CONFIG"
elif [ -x "$EB_BIN" ]; then
  CREDENTIALS_DIRECTORY="$ROOT$CRED" "$EB_BIN" check-config "$ROOT$CONFIG" | sed 's/^/    /'
else
  say "    [skipped: $EB_BIN not installed] entry-buzzer check-config $CONFIG"
fi

step "systemd units"
units_changed=0
for unit in "${UNITS[@]}"; do
  before="$CHANGES"
  write_file "$ROOT$UNIT_DIR/$unit" 0644 "systemd/$unit" <"$SRC/systemd/$unit"
  [ "$CHANGES" != "$before" ] && units_changed=1
done
if [ "$units_changed" = 1 ]; then system systemctl daemon-reload; fi

step "first admin account"
# Run as root: the command reads the config and the root-only credentials, then works on the
# panel database as the owner of the state directory (the service user).
add_admin_cmd="entry-buzzer user add NAME --role admin"
state_dir_in_root() {  # --root: only when the config's state_dir is inside the root
  local dir
  dir="$(ENTRY_BUZZER_CREDENTIALS_DIR="$ROOT$CRED" "$EB_BIN" check-config "$ROOT$CONFIG" 2>/dev/null \
    | sed -n 's/^storage: \(.*\) (snapshots.*/\1/p')"
  case "$dir" in "$ROOT"/*) return 0 ;; *) return 1 ;; esac
}
if [ -e "$ROOT$STATE/.first-admin" ]; then
  ok "first admin already created ($(cat "$ROOT$STATE/.first-admin"))"
elif [ "$DRY" = 1 ]; then
  say "    [dry-run] sudo $add_admin_cmd"
elif [ ! -x "$EB_BIN" ] || ! "$EB_BIN" user add --help >/dev/null 2>&1; then
  say "    this version of entry-buzzer has no 'user add' command yet; when it has, run:"
  say "      sudo $add_admin_cmd"
elif [ -z "$ADMIN" ]; then
  say "    no --admin NAME given; create the first admin with:"
  say "      sudo $add_admin_cmd"
elif [ -n "$ROOT" ] && ! state_dir_in_root; then
  say "    [skipped: --root] the config's state_dir is outside $ROOT; later run: sudo $add_admin_cmd"
else
  pw_args=()
  [ -n "$ADMIN_PASSWORD_FILE" ] && pw_args=(--password-file "$ADMIN_PASSWORD_FILE")
  run env -u CREDENTIALS_DIRECTORY ENTRY_BUZZER_CREDENTIALS_DIR="$ROOT$CRED" "$EB_BIN" user add "$ADMIN" \
    --config "$ROOT$CONFIG" --role admin "${pw_args[@]}"
  echo "$ADMIN" >"$ROOT$STATE/.first-admin"
  chown --reference="$ROOT$STATE" "$ROOT$STATE/.first-admin"
fi

setup_nginx_front

step "enable and start the service"
if [ -n "$ROOT" ]; then
  system systemctl enable --now "${UNITS[@]}"
elif [ "$DRY" = 0 ] && systemctl is-enabled --quiet entry-buzzer.service 2>/dev/null \
     && systemctl is-enabled --quiet entry-buzzer-relock.service 2>/dev/null \
     && { [ "$START" = 0 ] || systemctl is-active --quiet entry-buzzer.service; } && [ "$CHANGES" = 0 ]; then
  ok "enabled and running"
else
  was_active=0
  systemctl is-active --quiet entry-buzzer.service 2>/dev/null && was_active=1
  if [ "$START" = 1 ]; then run systemctl enable --now "${UNITS[@]}"; else run systemctl enable "${UNITS[@]}"; fi
  # an upgrade (new program, unit or config) needs a restart of a service that was already running
  if [ "$was_active" = 1 ]; then run systemctl try-restart entry-buzzer.service; fi
fi

say ""
if [ "$DRY" = 1 ]; then say "dry run: done, $CHANGES changes would be made"; else say "install: done, $CHANGES changes"; fi
if [ "$CHANGES" -gt 0 ] && [ "$DRY" = 0 ] && [ -z "$ROOT" ]; then
  say "next: edit $CONFIG (site names, pins), then: sudo systemctl restart entry-buzzer"
  say "      check the door with: sudo $BIN/selftest"
fi

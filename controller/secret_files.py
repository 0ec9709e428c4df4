"""Where secret files are, and whether they are safe to use.

Why so strict: the config names files the controller will read and send away (an MQTT
password goes to the broker, a TLS key signs the panel's HTTPS). A config that points
``password_file`` at ``/etc/shadow`` or ``/proc/self/environ``, or a private key that
every local user can read, must be an error naming the key, not ``config OK``.

Rules, for private files (passwords, secret keys, TLS private keys):
- a regular file, reached without any symbolic link, not under /proc, /sys or /dev;
- owned by root or by the user running the controller (the service user);
- no access for group or others (mode 0600 or 0400; with a POSIX ACL, as systemd puts on
  credentials it hands to a service, only root and the service user may be named).
Public files (certificates, CA bundles) may be links and mode 0644, but must be regular
files owned by root or the service user and not writable by group or others.

``credential:NAME`` means systemd's ``$CREDENTIALS_DIRECTORY/NAME``; outside systemd (an
admin running ``sudo entry-buzzer user ...``) the installed credentials directory,
/etc/entry-buzzer/credentials, or ``$ENTRY_BUZZER_CREDENTIALS_DIR`` when set.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from pathlib import Path

INSTALLED_CREDENTIALS = "/etc/entry-buzzer/credentials"
CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
PSEUDO_FILESYSTEMS = ("/proc", "/sys", "/dev")

# POSIX ACL xattr (system.posix_acl_access): version 2 header, then (tag u16, perm u16, id u32)
_ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_OTHER = 0x02, 0x04, 0x08, 0x20


def credentials_dir() -> Path:
    """systemd's $CREDENTIALS_DIRECTORY, else $ENTRY_BUZZER_CREDENTIALS_DIR, else the installed one."""
    return Path(os.environ.get("CREDENTIALS_DIRECTORY")
                or os.environ.get("ENTRY_BUZZER_CREDENTIALS_DIR") or INSTALLED_CREDENTIALS)


def secret_path(value: str) -> Path:
    """Resolve 'credential:NAME' to the credentials directory, else a plain path."""
    if value.startswith("credential:"):
        return credentials_dir() / value.split(":", 1)[1]
    return Path(value)


def _acl_problem(path: Path, owner_ok: set[int]) -> str | None:
    """With a POSIX ACL, the mode's group bits are the mask: judge the ACL entries instead."""
    try:
        raw = os.getxattr(path, "system.posix_acl_access", follow_symlinks=False)
    except OSError:
        return None
    if len(raw) < 4 or (len(raw) - 4) % 8:
        return "has an unreadable ACL"
    for offset in range(4, len(raw), 8):
        tag, perm, ident = struct.unpack_from("<HHI", raw, offset)
        if tag == _ACL_USER and perm and ident not in owner_ok:
            return f"has an ACL giving uid {ident} access"
        if tag in (_ACL_GROUP_OBJ, _ACL_GROUP, _ACL_OTHER) and perm:
            return "has an ACL giving a group or others access"
    return ""      # an ACL, and it is fine


def check(key: str, value: str, private: bool) -> str | None:
    """The reason ``value`` (the setting ``key``) is not a safe file, or None when it is."""
    if value.startswith("credential:"):
        name = value.split(":", 1)[1]
        if not CREDENTIAL_NAME.match(name):
            return f"{key}: credential name {name!r} must be a plain file name"
    path = secret_path(value)
    shown = f"{value!r}" + (f" ({path})" if value.startswith("credential:") else "")
    try:
        st = os.lstat(path) if private else os.stat(path)
    except PermissionError:
        return f"{key}: {shown} cannot be checked (permission denied; run as root or the service user)"
    except OSError:
        where = (f"; credentials are read from {credentials_dir()} ($CREDENTIALS_DIRECTORY under systemd)"
                 if value.startswith("credential:") else "")
        return f"{key}: {shown} does not exist or is not a file{where}"
    if private and stat.S_ISLNK(st.st_mode):
        return f"{key}: {shown} is a symbolic link; a secret must be a regular file (copy it, do not link it)"
    real = os.path.realpath(path)
    if private and real != os.path.abspath(path):
        return f"{key}: {shown} is reached through a symbolic link ({real}); use the real path"
    if not stat.S_ISREG(st.st_mode) or any(real == d or real.startswith(d + "/") for d in PSEUDO_FILESYSTEMS):
        return f"{key}: {shown} is not a regular file"
    owners = {0, os.geteuid()}
    if st.st_uid not in owners:
        return f"{key}: {shown} is owned by uid {st.st_uid}; it must be owned by root or the service user"
    if private:
        acl = _acl_problem(path, owners)
        if acl:
            return f"{key}: {shown} {acl}; a secret is for root and the service user only"
        if acl is None and st.st_mode & 0o077:
            return (f"{key}: {shown} is accessible by group or others (mode {st.st_mode & 0o777:04o}); "
                    "chmod 600 it")
    elif st.st_mode & 0o022:
        return f"{key}: {shown} is writable by group or others (mode {st.st_mode & 0o777:04o}); chmod 644 it"
    return None

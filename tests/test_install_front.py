"""deploy/install.sh sets up the nginx front (issue 10): the shipped site rendered with the
installer's credentials and socket, enabled, Debian's default site disabled, removed again on
uninstall; a config that still serves the panel itself gets no site (its port would clash)."""

from __future__ import annotations

from pathlib import Path

from tests.support_front import render_site
from tests.test_install import changes, install

SITE = "etc/nginx/sites-available/entry-buzzer"
ENABLED = "etc/nginx/sites-enabled/entry-buzzer"


def test_install_renders_and_enables_the_shipped_site(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/nginx/sites-enabled").mkdir(parents=True)
    (root / "etc/nginx/sites-enabled/default").symlink_to("/etc/nginx/sites-available/default")
    out = install("--root", str(root), "--no-venv").stdout
    assert "==> nginx front for the panel (HTTPS on port 8443)" in out
    assert (root / SITE).read_text() == render_site(
        8443, "/run/entry-buzzer/panel.sock", "/etc/entry-buzzer/credentials/web-tls.crt",
        "/etc/entry-buzzer/credentials/web-tls.key")
    assert (root / ENABLED).is_symlink() and str((root / ENABLED).readlink()) == "/" + SITE
    assert not (root / "etc/nginx/sites-enabled/default").is_symlink()      # Debian's welcome page: off
    assert "usermod --append --groups entry-buzzer www-data" in out         # nginx reaches the socket
    assert "nginx -t" in out and "systemctl reload-or-restart nginx" in out
    assert changes(install("--root", str(root), "--no-venv").stdout) == 0

    out = install("--uninstall", "--root", str(root)).stdout
    assert not (root / SITE).exists() and not (root / ENABLED).is_symlink()
    assert changes(install("--uninstall", "--root", str(root)).stdout) == 0


def test_a_config_that_serves_the_panel_itself_gets_no_site(tmp_path: Path) -> None:
    """An upgrade keeps an old config (never overwritten): with web.listen = "tcp" the controller
    still binds 8443 itself, so the installer says what to change instead of clashing."""
    root = tmp_path / "root"
    root.mkdir()
    install("--root", str(root), "--no-venv")
    config = root / "etc/entry-buzzer/config.toml"
    config.write_text(config.read_text().replace('listen = "unix"', 'listen = "tcp"'))
    (root / SITE).unlink()
    (root / ENABLED).unlink()
    out = install("--root", str(root), "--no-venv").stdout
    assert 'has no [web] listen = "unix"' in out
    assert not (root / SITE).exists()

"""Plain HTTP on the network is refused (issue 10, finding 7): ``check-config`` and ``run``
refuse a panel that would serve passwords and session cookies in clear text on a non-loopback
address, unless ``web.allow_plain_http = true``, which is then warned about at every start.
Behind nginx (``web.listen = "unix"``) nginx terminates TLS, so the socket is fine."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from controller import config as cfg
from entry_buzzer import cli
from tests.support_web import TEST_CONFIG


def write(tmp_path: Path, web: str) -> str:
    path = tmp_path / "door.toml"
    path.write_text(f"[storage]\nstate_dir = \"{tmp_path / 'state'}\"\n\n[web]\n{web}\n")
    return str(path)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.20.0.15", "door.school.lan"])
def test_check_config_and_run_refuse_plain_http_on_the_network(tmp_path, capsys, host) -> None:
    path = write(tmp_path, f'host = "{host}"\nport = 8080')
    assert cli.main(["check-config", path]) == 2
    err = capsys.readouterr().err
    assert "web.host" in err and "plain HTTP" in err and "allow_plain_http" in err
    assert cli.main(["run", "--config", path]) == 2           # refused before anything starts
    assert "plain HTTP" in capsys.readouterr().err


def test_allow_plain_http_is_accepted_with_a_warning(tmp_path, capsys) -> None:
    path = write(tmp_path, 'host = "0.0.0.0"\nport = 8080\nallow_plain_http = true')
    assert cli.main(["check-config", path]) == 0
    out = capsys.readouterr()
    assert "config OK" in out.out and "warning: the panel serves PLAIN HTTP on 0.0.0.0:8080" in out.err
    assert "web: on http://0.0.0.0:8080" in out.out


@pytest.mark.parametrize("web", ['host = "127.0.0.1"', 'host = "::1"', 'host = "localhost"',
                                 'listen = "unix"\nhost = "0.0.0.0"'])
def test_loopback_and_the_nginx_socket_are_fine(tmp_path, capsys, web) -> None:
    assert cli.main(["check-config", write(tmp_path, web)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_the_socket_behind_nginx_does_not_take_tls_files(tmp_path, capsys) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    path = write(tmp_path, f'listen = "unix"\ntls_cert_file = "{cert}"\ntls_key_file = "{cert}"')
    assert cli.main(["check-config", path]) == 2
    assert "nginx terminates TLS" in capsys.readouterr().err


def test_socket_path_is_checked(tmp_path, capsys) -> None:
    assert cli.main(["check-config", write(tmp_path, 'listen = "unix"\nsocket_path = "run/panel.sock"')]) == 2
    assert "web.socket_path" in capsys.readouterr().err
    assert cli.main(["check-config", write(tmp_path, 'listen = "udp"')]) == 2
    assert "web.listen" in capsys.readouterr().err


def test_every_start_with_allow_plain_http_logs_a_warning(controller, caplog) -> None:
    from web.server import WebServer
    settings = cfg.with_overrides(controller.settings, web={"enabled": True, "host": "0.0.0.0", "port": 0,
                                                           "allow_plain_http": True})
    caplog.set_level(logging.WARNING, logger="web.server")
    for _ in range(2):
        server = WebServer(controller, settings, test_config=TEST_CONFIG)
        server.start()
        server.stop()
    warnings = [r for r in caplog.records if "PLAIN HTTP" in r.getMessage()]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)


def test_loopback_start_logs_no_plain_http_warning(controller, caplog) -> None:
    from web.server import WebServer
    caplog.set_level(logging.WARNING, logger="web.server")
    server = WebServer(controller, test_config=TEST_CONFIG, host="127.0.0.1", port=0)
    server.start()
    server.stop()
    assert not [r for r in caplog.records if "PLAIN HTTP" in r.getMessage()]

"""The shipped unit file passes `systemd-analyze verify` and carries the hardening."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "aigw.service"


def _settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_has_the_production_settings():
    s = _settings()
    assert s["Type"] == ["notify"] and s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["DynamicUser"] == ["yes"] and s["ProtectSystem"] == ["strict"]
    for key in ("ProtectHome", "PrivateTmp", "NoNewPrivileges"):
        assert s[key] == ["yes"], key
    assert s["CapabilityBoundingSet"] == [""] and s["StateDirectory"] == ["aigw"]
    assert int(s["LimitNOFILE"][0]) >= 65536 and s["EnvironmentFile"]
    assert int(s["TimeoutStopSec"][0]) > 30  # longer than the default shutdown_timeout
    assert "--workers auto" in s["ExecStart"][0]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_verifies(tmp_path):
    # verify checks that ExecStart's binary exists; point it at this interpreter.
    unit = tmp_path / "aigw.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/aigw", f"{sys.executable} -m aigw"))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "aigw.service" not in r.stderr, r.stderr  # no warnings about the unit itself

"""Runs a test script on four forced CPU devices: the device count is fixed when JAX starts."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys


def run_on_four_cpu_devices(script: str) -> None:
    """Runs ``script`` in a fresh Python with four host devices; it must print "OK" last."""
    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")

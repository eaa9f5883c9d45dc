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


def run_as_processes(script: str, args: list[str], num_processes: int = 2) -> list[str]:
    """Runs ``script`` as ``num_processes`` processes of one ``jax.distributed`` job on this
    machine (CPU, gloo collectives); each gets ``sys.argv[1:] = [process_id, coordinator,
    *args]``. Returns their outputs; every one must exit 0."""
    import socket

    root = pathlib.Path(__file__).resolve().parents[1]
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(i), f"localhost:{port}", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(num_processes)
    ]
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
            outputs.append(out)
    finally:
        for proc in procs:
            proc.kill()
    return outputs

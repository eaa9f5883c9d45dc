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
    import tempfile
    import time

    root = pathlib.Path(__file__).resolve().parents[1]
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory() as logs:
        # Output goes to files, not pipes: a process blocked on a full pipe while another waits
        # for it at a barrier would stall the job.
        paths = [(pathlib.Path(logs) / f"{i}.out", pathlib.Path(logs) / f"{i}.err")
                 for i in range(num_processes)]  # fmt: skip
        procs = []
        try:
            for i, (out, err) in enumerate(paths):
                with out.open("w") as stdout, err.open("w") as stderr:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-c", script, str(i), f"localhost:{port}", *args],
                        env=env, stdout=stdout, stderr=stderr, text=True,
                    ))  # fmt: skip
            # The first process to fail is reported at once (the others may be waiting for it
            # at a barrier).
            deadline = time.monotonic() + 300
            while any(proc.poll() is None for proc in procs):
                for proc, (_, err) in zip(procs, paths, strict=True):
                    assert proc.poll() in (None, 0), err.read_text()[-3000:]
                assert time.monotonic() < deadline, "the processes did not finish in 300 s"
                time.sleep(0.2)
            for proc, (_, err) in zip(procs, paths, strict=True):
                assert proc.returncode == 0, err.read_text()[-3000:]
        finally:
            for proc in procs:
                proc.kill()
        return [out.read_text() for out, _ in paths]

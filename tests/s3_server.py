"""A real S3-compatible server on 127.0.0.1 (moto's, from PyPI) for the checkpoint-storage tests.

It runs in a process of its own: moto's server is a Flask app, and Flask's module-level request proxies, once
imported into the test process, break vLLM's kernel registration (it probes every loaded module's attributes),
so a vLLM engine started after an in-process moto server failed at setup.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with {proc.returncode} before listening on port {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"moto server not listening on 127.0.0.1:{port} after {timeout_s:.0f} s")


@contextlib.contextmanager
def s3_server():
    """Yield a function bucket_prefix -> s3:// URI of the running server (AWS test credentials in os.environ)."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    try:
        _wait_listening(port, proc)
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        yield lambda path: (f"s3://{path}?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
                            "&allow_bucket_creation=true")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

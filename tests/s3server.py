"""A throw-away S3 endpoint for tests: moto's standalone server on a free 127.0.0.1 port.

Use `moto_server()` as a context manager, or the session fixture `s3_endpoint`: importing
`s3_endpoint_fixture` into a conftest.py or test module (`from tests.s3server import s3_endpoint_fixture`)
registers it under that name. `reset(url)` empties the server between tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import IO

import pytest

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    """True once the server replies to an HTTP request (any status counts as an answer)."""
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@contextlib.contextmanager
def moto_server(auth: bool = False, timeout_s: float = 30.0) -> Iterator[str]:
    """Start `python -m moto.server` as a subprocess, yield its endpoint URL, stop it afterwards.

    moto accepts any credentials; with `auth` it checks them against its own IAM, which knows no keys,
    so every request is refused with InvalidAccessKeyId (403).
    """
    port = free_port()
    url = f"http://{HOST}:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "INITIAL_NO_AUTH"))}
    if auth:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            _wait_until_ready(url, proc, log, timeout_s)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_ready(url: str, proc: subprocess.Popen[bytes], log: IO[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not _answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            output = log.read().decode(errors="replace")
            raise RuntimeError(f"moto server on {url} did not start (exit {proc.poll()}):\n{output}")
        time.sleep(0.1)


def reset(url: str) -> None:
    """Delete every bucket and object on the moto server at `url`."""
    req = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=10):
        pass


@pytest.fixture(scope="session", name="s3_endpoint")
def s3_endpoint_fixture() -> Iterator[str]:
    """The URL of one moto S3 server shared by the whole test session."""
    with moto_server() as url:
        yield url

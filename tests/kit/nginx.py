"""Debian's nginx as a plain static file server, run as the current user (no root, no
system service): a generated config on a free port, pid, logs and temp files in a temp
dir. ``make nginx`` installs it.

Example::

    with static_server(folder) as url:
        httpx.get(url + "/v1/trust-list")
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from kit.net import free_port

__all__ = ["NGINX", "static_server"]

NGINX = Path("/usr/sbin/nginx")

_CONFIG = """
{user}
daemon off;
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {run}/access.log;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    default_type application/octet-stream;
    types {{ application/json json; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        etag on;
        location / {{ try_files $uri =404; }}
    }}
}}
"""


@contextmanager
def static_server(root: Path) -> Iterator[str]:
    """nginx serving ``root`` at the yielded base URL until the block ends."""
    assert NGINX.exists(), "nginx is required (make nginx installs Debian's nginx-light)"
    with tempfile.TemporaryDirectory(prefix="fmc-nginx-") as run:
        port = free_port()
        config = Path(run) / "nginx.conf"
        # As root, nginx would hand its workers to "nobody", who cannot read a test's
        # private temp dir: keep them as the user running the tests.
        user = "" if os.geteuid() != 0 else \
            f"user {pwd.getpwuid(0).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
        config.write_text(_CONFIG.format(run=run, port=port, root=root.resolve(), user=user))
        process = subprocess.Popen([str(NGINX), "-p", run, "-c", str(config)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                try:
                    httpx.get(url + "/", timeout=1)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "nginx did not start"
                    time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

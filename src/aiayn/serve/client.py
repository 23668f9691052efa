"""Scripting a server: start `aiayn serve` on a free loopback port and call its API (the
tests and benchmarks/serve_load.py do; so may a user's own scripts)."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

READY = re.compile(r"serving the \w+ model of .* at (http://\S+)/")


class Client:
    """One keep-alive connection to a server; `call` sends JSON, returns (status, JSON)."""

    def __init__(self, url: str, timeout: float = 120) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def call(self, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        """GET `path`, or POST `body` as JSON (or `raw` bytes as they are)."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        method = "GET" if data is None else "POST"
        self.conn.request(method, path, data, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        payload = response.read()
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()  # the next call opens a new connection
        return response.status, json.loads(payload) if payload else None

    def events(self, path: str, body: Any) -> Iterator[tuple[str, Any]]:
        """POST `body`, then each server-sent event as (event name, its JSON data)."""
        self.conn.request("POST", path, json.dumps(body).encode())
        response = self.conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {response.read()!r}")
        name = "token"
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                yield name, json.loads(line[6:])
                name = "token"

    def close(self) -> None:
        self.conn.close()


class Server:
    """`aiayn serve --model DIR` in a child process, on a free port of 127.0.0.1; a context
    manager that stops it (SIGTERM) on leaving."""

    def __init__(self, model_dir: str | Path, *args: str, ready_s: float = 120) -> None:
        command = [sys.executable, "-m", "aiayn", "serve", "--model", str(model_dir)]
        self.process = subprocess.Popen(
            [*command, "--port", "0", *args], stderr=subprocess.PIPE, text=True
        )
        self.log: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self._ready.wait(ready_s) or self.url is None:
            self.process.kill()
            raise RuntimeError("the server did not start:\n" + "".join(self.log))

    def _read_log(self) -> None:
        for line in self.process.stderr:
            self.log.append(line)
            if self.url is None and (found := READY.search(line)):
                self.url = found.group(1)
                self._ready.set()
        self._ready.set()  # it ended

    def client(self) -> Client:
        return Client(self.url)

    def call(self, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        client = self.client()
        try:
            return client.call(path, body, raw)
        finally:
            client.close()

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM, then the exit code once it has stopped."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

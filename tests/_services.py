"""Throwaway PostgreSQL, Redis and Mosquitto servers on free ports, for tests that stop and restart them.

They run the machine's own binaries (the ones ``scripts/ensure_test_env.sh`` installs) in a temp
folder; the machine's services on the standard ports are never touched.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, up: bool = True, timeout: float = 20.0) -> None:
    """Wait until 127.0.0.1:port accepts (``up``) or refuses connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} still {'closed' if up else 'open'} after {timeout} s")


def _as(user: str | None, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if user else argv


class _Server:
    """A server process of the test's own on ``self.port``."""

    port: int
    proc: subprocess.Popen | None = None

    def _spawn(self, argv: list[str]):
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        """Stop gracefully (SIGTERM: a broker saves its persistence file) and wait for the port to close."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        wait_port(self.port, up=False)


class Mosquitto(_Server):
    """A Mosquitto broker with persistence: stop() keeps sessions and queued QoS 1 messages.

    Its folder is a fresh one under /tmp (as root, owned by ``mosquitto``, the user the broker
    switches to: pytest's temp folders are closed to other users). ``cleanup()`` removes it.
    """

    def __init__(self):
        import tempfile

        self.folder = Path(tempfile.mkdtemp(prefix="panorama-mqtt-"))
        self.port = free_port()
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.folder}/\nmax_queued_messages 0\nmax_inflight_messages 100\n"
            "autosave_interval 1\nlog_dest none\n")
        if os.geteuid() == 0:
            shutil.chown(self.folder, "mosquitto") if _has_user("mosquitto") else None

    def start(self) -> "Mosquitto":
        return self._spawn(["mosquitto", "-c", str(self.conf)])

    def cleanup(self) -> None:
        """Stop the broker if it runs, and remove its files."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class Redis(_Server):
    """A Redis server that keeps nothing on disk; with ``password`` (``--requirepass``) and ``tls`` if asked.

    With ``tls`` it listens for TLS only, with a self-signed certificate for 127.0.0.1 made in
    ``folder`` (the URL names it as the CA to trust).
    """

    def __init__(self, folder: Path, password: str | None = None, tls: bool = False):
        self.folder = Path(folder)
        self.port = free_port()
        self.password = password
        self.tls = tls

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.folder / 'cert.pem'}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> "Redis":
        argv = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        if self.password:
            argv += ["--requirepass", self.password]
        if self.tls:
            cert, key = self.folder / "cert.pem", self.folder / "key.pem"
            if not cert.exists():
                subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                                "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                                "-addext", "subjectAltName=IP:127.0.0.1"],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                     "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
        else:
            argv += ["--port", str(self.port)]
        return self._spawn(argv)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


class Postgres:
    """A PostgreSQL cluster of its own, trust auth, on a free port; ``cleanup()`` removes it.

    Its folder is a fresh one under /tmp (as root, owned by ``postgres``: initdb refuses root, and
    pytest's own temp folders are closed to other users).
    """

    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise RuntimeError("PostgreSQL server binaries not found (run scripts/ensure_test_env.sh)")
        self.bin = Path(bins[-1]).parent
        import tempfile

        self.folder = Path(tempfile.mkdtemp(prefix="panorama-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None  # initdb refuses to run as root
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.user:
            shutil.chown(self.folder, self.user)
        subprocess.run(_as(self.user, [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                                       "--auth=trust", "-E", "UTF8", "--no-sync"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(_as(self.user, [str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30", *args]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> "Postgres":
        self._ctl("-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                        "-c shared_buffers=32MB", "-l", str(self.folder / "log"), "start")
        wait_port(self.port)
        return self

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")
        wait_port(self.port, up=False)

    def cleanup(self) -> None:
        """Stop the server if it runs, and remove its files."""
        try:
            self._ctl("-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.folder, ignore_errors=True)

"""What the Python checks share (tests/zeep/check.py, tests/browser/e2e.py): the spec's 3DES and
Authenticator (2.4, 2.5) with pycryptodome, a results counter that prints `ok`/`FAILED` lines, and
a `vnetd run` on free ports with a temporary config and database.

Importing this module needs pycryptodome; the scripts report a missing package themselves.
"""

import base64
import datetime
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import time
import traceback

from Crypto.Cipher import DES3
from Crypto.Util.Padding import pad, unpad

IV_HEX = "0102030405060708"
NODE_TZ = datetime.timezone(datetime.timedelta(hours=8))  # [node] timezone default "+08:00"


# ---------------------------------------------------------------- crypto (spec 2.4, 2.5)

def tdes_b64(key_hex: str, data: bytes, iv_hex: str = IV_HEX) -> str:
    """Base64(DES-EDE3-CBC(PKCS#7(data)))."""
    c = DES3.new(bytes.fromhex(key_hex), DES3.MODE_CBC, iv=bytes.fromhex(iv_hex))
    return base64.b64encode(c.encrypt(pad(data, 8))).decode("ascii")


def tdes_open(key_hex: str, b64: str, iv_hex: str = IV_HEX) -> str:
    """The UTF-8 plaintext of Base64(DES-EDE3-CBC(PKCS#7(…)))."""
    c = DES3.new(bytes.fromhex(key_hex), DES3.MODE_CBC, iv=bytes.fromhex(iv_hex))
    return unpad(c.decrypt(base64.b64decode(b64, validate=True)), 8).decode("utf-8")


def enc(key_hex: str, plaintext: str) -> str:
    """An `enc` field: Base64(3DES(UTF-8 plaintext))."""
    return tdes_b64(key_hex, plaintext.encode("utf-8"))


def authenticator(key_hex: str, values) -> str:
    """Base64(3DES(SHA1(values concatenated without separators)))."""
    return tdes_b64(key_hex, hashlib.sha1("".join(values).encode("utf-8")).digest())


def new_key() -> str:
    """A random 3DES key (48 hex digits) that does not degenerate to single DES."""
    while True:
        k = secrets.token_hex(24)
        try:
            DES3.adjust_key_parity(bytes.fromhex(k))
            return k
        except ValueError:
            continue


def node_now() -> str:
    """Node time, `yyyy-MM-dd HH:mm:ss` in UTC+08:00."""
    return datetime.datetime.now(NODE_TZ).strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------- results

class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, name):
        self.passed += 1
        print(f"ok     {name}", flush=True)

    def fail(self, name, why):
        self.failed += 1
        print(f"FAILED {name}: {why}", flush=True)

    def run(self, name, fn, *args):
        """Run one check; an exception or a false assertion is a failure. Returns fn's value
        (True when it returns None), or None on failure."""
        try:
            value = fn(*args)
        except AssertionError as e:
            self.fail(name, e or "assertion failed")
            return None
        except Exception as e:  # noqa: BLE001 - every error is a failed check, with its cause
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            self.fail(name, f"{type(e).__name__}: {msg}")
            if os.environ.get("CHECK_TRACEBACK"):
                traceback.print_exc()
            return None
        self.ok(name)
        return True if value is None else value


# ---------------------------------------------------------------- the daemon

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """`vnetd run` in `workdir` on free ports, small Argon2 parameters; `server_extra` holds more
    `key = value` lines of `[server]`."""

    def __init__(self, binary, workdir, server_extra=""):
        self.bin = binary
        self.dir = workdir
        self.port = free_port()
        self.admin_port = free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()
        self.cfg = os.path.join(workdir, "vnetd.toml")
        self.log_path = os.path.join(workdir, "vnetd.log")
        with open(self.cfg, "w", encoding="utf-8") as f:
            f.write(
                "[server]\n"
                f'listen = "127.0.0.1:{self.port}"\n'
                f'admin_listen = "127.0.0.1:{self.admin_port}"\n'
                f"{server_extra}"
                "[storage]\n"
                f'path = "{os.path.join(workdir, "data", "vnetd.db")}"\n'
                "[security]\n"
                "argon2_m_kib = 64\n"
                "argon2_t = 1\n"
                "[log]\n"
                'target = "stderr"\n'
                'level = "info"\n'
            )
        self.proc = None

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def url(self, service):
        return f"{self.base}/{service}/services/{service}"

    def cli(self, *args, check=True, stdin=None):
        out = subprocess.run([self.bin, "--config", self.cfg, *args], input=stdin,
                             stdin=None if stdin is not None else subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=60)
        if check and out.returncode != 0:
            raise AssertionError(f"vnetd {' '.join(args)} exited {out.returncode}: {out.stderr.strip()}")
        return out

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.bin, "--config", self.cfg, "run"], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log)
        log.close()

    def wait_healthy(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"vnetd exited early with status {self.proc.returncode}")
            if self.cli("healthcheck", check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"vnetd not healthy after {timeout:.0f} s")
            time.sleep(0.1)

    def stop(self):
        """SIGTERM, then SIGKILL after 10 s. Returns the exit status (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def log_tail(self, n=40):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

"""A buudien node on PostgreSQL with its message blobs in S3-compatible object storage
(`[store] blobs = "s3"`), against a throwaway moto server.

moto's `moto_server` (BUUDIEN_TEST_MOTO, which test.sh sets after installing it in a
venv when missing, else on PATH) runs on a free loopback port; a missing binary fails
the tests, never skips them. PostgreSQL is started as in test_cluster.py.

The tests check that mail taken by SMTP is read back whole over IMAP and POP3 while its
bytes live in the bucket (key `<prefix>/<SHA-256 hex>`) and not in `blob_chunks`; that
a message deleted over POP3 has its object removed by the collection a restart runs;
and that with the object store down, SMTP answers 451 (try again later), APPEND NO and
`buudien deliver` exits 75, and no message is half stored.
"""

from __future__ import annotations

import functools
import os
import shutil
import smtplib
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import DOMAIN, TIMEOUT, Server, free_port
from blake3ref import blake3_hex
from imaputil import mail, ok
from pgutil import Postgres

# Its node's store is a PostgreSQL of the module's own (with the bucket beside it):
# with BUUDIEN_E2E_STORE=postgres it would only repeat itself.
pytestmark = pytest.mark.own_postgres(
    reason="its node uses a throwaway PostgreSQL of the module's own and a moto bucket; "
           "it runs in the SQLite-store run")

BUCKET = "buudien-e2e"
PREFIX = "mail/blobs"


@functools.lru_cache(maxsize=8)
def object_name(stored: bytes) -> str:
    """The object a stored message is kept in: the prefix, then its blob id (BLAKE3)."""
    return f"{PREFIX}/{blake3_hex(stored)}"


def moto_binary() -> str:
    path = os.environ.get("BUUDIEN_TEST_MOTO") or shutil.which("moto_server")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("moto_server not found: test.sh installs moto[server] in a venv and "
                    "sets BUUDIEN_TEST_MOTO (or: pip install 'moto[server]')")
    return path


class Moto:
    """moto's S3 server on a loopback port (it takes unsigned requests, so the test
    looks into the bucket with plain HTTP)."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [moto_binary(), "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"moto_server exited: {self.proc.returncode}"
            try:
                self.request("GET", "/")
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start in 60 s"
                time.sleep(0.1)

    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str) -> bytes:
        req = urllib.request.Request(self.endpoint() + path, method=method)
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.read()

    def keys(self) -> list[str]:
        """The object keys in the bucket (one listing page: the test stores few)."""
        xml = self.request("GET", f"/{BUCKET}?list-type=2").decode()
        return [part.split("</Key>")[0] for part in xml.split("<Key>")[1:]]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)


class Node(Server):
    """`buudien serve` on PostgreSQL with blobs in moto's bucket."""

    def __init__(self, binary: Path, root: Path, url: str, moto: Moto):
        super().__init__(binary, root, smtp=True)
        self.url = url
        self.moto = moto
        self.secret = root / "s3.key"
        self.secret.write_text("not-checked-by-moto\n")
        self.secret.chmod(0o600)

    def config_text(self, extra: str = "") -> str:
        store = (
            f'\n[store]\nbackend = "postgres"\nurl = "{self.url}"\npool_size = 4\n'
            f'blobs = "s3"\ns3_endpoint = "{self.moto.endpoint()}"\ns3_allow_http = true\n'
            f's3_bucket = "{BUCKET}"\ns3_prefix = "{PREFIX}"\ns3_access_key = "test"\n'
            f's3_secret_key_file = "{self.secret}"\n'
        )
        return super().config_text(extra + store)


class Setup:
    def __init__(self, node: Node, moto: Moto, pg: Postgres):
        self.node, self.moto, self.pg = node, moto, pg

    def report(self) -> list[tuple[str, str]]:
        return [("buudien serve log (tail)", self.node.log(8000)),
                ("PostgreSQL log (tail)", self.pg.log())]

    def sql(self, query: str) -> str:
        r = subprocess.run(
            [str(self.pg.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.pg.port),
             "-U", "postgres", "-d", "buudien", "-tAc", query],
            capture_output=True, timeout=TIMEOUT,
        )
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        return r.stdout.decode().strip()


@pytest.fixture(scope="module")
def s3(buudien_bin):
    pg = Postgres()
    moto = None
    node = None
    try:
        pg.start()
        moto = Moto()
        moto.request("PUT", f"/{BUCKET}")
        root = Path(tempfile.mkdtemp(prefix="buudien-e2e-s3-"))
        node = Node(buudien_bin, root, pg.url(), moto)
        node.make_cert()
        node.config.write_text(node.config_text())
        node.cli("migrate")
        node.cli("domain", "add", DOMAIN)
        node.start()
        yield Setup(node, moto, pg)
    finally:
        failures = []
        if node is not None and node.proc is not None:
            code = node.stop()
            if code != 0:
                failures.append(f"serve exited {code} after SIGTERM:\n{node.log()}")
            elif os.environ.get("BUUDIEN_E2E_KEEP") != "1":
                shutil.rmtree(node.root, ignore_errors=True)
        if moto is not None:
            moto.stop()
        pg.stop()
        assert not failures, "\n".join(failures)


def send(node: Node, rcpt: str, msg: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", node.smtp_port, local_hostname="client.test",
                      timeout=TIMEOUT) as s:
        assert s.sendmail("someone@elsewhere.test", [rcpt], msg) == {}


def test_mail_lives_in_the_bucket_and_reads_back(s3):
    node = s3.node
    assert f"blobs in bucket {BUCKET}, prefix {PREFIX}" in node.log(), node.log()
    user, pw = node.new_user("s3")
    body = "".join(f"line {i:06d} of a message kept in object storage\r\n"
                   for i in range(50_000))  # 2.4 MB: read back in several ranges
    big = mail("big one", sender="someone@elsewhere.test", to=user, body=body)
    small = mail("small one", sender="someone@elsewhere.test", to=user)
    send(node, user, big)
    send(node, user, small)

    m = node.imap(user, pw)
    assert ok(m.select("INBOX")) == [b"2"]
    stored = []
    for seq, sent in (("1", big), ("2", small)):
        d = m.fetch(seq, "(BODY.PEEK[])")
        assert d[0] == "OK", d
        whole = d[1][0][1]
        # What the server stored: its Received header, then the message as sent.
        assert whole.endswith(sent), f"message {seq} differs"
        stored.append(whole)
    m.logout()

    keys = s3.moto.keys()
    for whole in stored:
        assert object_name(whole) in keys, keys
    assert s3.sql("SELECT count(*) FROM blob_chunks") == "0"

    p = node.pop(user, pw)
    assert p.stat()[0] == 2
    _, lines, _ = p.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == stored[0]
    p.dele(1)
    p.quit()
    # The session's snapshot pin (which keeps its blobs from collection) is released
    # in the background after QUIT: wait for it, or the collection below skips it.
    deadline = time.monotonic() + 10
    while s3.sql("SELECT count(*) FROM snapshots") != "0":
        assert time.monotonic() < deadline, "the POP3 snapshot pin was not released"
        time.sleep(0.05)

    # A restart runs the collection at once: the deleted message's object goes.
    assert node.stop() == 0
    node.start()
    gone = object_name(stored[0])
    deadline = time.monotonic() + 10
    while gone in s3.moto.keys():
        assert time.monotonic() < deadline, f"{gone} still in the bucket:\n{node.log()}"
        time.sleep(0.2)
    assert object_name(stored[1]) in s3.moto.keys()
    assert s3.sql("SELECT count(*) FROM blob_deletions") == "0"
    m = node.imap(user, pw)
    assert ok(m.select("INBOX")) == [b"1"]
    d = m.fetch("1", "(BODY.PEEK[])")
    assert d[0] == "OK" and d[1][0][1] == stored[1], d
    m.logout()


def test_an_outage_is_a_temporary_failure(s3):
    """Last in this module: it stops the object store."""
    node = s3.node
    user, pw = node.new_user("down")
    rows = s3.sql("SELECT count(*) FROM blobs")
    s3.moto.stop()
    msg = mail("while the bucket is away", sender="someone@elsewhere.test", to=user)
    with smtplib.SMTP("127.0.0.1", node.smtp_port, local_hostname="client.test",
                      timeout=60) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail("someone@elsewhere.test", [user], msg)
    assert 400 <= e.value.smtp_code < 500, e.value
    # IMAP APPEND: NO; `buudien deliver`: exit 75 (EX_TEMPFAIL), the MTA keeps it.
    m = node.imap(user, pw)
    typ, data = m.append("INBOX", None, None, mail("appended meanwhile"))
    assert typ == "NO", (typ, data)
    r = node.deliver(user, b"Subject: piped meanwhile\n\nx\n", check=False)
    assert r.returncode == 75, (r.returncode, r.stderr)
    assert s3.sql("SELECT count(*) FROM blobs") == rows, "no row without its object"
    assert ok(m.select("INBOX")) == [b"0"]
    m.logout()

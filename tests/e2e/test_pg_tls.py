"""TLS to PostgreSQL (`sslmode=require` and `sslrootcert` in `[store] url`, as libpq
spells them).

A throwaway PostgreSQL of the module's own with `ssl = on` and a certificate for
127.0.0.1 signed by a CA of the test's. A node whose URL asks for TLS and trusts that certificate
serves mail with every one of its connections encrypted (pg_stat_ssl, the pool's and
the change watch's LISTEN connection alike: an IDLE session is woken). A URL that
trusts another CA, or the system's roots, is refused at start with one line: the
server's certificate is always verified.
"""

from __future__ import annotations

import shutil
import smtplib
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import DOMAIN, TIMEOUT, Server
from imaputil import Idle, mail, ok
from pgutil import Postgres, started

pytestmark = pytest.mark.own_postgres(
    reason="starts a PostgreSQL of its own with ssl = on; it runs in the SQLite-store run")


@pytest.fixture(scope="module")
def pg():
    server = started(tls=True)
    yield server
    server.stop()


def psql(pg: Postgres, sql: str) -> str:
    r = subprocess.run([str(pg.bin / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                        "postgres", "-d", pg.db, "-Atc", sql],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode().strip()


def node(binary: Path, url: str) -> Server:
    root = Path(tempfile.mkdtemp(prefix="buudien-e2e-pgtls-"))
    srv = Server(binary, root, smtp=True, store_url=url)
    srv.make_cert()
    srv.config.write_text(srv.config_text())
    return srv


def other_ca(root: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 that did not sign the server's."""
    cert = root / "other-ca.pem"
    r = subprocess.run(
        ["openssl", "req", "-x509", "-nodes", "-days", "2", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", str(root / "other.key"),
         "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return cert


def test_every_connection_is_encrypted_and_verified(buudien_bin, pg):
    url = f"{pg.url()}?sslmode=require&sslrootcert={pg.ca}"
    srv = node(buudien_bin, url)
    try:
        r = srv.cli("migrate")
        assert b"up to date" in r.stdout, r.stdout
        srv.cli("domain", "add", DOMAIN)
        srv.start()
        user, pw = srv.new_user("tls")
        m = srv.imap(user, pw)
        assert ok(m.select("INBOX")) == [b"0"]
        with Idle(m) as idle:
            with smtplib.SMTP("127.0.0.1", srv.smtp_port, local_hostname="client.test",
                              timeout=TIMEOUT) as s:
                assert s.sendmail("someone@elsewhere.test", [user],
                                  mail("over TLS", sender="someone@elsewhere.test",
                                       to=user)) == {}
            idle.wait_for(rb"^\* 1 EXISTS\r\n$", timeout=5.0)
        d = m.fetch("1", "(BODY.PEEK[])")
        assert d[0] == "OK" and b"Subject: over TLS" in d[1][0][1], d
        m.logout()
        rows = psql(pg, "SELECT s.ssl, count(*) FROM pg_stat_ssl s "
                        "JOIN pg_stat_activity a USING (pid) "
                        "WHERE a.application_name = 'buudien' GROUP BY s.ssl")
        counts = dict(line.split("|") for line in rows.splitlines())
        assert counts.get("f") is None, f"plain connections from buudien: {rows}"
        assert int(counts.get("t", "0")) >= 2, f"pool and LISTEN connections: {rows}"
    finally:
        code = srv.stop() if srv.proc is not None else 0
        shutil.rmtree(srv.root, ignore_errors=True)
    assert code == 0


@pytest.mark.parametrize("trust", ["another CA", "the system's roots"])
def test_an_unverified_server_is_refused(buudien_bin, pg, trust):
    root = Path(tempfile.mkdtemp(prefix="buudien-e2e-pgtls-"))
    try:
        if trust == "another CA":
            url = f"{pg.url()}?sslmode=require&sslrootcert={other_ca(root)}"
        else:
            url = f"{pg.url()}?sslmode=verify-full"
        srv = node(buudien_bin, url)
        r = srv.cli("migrate", check=False)
        err = r.stderr.decode(errors="replace").strip()
        assert r.returncode != 0, (r.returncode, r.stdout, err)
        assert len(err.splitlines()) == 1, err
        assert "certificate" in err.lower() or "tls" in err.lower(), err
        shutil.rmtree(srv.root, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

"""Debian's fetchmail over IMAP against buudien: keep (messages stay, marked \\Seen),
then nokeep (fetchmail flags \\Deleted and expunges), then "no mail"; STARTTLS with a
checked certificate (see test_fetchmail.py for why `sslcommonname localhost`)."""

import os
import re
import subprocess

import pytest

from conftest import TIMEOUT, message, require_client
from imaputil import all_uids, fetch_uid, imap_server, ok  # noqa: F401


def run_fetchmail(srv, tmp_path, user, pw, keep: bool, tls: bool) -> subprocess.CompletedProcess:
    exe = require_client("fetchmail")
    box = tmp_path / "mbox"
    box.touch()
    ssl = (f"sslproto 'tls1.2+' sslcertck sslcertfile '{srv.cert}' sslcommonname 'localhost'"
           if tls else "sslproto ''")
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        f"poll 127.0.0.1 service {srv.imap_port} protocol imap timeout {TIMEOUT}\n"
        f"  user '{user}' there with password '{pw}'\n"
        f"  {'keep' if keep else 'nokeep fetchall'}\n"
        f"  {ssl}\n"
        f"  mda 'cat >> {box}'\n"
    )
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    return subprocess.run([exe, "-v", "--nosyslog", "-f", str(rc),
                           "--pidfile", str(tmp_path / "fetchmail.pid")],
                          capture_output=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def explain(r: subprocess.CompletedProcess) -> str:
    return (f"fetchmail exited {r.returncode}\n"
            f"{r.stdout.decode(errors='replace')}{r.stderr.decode(errors='replace')}"[-6000:])


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "starttls"])
def test_fetchmail_imap_keep_then_nokeep(imap_server, tmp_path, tls):
    tag = "tls" if tls else "plain"
    user, pw = imap_server.new_user("fi")
    for i in (1, 2, 3):
        imap_server.deliver(user, message(f"fetchmail imap {tag} {i}", f".line {i}\nend\n"))

    r = run_fetchmail(imap_server, tmp_path, user, pw, keep=True, tls=tls)
    assert r.returncode == 0, explain(r)
    log = (r.stdout + r.stderr).decode(errors="replace")
    assert bool(re.search(r"IMAP> A\d+ STARTTLS", log)) == tls, explain(r)
    if tls:
        assert re.search(r"SSL/TLS: using protocol TLSv1\.[23]", log), explain(r)
    box = (tmp_path / "mbox").read_text()
    assert re.findall(r"^Subject: (fetchmail imap \S+ \d)$", box, re.M) == [
        f"fetchmail imap {tag} {i}" for i in (1, 2, 3)], box
    m = imap_server.imap(user, pw)
    ok(m.select("INBOX", readonly=True))
    uids = all_uids(m)
    assert len(uids) == 3, "keep: the messages stay on the server"
    assert all(b"\\Seen" in fetch_uid(m, u, "(FLAGS)")["FLAGS"] for u in uids)
    m.logout()

    r = run_fetchmail(imap_server, tmp_path, user, pw, keep=False, tls=tls)
    assert r.returncode == 0, explain(r)
    m = imap_server.imap(user, pw)
    ok(m.select("INBOX", readonly=True))
    assert all_uids(m) == [], "nokeep: fetchmail deleted and expunged them"
    m.logout()

    r = run_fetchmail(imap_server, tmp_path, user, pw, keep=False, tls=tls)
    assert r.returncode == 1, "expected 'no mail' (1):\n" + explain(r)

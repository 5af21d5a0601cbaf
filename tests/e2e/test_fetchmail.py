"""Debian's fetchmail against buudien: download with keep, then with nokeep, then find
the maildrop empty; plain POP3 (STLS switched off) and STLS with a checked certificate.

fetchmail 6.4 tries STLS on its own when the server offers it, and then checks the
certificate: `sslproto ''` turns that off; `sslproto tls1.2+` plus `sslcertck` and
`sslcertfile` (our self-signed certificate) makes it go through TLS for real, with
`sslcommonname localhost` because fetchmail compares the polled name only with the
certificate's DNS names (not its IP address). 6.3 spells the protocol `TLS1`.

fetchmail also sends the obsolete LAST (RFC 1725) and falls back to UIDL on the -ERR.
"""

import os
import re
import subprocess

import pytest

from conftest import TIMEOUT, message, require_client


@pytest.fixture(scope="module")
def fetchmail_version(tmp_path_factory):
    exe = require_client("fetchmail")
    home = tmp_path_factory.mktemp("fetchmail-home")
    r = subprocess.run([exe, "--version"], capture_output=True, timeout=TIMEOUT,
                       stdin=subprocess.DEVNULL,
                       env=dict(os.environ, HOME=str(home), FETCHMAILHOME=str(home)))
    text = (r.stdout + r.stderr).decode(errors="replace")
    m = re.search(r"release (\d+)\.(\d+)\.(\d+)", text)
    assert m, f"cannot read fetchmail's version from: {text[:300]}"
    return tuple(int(x) for x in m.groups())


class Fetchmail:
    def __init__(self, server, tmp_path, version, user, pw):
        self.server = server
        self.dir = tmp_path
        self.version = version
        self.user = user
        self.pw = pw
        self.box = tmp_path / "mbox"
        self.box.touch()

    def rc(self, keep: bool, tls: bool) -> str:
        if tls:
            proto = "tls1.2+" if self.version >= (6, 4, 0) else "TLS1"
            # fetchmail matches the name only against DNS names, never an IP SAN.
            ssl = (f"sslproto '{proto}' sslcertck sslcertfile '{self.server.cert}'"
                   " sslcommonname 'localhost'")
        else:
            ssl = "sslproto ''"
        return (
            "set no syslog\n"
            f"poll 127.0.0.1 service {self.server.pop3_port} protocol pop3 timeout {TIMEOUT}\n"
            f"  user '{self.user}' there with password '{self.pw}'\n"
            f"  {'keep' if keep else 'nokeep fetchall'}\n"
            f"  {ssl}\n"
            f"  mda 'cat >> {self.box}'\n"
        )

    def run(self, keep: bool, tls: bool = False) -> subprocess.CompletedProcess:
        rcfile = self.dir / "fetchmailrc"
        rcfile.write_text(self.rc(keep, tls))
        rcfile.chmod(0o600)
        env = dict(os.environ, HOME=str(self.dir), FETCHMAILHOME=str(self.dir))
        cmd = ["fetchmail", "-v", "--nosyslog", "-f", str(rcfile),
               "--idfile", str(self.dir / "fetchids"),
               "--pidfile", str(self.dir / "fetchmail.pid")]
        return subprocess.run(cmd, capture_output=True, timeout=60, env=env,
                              stdin=subprocess.DEVNULL)


def explain(r: subprocess.CompletedProcess) -> str:
    return (f"fetchmail exited {r.returncode}\n"
            f"{r.stdout.decode(errors='replace')}{r.stderr.decode(errors='replace')}")


def subjects(box) -> list[str]:
    return re.findall(r"^Subject: (fetchmail \S+ \d)\r?$", box.read_text(), re.M)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "stls"])
def test_fetchmail_keep_then_nokeep(server, tmp_path, fetchmail_version, tls):
    tag = "stls" if tls else "plain"
    user, pw = server.new_user("fm")
    for i in (1, 2, 3):
        server.deliver(user, message(f"fetchmail {tag} {i}", f".line {i}\nend\n"))
    fm = Fetchmail(server, tmp_path, fetchmail_version, user, pw)

    r = fm.run(keep=True, tls=tls)
    assert r.returncode == 0, explain(r)
    log = (r.stdout + r.stderr).decode(errors="replace")
    if tls:
        assert re.search(r"POP3> STLS", log), "fetchmail did not use STLS:\n" + log
        assert re.search(r"SSL/TLS: using protocol TLSv1\.[23]", log), log
    else:
        assert "POP3> STLS" not in log, log
    assert "POP3> QUIT" in log, log
    assert subjects(fm.box) == [f"fetchmail {tag} {i}" for i in (1, 2, 3)]
    assert "\n..line 1" not in fm.box.read_text(), "fetchmail saw the stuffed form"
    assert ".line 2\n" in fm.box.read_text()
    assert server.stat(user, pw)[0] == 3, "keep: the messages must stay on the server"

    r = fm.run(keep=False, tls=tls)
    assert r.returncode == 0, explain(r)
    assert subjects(fm.box) == [f"fetchmail {tag} {i}" for i in (1, 2, 3)] * 2
    assert server.stat(user, pw) == (0, 0), "nokeep: the maildrop must be empty"

    r = fm.run(keep=False, tls=tls)
    assert r.returncode == 1, "expected 'no mail' (1):\n" + explain(r)

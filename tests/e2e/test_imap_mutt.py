"""mutt reads INBOX over IMAPS, driven headless on a pseudo-terminal: it verifies the
test's certificate, logs in (the strongest SASL mechanism offered), lists the
messages, opens the first one, and quits; the message it read is \\Seen on the
server afterwards, the other one is not."""

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time

from conftest import message, require_client
from imaputil import all_uids, fetch_uid, imap_server, ok  # noqa: F401

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


def run_mutt(rc, home, until: bytes, timeout: float = 20.0) -> tuple[int, str]:
    """Runs mutt on a 40x120 pty, opening the first message; returns (exit code,
    screen text without escape sequences) once `until` was shown."""
    exe = require_client("mutt")
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [exe, "-n", "-F", str(rc), "-e", "push <display-message>"],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        env=dict(os.environ, TERM="xterm", HOME=str(home), LANG="C.UTF-8"),
    )
    os.close(slave)
    screen = b""
    try:
        deadline = time.monotonic() + timeout
        while until not in ANSI.sub(b"", screen) and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    break
            if proc.poll() is not None:
                break
        os.write(master, b"qq")  # leave the pager, then mutt (quit=yes: no prompt)
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    break
        code = proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, ANSI.sub(b" ", screen).decode(errors="replace")


def test_mutt_reads_inbox_over_imaps(imap_server, tmp_path):
    user, pw = imap_server.new_user("mu")
    imap_server.deliver(user, message("mutt subject one", "mutt body text one\n"))
    imap_server.deliver(user, message("mutt subject two", "mutt body text two\n"))
    rc = tmp_path / "muttrc"
    rc.write_text(
        f'set folder="imaps://localhost:{imap_server.imaps_port}/"\n'
        'set spoolfile="+INBOX"\n'
        f'set imap_user="{user}"\n'
        f'set imap_pass="{pw}"\n'
        f'set ssl_ca_certificates_file="{imap_server.cert}"\n'
        f'set certificate_file="{tmp_path}/certificates"\n'
        'set header_cache=""\n'
        'set message_cachedir=""\n'
        "set mail_check=0\n"
        "set quit=yes\n"
        "set move=no\n"
        "set sort=date-sent\n"
        "set pager_stop=yes\n"
    )
    code, screen = run_mutt(rc, tmp_path, b"mutt body text one")
    tail = screen[-4000:]
    assert code == 0, f"mutt exited {code}:\n{tail}"
    assert "mutt subject one" in screen and "mutt subject two" in screen, tail
    assert "mutt body text one" in screen, f"mutt did not show the message:\n{tail}"
    assert "Msgs:2" in screen, tail

    m = imap_server.imap(user, pw)
    ok(m.select("INBOX", readonly=True))
    flags = {}
    for uid in all_uids(m):
        d = fetch_uid(m, uid, "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        subject = d["BODY[HEADER.FIELDS (SUBJECT)]"].decode().strip()
        flags[subject] = d["FLAGS"]
    m.logout()
    assert b"\\Seen" in flags["Subject: mutt subject one"], flags
    assert b"\\Seen" not in flags["Subject: mutt subject two"], flags

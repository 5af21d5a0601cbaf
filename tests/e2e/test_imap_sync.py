"""Real synchronising clients against buudien over IMAPS with the test's own CA:
mbsync (isync) both ways with a Maildir, and offlineimap reading INBOX headless."""

import re
import subprocess
import time
from pathlib import Path

from conftest import PASSWORD, TIMEOUT, message, normalize, require_client
from imaputil import all_uids, appended_uid, body_of, fetch_uid, imap_server, mail, ok  # noqa: F401


def maildir_messages(folder: Path) -> dict[str, bytes]:
    """{file name: content} of a Maildir folder (new and cur)."""
    out = {}
    for sub in ("new", "cur"):
        d = folder / sub
        if d.is_dir():
            for f in d.iterdir():
                out[f.name] = f.read_bytes()
    return out


def as_local(msg: bytes) -> bytes:
    """A message as the Maildir clients store it: LF line ends."""
    return msg.replace(b"\r\n", b"\n")


def without_tuid(msg: bytes) -> bytes:
    """mbsync tags the messages it moves with an X-TUID header line."""
    return re.sub(rb"(?m)^X-TUID: [^\n]*\n", b"", msg, count=1)


def subjects(msgs) -> set[str]:
    out = set()
    for content in msgs:
        mo = re.search(rb"^Subject: (.*?)\r?$", content, re.M)
        if mo:
            out.add(mo.group(1).decode())
    return out


def server_subjects(srv, user, mailbox) -> set[str]:
    m = srv.imap(user, PASSWORD)
    ok(m.select(mailbox, readonly=True))
    out = {body_of(m, uid) for uid in all_uids(m)}
    m.logout()
    return subjects(out)


class Mbsync:
    def __init__(self, srv, user, root: Path, ssl_type: str = "IMAPS"):
        self.exe = require_client("mbsync")
        self.root = root
        self.maildir = root / "mail"
        self.maildir.mkdir()
        self.rc = root / "mbsyncrc"
        self.rc.write_text(
            "IMAPAccount buudien\n"
            "Host localhost\n"
            f"Port {srv.imaps_port if ssl_type == 'IMAPS' else srv.imap_port}\n"
            f"User {user}\n"
            f'Pass "{PASSWORD}"\n'
            f"SSLType {ssl_type}\n"
            f"CertificateFile {srv.cert}\n"
            "AuthMechs LOGIN PLAIN\n"
            "Timeout 15\n"
            "\n"
            "IMAPStore far\n"
            "Account buudien\n"
            "\n"
            "MaildirStore near\n"
            f"Path {self.maildir}/\n"
            f"Inbox {self.maildir}/INBOX\n"
            "SubFolders Verbatim\n"
            "\n"
            "Channel both\n"
            "Far :far:\n"
            "Near :near:\n"
            "Patterns *\n"
            "Create Both\n"
            "Remove None\n"
            "Expunge Both\n"
            "Sync All\n"
            "SyncState *\n"
        )

    def run(self) -> str:
        r = subprocess.run([self.exe, "-c", str(self.rc), "-V", "-a"], capture_output=True,
                           timeout=TIMEOUT * 4, cwd=self.root)
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        assert r.returncode == 0, f"mbsync exited {r.returncode}:\n{out[-6000:]}"
        return out


def test_mbsync_both_ways(imap_server, tmp_path):
    user, pw = imap_server.new_user("mb")
    imap_server.deliver(user, message("server one"))
    imap_server.deliver(user, message("server two"))
    m = imap_server.imap(user, pw)
    ok(m.create("Work"))
    work_msg = mail("work item")
    work_uid = appended_uid(m, "Work", work_msg)
    m.logout()

    sync = Mbsync(imap_server, user, tmp_path)
    sync.run()
    inbox = sync.maildir / "INBOX"
    work = sync.maildir / "Work"
    assert subjects(maildir_messages(inbox).values()) == {"server one", "server two"}
    got = maildir_messages(work)
    assert [without_tuid(c) for c in got.values()] == [as_local(work_msg)], \
        "the Maildir copy is the message (with LF line ends)"

    # New mail on the server reaches the Maildir.
    imap_server.deliver(user, message("server three"))
    sync.run()
    assert subjects(maildir_messages(inbox).values()) == {
        "server one", "server two", "server three"}

    # Near-side changes: a new message in Work, one INBOX message flagged seen and
    # replied to, one INBOX message deleted.
    local_msg = normalize(message("written locally", "From the Maildir.\n"))
    (work / "new" / f"{int(time.time())}.local1.host").write_bytes(local_msg)
    files = {subjects([c]).pop(): n for n, c in maildir_messages(inbox).items()}
    seen_name = files["server one"]
    src = next(p for p in inbox.glob(f"*/{seen_name}"))
    base = seen_name.split(":2,")[0]
    src.rename(inbox / "cur" / f"{base}:2,RS")
    next(p for p in inbox.glob(f"*/{files['server two']}")).unlink()

    # Far-side deletion: the Work message goes on the server.
    m = imap_server.imap(user, pw)
    ok(m.select("Work"))
    ok(m.uid("STORE", str(work_uid), "+FLAGS.SILENT", "(\\Deleted)"))
    ok(m.expunge())
    m.logout()

    sync.run()
    assert server_subjects(imap_server, user, "INBOX") == {"server one", "server three"}
    assert server_subjects(imap_server, user, "Work") == {"written locally"}
    assert subjects(maildir_messages(work).values()) == {"written locally"}
    assert subjects(maildir_messages(inbox).values()) == {"server one", "server three"}

    m = imap_server.imap(user, pw)
    ok(m.select("INBOX", readonly=True))
    flags = {}
    for uid in all_uids(m):
        d = fetch_uid(m, uid, "(FLAGS BODY.PEEK[])")
        flags[subjects([d["BODY[]"]]).pop()] = d["FLAGS"]
    assert b"\\Seen" in flags["server one"] and b"\\Answered" in flags["server one"], flags
    assert b"\\Seen" not in flags["server three"], flags
    ok(m.select("Work", readonly=True))
    (uid,) = all_uids(m)
    uploaded = body_of(m, uid)
    assert without_tuid(uploaded) == local_msg, uploaded
    m.logout()

    # A second run with nothing changed changes nothing.
    sync.run()
    assert subjects(maildir_messages(inbox).values()) == {"server one", "server three"}


def test_mbsync_over_starttls(imap_server, tmp_path):
    """mbsync with SSLType STARTTLS on the imap port (RFC 9051 §6.2.1)."""
    user, _ = imap_server.new_user("ms")
    msg = message("starttls sync")
    imap_server.deliver(user, msg)
    sync = Mbsync(imap_server, user, tmp_path, ssl_type="STARTTLS")
    out = sync.run()
    got = maildir_messages(sync.maildir / "INBOX")
    assert list(got.values()) and without_tuid(list(got.values())[0]) == msg, out[-3000:]


def test_offlineimap_reads_inbox(imap_server, tmp_path):
    exe = require_client("offlineimap")
    user, pw = imap_server.new_user("oi")
    msgs = [normalize(message(f"offlineimap {i}", f"Body {i}.\n")) for i in range(3)]
    for msg in msgs:
        imap_server.deliver(user, msg)
    maildir = tmp_path / "mail"
    rc = tmp_path / "offlineimaprc"
    rc.write_text(
        "[general]\n"
        "accounts = buudien\n"
        f"metadata = {tmp_path / 'meta'}\n"
        "ui = basic\n"
        "\n"
        "[Account buudien]\n"
        "localrepository = local\n"
        "remoterepository = remote\n"
        "\n"
        "[Repository local]\n"
        "type = Maildir\n"
        f"localfolders = {maildir}\n"
        "\n"
        "[Repository remote]\n"
        "type = IMAP\n"
        "remotehost = localhost\n"
        f"remoteport = {imap_server.imaps_port}\n"
        f"remoteuser = {user}\n"
        f"remotepass = {pw}\n"
        "ssl = yes\n"
        f"sslcacertfile = {imap_server.cert}\n"
        "folderfilter = lambda f: f == 'INBOX'\n"
        "readonly = True\n"
    )
    r = subprocess.run([exe, "-c", str(rc), "-o", "-u", "basic"], capture_output=True,
                       timeout=TIMEOUT * 4, cwd=tmp_path)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, f"offlineimap exited {r.returncode}:\n{out[-6000:]}"
    assert "ERROR" not in out, out[-6000:]
    got = maildir_messages(maildir / "INBOX")
    assert sorted(got.values()) == sorted(as_local(m) for m in msgs), out[-3000:]


def test_mbsync_many_messages_pipelined(imap_server, tmp_path):
    """mbsync pipelines its commands: 200 messages down, all flagged seen locally and
    pushed back up, 50 deleted locally and expunged on the server."""
    user, pw = imap_server.new_user("mm")
    m = imap_server.imap(user, pw)
    for i in range(200):
        m.append("INBOX", None, None, mail(f"bulk {i:03d}", body=f"bulk body {i}\r\n"))
    m.logout()
    sync = Mbsync(imap_server, user, tmp_path)
    sync.run()
    inbox = sync.maildir / "INBOX"
    assert len(maildir_messages(inbox)) == 200
    for f in sorted((inbox / "new").iterdir()):
        f.rename(inbox / "cur" / f"{f.name.split(':2,')[0]}:2,S")
    for f in sorted((inbox / "cur").iterdir())[:50]:
        f.unlink()
    sync.run()
    m = imap_server.imap(user, pw)
    ok(m.select("INBOX", readonly=True))
    uids = all_uids(m)
    assert len(uids) == 150, len(uids)
    data = ok(m.uid("FETCH", "1:*", "(FLAGS)"))
    assert sum(1 for d in data if b"\\Seen" in d) == 150, data[:3]
    m.logout()

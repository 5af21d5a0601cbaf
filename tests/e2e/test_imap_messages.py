"""imaplib reads, searches, flags and files messages: APPEND then FETCH byte for byte
(8-bit, 5 MB), the MIME items (ENVELOPE, BODYSTRUCTURE, sections, BINARY), UID SEARCH,
STORE and EXPUNGE seen by a second session, COPY and MOVE with COPYUID."""

import base64
import concurrent.futures
import hashlib
import imaplib
import re
import time

from imaputil import (  # noqa: F401
    all_uids, appended_uid, body_of, copyuid, fetch_uid, imap_server, mail, ok, pop_untagged,
    uid_search,
)


def fresh(srv, prefix: str):
    user, pw = srv.new_user(prefix)
    m = srv.imap(user, pw)
    return user, m


def test_append_fetch_byte_exact_8bit(imap_server):
    _, m = fresh(imap_server, "ap")
    body = "Grüße aus Hà Nội — ½ €\r\n".encode() + b"raw latin-1: \xe9\xe8\xff\r\n"
    msg = mail("8-bit body", extra="Content-Type: text/plain; charset=utf-8\r\n"
               "Content-Transfer-Encoding: 8bit\r\n").replace(b"Hello.\r\n", b"") + body
    assert msg.endswith(body)
    uid = appended_uid(m, "INBOX", msg, flags="(\\Flagged)")
    ok(m.select("INBOX"))
    d = fetch_uid(m, uid, "(FLAGS RFC822.SIZE BODY.PEEK[])")
    assert d["BODY[]"] == msg, "FETCH BODY[] returns the appended octets exactly"
    assert int(d["RFC822.SIZE"]) == len(msg)
    assert b"\\Flagged" in d["FLAGS"] and b"\\Seen" not in d["FLAGS"], d["FLAGS"]
    # A non-PEEK BODY[] sets \Seen (RFC 9051 §6.4.5).
    d = fetch_uid(m, uid, "(BODY[])")
    assert d["BODY[]"] == msg
    d = fetch_uid(m, uid, "(FLAGS)")
    assert b"\\Seen" in d["FLAGS"], d
    m.logout()


def test_append_5mb_by_sha256(imap_server):
    _, m = fresh(imap_server, "big")
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_=+<>?!~\r\n"
    body = line * (5 * 1024 * 1024 // len(line) + 1)
    msg = mail("five megabytes").replace(b"Hello.\r\n", b"") + body
    assert len(msg) > 5 * 1024 * 1024
    uid = appended_uid(m, "INBOX", msg)
    ok(m.select("INBOX", readonly=True))
    d = fetch_uid(m, uid, "(RFC822.SIZE BODY.PEEK[])")
    assert int(d["RFC822.SIZE"]) == len(msg)
    got = d["BODY[]"]
    assert len(got) == len(msg)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(msg).hexdigest()
    m.logout()
    # The APPEND spool (in the data directory's tmp/) leaves nothing behind.
    assert list((imap_server.data / "tmp").iterdir()) == []


ATTACHMENT = bytes(range(256)) * 4


def multipart() -> tuple[bytes, bytes]:
    text = "Première partie, en UTF-8.\r\n".encode()
    b64 = base64.encodebytes(text).replace(b"\n", b"\r\n")
    att = base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n")
    msg = (
        b"From: Ann Sender <ann@example.org>\r\n"
        b"To: Bob <bob@example.test>\r\n"
        b"Cc: carol@example.net\r\n"
        b"Subject: multipart sections\r\n"
        b"Date: Wed, 25 Nov 2026 08:30:00 +0100\r\n"
        b"Message-ID: <multi.1@example.org>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b0undary"\r\n'
        b"\r\n"
        b"preamble\r\n"
        b"--b0undary\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n" + b64 +
        b"--b0undary\r\n"
        b'Content-Type: application/octet-stream; name="blob.bin"\r\n'
        b'Content-Disposition: attachment; filename="blob.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n" + att +
        b"--b0undary--\r\n"
    )
    return msg, text


def test_fetch_mime_items_on_multipart(imap_server):
    _, m = fresh(imap_server, "mp")
    msg, text = multipart()
    uid = appended_uid(m, "INBOX", msg)
    ok(m.select("INBOX"))

    d = fetch_uid(m, uid, "(ENVELOPE)")
    env = d["ENVELOPE"]
    date, subject, from_, sender, reply_to, to, cc, bcc, in_reply_to, message_id = env
    assert subject == b"multipart sections"
    assert date == b"Wed, 25 Nov 2026 08:30:00 +0100"
    assert from_ == [[b"Ann Sender", None, b"ann", b"example.org"]], from_
    assert sender == from_ and reply_to == from_, "sender and reply-to default to from"
    assert to == [[b"Bob", None, b"bob", b"example.test"]], to
    assert cc == [[None, None, b"carol", b"example.net"]], cc
    assert bcc is None and in_reply_to is None
    assert message_id == b"<multi.1@example.org>"

    d = fetch_uid(m, uid, "(BODYSTRUCTURE)")
    bs = d["BODYSTRUCTURE"]
    part1, part2 = bs[0], bs[1]
    assert bs[2].upper() == b"MIXED", bs
    assert [x.upper() if isinstance(x, bytes) else x for x in part1[:2]] == [b"TEXT", b"PLAIN"]
    assert part1[5].upper() == b"BASE64"
    assert [p.upper() for p in part2[:2]] == [b"APPLICATION", b"OCTET-STREAM"]

    hdr = body_of(m, uid, "BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
    assert hdr == b"Subject: multipart sections\r\n\r\n", hdr
    part = body_of(m, uid, "BODY.PEEK[1]")
    assert base64.b64decode(part) == text, part
    assert body_of(m, uid, "BINARY.PEEK[1]") == text
    assert body_of(m, uid, "BINARY.PEEK[2]") == ATTACHMENT
    assert body_of(m, uid, "BODY.PEEK[2.MIME]").startswith(b"Content-Type: application/")
    m.logout()


def test_uid_search(imap_server):
    _, m = fresh(imap_server, "se")
    specs = [
        ("alpha report", "ann@example.org", "the quick brown fox\r\n", "01-Jan-2026"),
        ("beta report", "bob@example.org", "lazy dogs sleep\r\n", "15-Jun-2026"),
        ("gamma note", "ann@example.org", "a fox again\r\n", "20-Nov-2026"),
    ]
    uids = []
    for subject, sender, body, day in specs:
        when = imaplib.Time2Internaldate(time.mktime(time.strptime(day + " 12", "%d-%b-%Y %H")))
        typ, data = m.append("INBOX", None, when, mail(subject, body=body, sender=sender))
        assert typ == "OK", data
        uids.append(int(pop_untagged(m, "APPENDUID")[-1].split()[1]))
    a, b, c = uids
    ok(m.select("INBOX"))
    ok(m.uid("STORE", str(a), "+FLAGS", "(\\Seen)"))

    assert uid_search(m, "ALL") == [a, b, c]
    assert uid_search(m, "SUBJECT", '"report"') == [a, b]
    assert uid_search(m, "FROM", '"ann@example.org"') == [a, c]
    assert uid_search(m, "BODY", "fox") == [a, c]
    assert uid_search(m, "SINCE", "1-Jun-2026") == [b, c]
    assert uid_search(m, "BEFORE", "1-Jun-2026") == [a]
    assert uid_search(m, "UNSEEN") == [b, c]
    assert uid_search(m, "OR", "SUBJECT", "gamma", "FROM", "bob") == [b, c]
    assert uid_search(m, "NOT", "FROM", "ann") == [b]
    assert uid_search(m, "UNSEEN", "NOT", "BODY", "fox") == [b]
    assert uid_search(m, "UID", f"{b}:*") == [b, c]
    m.logout()


def test_esearch_after_enable_imap4rev2(imap_server):
    """With IMAP4rev2 enabled, SEARCH answers ESEARCH (RFC 9051 §7.3.4)."""
    _, m = fresh(imap_server, "es")
    uid = appended_uid(m, "INBOX", mail("esearch one"))
    ok(m.enable("IMAP4rev2"))
    ok(m.select("INBOX"))
    pop_untagged(m, "ESEARCH")
    typ, data = m.uid("SEARCH", "ALL")
    assert typ == "OK", data
    es = pop_untagged(m, "ESEARCH")
    assert es and re.search(rb"\(TAG \"[^\"]+\"\) UID ALL " + str(uid).encode(), es[-1]), es
    m.logout()


def test_store_flags_seen_by_second_session(imap_server):
    user, m = fresh(imap_server, "fl")
    uid = appended_uid(m, "INBOX", mail("flag me"))
    other = imap_server.imap(user, "correct horse battery staple")
    ok(m.select("INBOX"))
    ok(other.select("INBOX"))
    typ, data = m.uid("STORE", str(uid), "+FLAGS", "(\\Flagged $Label1)")
    assert typ == "OK", data
    assert any(b"\\Flagged" in (x if isinstance(x, bytes) else x[0]) for x in data if x), data
    pop_untagged(other, "FETCH")
    ok(other.noop())
    fetches = pop_untagged(other, "FETCH")
    assert any(b"\\Flagged" in f and b"$Label1" in f for f in fetches if isinstance(f, bytes)), \
        f"the other session saw no FETCH FLAGS at NOOP: {fetches!r}"
    # -FLAGS.SILENT: no FETCH for the changer, one for the other session.
    typ, data = m.uid("STORE", str(uid), "-FLAGS.SILENT", "(\\Flagged)")
    assert typ == "OK" and data == [None], data
    ok(other.noop())
    fetches = pop_untagged(other, "FETCH")
    assert fetches and all(b"\\Flagged" not in f for f in fetches if isinstance(f, bytes)), fetches
    m.logout()
    other.logout()


def test_expunge_seen_by_second_session(imap_server):
    user, m = fresh(imap_server, "ex")
    u1 = appended_uid(m, "INBOX", mail("keep one"))
    u2 = appended_uid(m, "INBOX", mail("delete me"))
    u3 = appended_uid(m, "INBOX", mail("keep three"))
    other = imap_server.imap(user, "correct horse battery staple")
    ok(m.select("INBOX"))
    ok(other.select("INBOX"))
    ok(m.uid("STORE", str(u2), "+FLAGS.SILENT", "(\\Deleted)"))
    typ, data = m.expunge()
    assert (typ, data) == ("OK", [b"2"]), (typ, data)
    pop_untagged(other, "EXPUNGE")
    ok(other.noop())
    assert pop_untagged(other, "EXPUNGE") == [b"2"]
    assert all_uids(other) == [u1, u3]
    d = fetch_uid(other, u3, "(UID)")
    assert int(d["UID"]) == u3
    typ, data = other.fetch("2", "(UID)")
    assert typ == "OK" and str(u3).encode() in data[0], "sequence numbers shifted down"
    m.logout()
    other.logout()


def test_copy_and_move_with_copyuid(imap_server):
    _, m = fresh(imap_server, "cm")
    msg = mail("file me")
    uid = appended_uid(m, "INBOX", msg)
    ok(m.create("Filed"))
    ok(m.select("INBOX"))
    typ, data = m.uid("COPY", str(uid), "Filed")
    assert typ == "OK", data
    validity, src, dst = copyuid(m)
    assert src == [uid] and len(dst) == 1
    ok(m.select("Filed", readonly=True))
    assert int(pop_untagged(m, "UIDVALIDITY")[-1]) == validity
    assert body_of(m, dst[0]) == msg, "the copy is byte for byte the original"

    ok(m.select("INBOX"))
    pop_untagged(m, "EXPUNGE")
    typ, data = m.uid("MOVE", str(uid), "Filed")
    assert typ == "OK", data
    _, src, moved = copyuid(m)
    assert src == [uid] and moved[0] > dst[0]
    assert pop_untagged(m, "EXPUNGE") == [b"1"], "MOVE expunges from the source"
    assert all_uids(m) == []
    ok(m.select("Filed", readonly=True))
    assert all_uids(m) == [dst[0], moved[0]]
    assert body_of(m, moved[0]) == msg
    m.logout()


def test_trycreate_for_missing_mailbox(imap_server):
    """APPEND or COPY to a mailbox that does not exist: NO [TRYCREATE] (RFC 9051
    §6.3.12, §6.4.7), and nothing is stored."""
    _, m = fresh(imap_server, "tc")
    typ, data = m.append("Nowhere", None, None, mail("lost"))
    assert typ == "NO" and b"[TRYCREATE]" in data[0], (typ, data)
    uid = appended_uid(m, "INBOX", mail("stays"))
    ok(m.select("INBOX"))
    typ, data = m.uid("COPY", str(uid), "Nowhere")
    assert typ == "NO" and b"[TRYCREATE]" in data[0], (typ, data)
    assert all_uids(m) == [uid]
    m.logout()


def test_concurrent_sessions_append_and_read(imap_server):
    """Eight sessions of one account APPEND at once while a ninth reads: every message
    gets its own UID, and each reads back byte for byte."""
    user, pw = imap_server.new_user("cc")
    reader = imap_server.imap(user, pw)
    ok(reader.select("INBOX"))

    def writer(n: int) -> dict[int, bytes]:
        m = imap_server.imap(user, pw)
        out = {}
        for i in range(10):
            msg = mail(f"concurrent {n}-{i}", body=f"writer {n} message {i}\r\n" * (n + 1))
            out[appended_uid(m, "INBOX", msg)] = msg
        m.logout()
        return out

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(writer, n) for n in range(8)]
        while not all(f.done() for f in futures):
            ok(reader.noop())
        written: dict[int, bytes] = {}
        for f in futures:
            part = f.result()
            assert not set(part) & set(written), "two APPENDs got the same UID"
            written.update(part)
    assert len(written) == 80
    ok(reader.noop())
    assert all_uids(reader) == sorted(written)
    for uid, msg in written.items():
        assert body_of(reader, uid) == msg, f"UID {uid} differs"
    reader.logout()


def test_condstore_and_qresync_resync(imap_server):
    """A client that was away resynchronises cheaply (RFC 7162): FETCH CHANGEDSINCE
    returns only what changed, and SELECT with QRESYNC reports the expunged UIDs as
    VANISHED (EARLIER)."""
    user, m = fresh(imap_server, "qr")
    u1 = appended_uid(m, "INBOX", mail("resync one"))
    u2 = appended_uid(m, "INBOX", mail("resync two"))
    u3 = appended_uid(m, "INBOX", mail("resync three"))
    ok(m.enable("QRESYNC"))
    ok(m.select("INBOX"))
    validity = int(pop_untagged(m, "UIDVALIDITY")[-1])
    modseq = int(pop_untagged(m, "HIGHESTMODSEQ")[-1])
    m.logout()

    other = imap_server.imap(user, "correct horse battery staple")
    ok(other.select("INBOX"))
    ok(other.uid("STORE", str(u1), "+FLAGS.SILENT", "(\\Flagged)"))
    ok(other.uid("STORE", str(u2), "+FLAGS.SILENT", "(\\Deleted)"))
    ok(other.expunge())
    other.logout()

    m = imap_server.imap(user, "correct horse battery staple")
    ok(m.enable("QRESYNC"))
    pop_untagged(m, "VANISHED")
    # imaplib sends the mailbox argument as is: the QRESYNC parameter rides along.
    typ, data = m.select(f"INBOX (QRESYNC ({validity} {modseq}))")
    assert (typ, data) == ("OK", [b"2"]), (typ, data)
    vanished = pop_untagged(m, "VANISHED")
    assert any(re.fullmatch(rb"\(EARLIER\) %d" % u2, v) for v in vanished), vanished
    changed = [f for f in pop_untagged(m, "FETCH") if isinstance(f, bytes)]
    assert any(b"UID %d" % u1 in f and b"\\Flagged" in f for f in changed), changed
    assert not any(b"UID %d" % u3 in f for f in changed), "unchanged messages are not sent"
    d = ok(m.uid("FETCH", "1:*", f"(FLAGS) (CHANGEDSINCE {modseq})"))
    uids = [int(re.search(rb"UID (\d+)", x).group(1)) for x in d if x]
    assert uids == [u1], d
    m.logout()

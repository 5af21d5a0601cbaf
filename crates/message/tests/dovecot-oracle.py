#!/usr/bin/env python3
"""Differential oracle: ask Debian's Dovecot the same questions tests/corpus.rs asks
buudien, and write the answers in the same report format.

Needs `dovecot-imapd` (Debian 12: Dovecot 2.3.19) and root (Dovecot's imap binary runs
as an unprivileged user, created here as `dcoracle` when missing).

    BUUDIEN_CORPUS_DUMP=/tmp/ours cargo test -p buudien-message --test corpus
    python3 crates/message/tests/dovecot-oracle.py /tmp/ours
    # then: diff /tmp/ours/NAME.ours /tmp/ours/NAME.dovecot

The dump holds NAME.eml (normalised, CRLF) and NAME.ours; the part numbers to ask about
are read from NAME.ours.
"""

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

USER = "dcoracle"
IMAP = "/usr/lib/dovecot/imap"


def ensure_user():
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-M", "-d", "/nonexistent", USER], check=True)


def run_dovecot(msg, commands):
    d = tempfile.mkdtemp(prefix="dcoracle")
    try:
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, "md", sub))
        with open(os.path.join(d, "md", "new", "1.oracle"), "wb") as f:
            f.write(msg)
        conf = os.path.join(d, "dovecot.conf")
        with open(conf, "w") as f:
            f.write(
                f"mail_location = maildir:{d}/md\nlisten =\nssl = no\n"
                f"log_path = {d}/log\nprotocols = imap\n"
                f"mail_uid = {USER}\nmail_gid = {USER}\n"
                "first_valid_uid = 0\nfirst_valid_gid = 0\n"
            )
        subprocess.run(["chown", "-R", USER, d], check=True)
        script = b"s select inbox\r\n"
        for i, c in enumerate(commands):
            script += b"c%d %s\r\n" % (i, c.encode())
        script += b"z logout\r\n"
        env = {"PATH": "/usr/bin:/bin", "USER": USER, "HOME": d}
        out = subprocess.run([IMAP, "-c", conf], input=script, capture_output=True, env=env).stdout
    finally:
        shutil.rmtree(d)
    # Dovecot runs pipelined FETCHes in parallel, so answers are found by item name.
    answers = []
    for i in range(len(commands)):
        tag = b"\r\nc%d " % i
        pos = out.find(tag)
        answers.append((out, out[pos + len(tag):pos + len(tag) + 2] == b"OK"))
    return answers


def value_end(b, i):
    """End offset of the IMAP value starting at b[i]."""
    c = b[i:i + 1]
    if c == b"{":
        end = b.index(b"}\r\n", i)
        return end + 3 + int(b[i + 1:end])
    if c == b'"':
        i += 1
        while b[i:i + 1] != b'"':
            i += 2 if b[i:i + 1] == b"\\" else 1
        return i + 1
    if c == b"(":
        i += 1
        while b[i:i + 1] != b")":
            if b[i:i + 1] == b" ":
                i += 1
                continue
            i = value_end(b, i)
        return i + 1
    while b[i:i + 1] not in (b" ", b")", b""):
        i += 1
    return i


def fetch_value(chunk, item):
    """The raw value of `item` in a `* 1 FETCH (item value)` response."""
    head = b"* 1 FETCH (" + item.encode() + b" "
    pos = chunk.find(head)
    if pos < 0:
        return None
    start = pos + len(head)
    return chunk[start:value_end(chunk, start)]


def string_value(raw):
    """Decode an IMAP string value (literal, quoted or NIL) to bytes."""
    if raw is None or raw == b"NIL":
        return b""
    if raw.startswith(b"{"):
        end = raw.index(b"}\r\n")
        n = int(raw[1:end])
        return raw[end + 3:end + 3 + n]
    if raw.startswith(b'"'):
        out, i = bytearray(), 1
        while raw[i:i + 1] != b'"':
            if raw[i:i + 1] == b"\\":
                i += 1
            out += raw[i:i + 1]
            i += 1
        return bytes(out)
    raise ValueError(raw)


def escape(b):
    s = []
    for c in b:
        if c == 13:
            s.append("\\r")
        elif c == 10:
            s.append("\\n")
        elif c == 92:
            s.append("\\\\")
        elif 0x20 <= c <= 0x7E:
            s.append(chr(c))
        else:
            s.append("\\x%02x" % c)
    return "".join(s)


def digest(b):
    return "%d:%s" % (len(b), hashlib.sha256(b).hexdigest()[:16])


def report(msg, ours):
    parts = []  # (path, kinds)
    for line in ours.splitlines():
        if line.startswith("PART "):
            f = line.split()
            kind = "message" if " HEADER " in line else ("leaf" if "BINARY.SIZE" in line else "multi")
            parts.append((f[1], kind))
    cmds = [
        "FETCH 1 (ENVELOPE)",
        "FETCH 1 (BODY)",
        "FETCH 1 (BODYSTRUCTURE)",
        "FETCH 1 (BODY.PEEK[HEADER])",
        "FETCH 1 (BODY.PEEK[TEXT])",
    ]
    for path, kind in parts:
        cmds += ["FETCH 1 (BODY.PEEK[%s.MIME])" % path, "FETCH 1 (BODY.PEEK[%s])" % path]
        if kind == "message":
            cmds += ["FETCH 1 (BODY.PEEK[%s.HEADER])" % path, "FETCH 1 (BODY.PEEK[%s.TEXT])" % path]
        if kind == "leaf":
            cmds += ["FETCH 1 (BINARY.SIZE[%s])" % path]
    answers = run_dovecot(msg, cmds)
    r = []
    for name, (chunk, _) in zip(["ENVELOPE", "BODY", "BODYSTRUCTURE"], answers[:3]):
        r.append("%s %s" % (name, escape(fetch_value(chunk, name) or b"?")))
    r.append("HEADER " + digest(string_value(fetch_value(answers[3][0], "BODY[HEADER]"))))
    r.append("TEXT " + digest(string_value(fetch_value(answers[4][0], "BODY[TEXT]"))))
    i = 5
    for path, kind in parts:
        mime = string_value(fetch_value(answers[i][0], "BODY[%s.MIME]" % path))
        body = string_value(fetch_value(answers[i + 1][0], "BODY[%s]" % path))
        line = "PART %s MIME %s BODY %s" % (path, digest(mime), digest(body))
        i += 2
        if kind == "message":
            h = string_value(fetch_value(answers[i][0], "BODY[%s.HEADER]" % path))
            t = string_value(fetch_value(answers[i + 1][0], "BODY[%s.TEXT]" % path))
            line += " HEADER %s TEXT %s" % (digest(h), digest(t))
            i += 2
        if kind == "leaf":
            chunk, ok = answers[i]
            if ok:
                line += " BINARY.SIZE %s" % fetch_value(chunk, "BINARY.SIZE[%s]" % path).decode()
            else:
                line += " BINARY.SIZE UNKNOWN-CTE"
            i += 1
        r.append(line)
    return "\n".join(r) + "\n"


def main():
    ensure_user()
    dump = sys.argv[1]
    for name in sorted(os.listdir(dump)):
        if not name.endswith(".eml"):
            continue
        stem = name[:-4]
        with open(os.path.join(dump, name), "rb") as f:
            msg = f.read()
        with open(os.path.join(dump, stem + ".ours")) as f:
            ours = f.read()
        with open(os.path.join(dump, stem + ".dovecot"), "w") as f:
            f.write(report(msg, ours))


if __name__ == "__main__":
    main()

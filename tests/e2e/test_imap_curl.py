"""curl's IMAP client (imap:// with STARTTLS, imaps://) against buudien: list
mailboxes, fetch a message by UID, a custom UID SEARCH, and upload (APPEND) with -T."""

import re
import subprocess

import pytest

from conftest import TIMEOUT, message, normalize, require_client
from imaputil import imap_server, ok  # noqa: F401


@pytest.fixture
def curl(imap_server):
    exe = require_client("curl")

    def run(url_path, *args, user, pw, scheme="imap", check=True):
        port = imap_server.imaps_port if scheme == "imaps" else imap_server.imap_port
        cmd = [exe, "-sS", "--max-time", str(TIMEOUT), "--user", f"{user}:{pw}",
               "--cacert", str(imap_server.cert), *args,
               f"{scheme}://127.0.0.1:{port}{url_path}"]
        r = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT + 5)
        if check:
            assert r.returncode == 0, (cmd, r.returncode, r.stderr.decode(errors="replace"))
        return r

    return run


def listed(out: bytes) -> set[str]:
    names = set()
    for line in out.splitlines():
        mo = re.match(rb'\* LIST \([^)]*\) (?:"."|NIL) "?([^"]*)"?$', line)
        assert mo, line
        names.add(mo.group(1).decode())
    return names


def uids(srv, user, pw) -> list[int]:
    m = srv.imap(user, pw)
    ok(m.select("INBOX", readonly=True))
    data = ok(m.uid("FETCH", "1:*", "(UID)"))
    m.logout()
    return sorted(int(re.search(rb"UID (\d+)", d).group(1)) for d in data if d)


@pytest.mark.parametrize("scheme,extra", [("imap", ["--ssl-reqd"]), ("imaps", [])])
def test_curl_list_and_fetch_by_uid(imap_server, curl, scheme, extra):
    user, pw = imap_server.new_user("cu")
    msgs = [normalize(message(f"curl {scheme} {i}", f"body {i}\n")) for i in range(2)]
    for msg in msgs:
        imap_server.deliver(user, msg)
    m = imap_server.imap(user, pw)
    ok(m.create("Receipts"))
    m.logout()

    r = curl("/", *extra, user=user, pw=pw, scheme=scheme)
    assert {"INBOX", "Receipts"} <= listed(r.stdout), r.stdout

    first, second = uids(imap_server, user, pw)
    r = curl(f"/INBOX;UID={second}", *extra, user=user, pw=pw, scheme=scheme)
    assert r.stdout == msgs[1], "curl's UID fetch output differs from the delivered message"
    r = curl(f"/INBOX;UID={first}", *extra, user=user, pw=pw, scheme=scheme)
    assert r.stdout == msgs[0]


def test_curl_starttls_required_and_wrong_password(imap_server, curl):
    user, pw = imap_server.new_user("cw")
    r = curl("/", "--ssl-reqd", user=user, pw="wrong", check=False)
    assert r.returncode == 67, (r.returncode, r.stderr)  # CURLE_LOGIN_DENIED


def test_curl_custom_uid_search(imap_server, curl):
    user, pw = imap_server.new_user("cs")
    for subject in ("needle one", "hay", "needle two"):
        imap_server.deliver(user, message(subject))
    first, _, third = uids(imap_server, user, pw)
    # -v: a failure shows the server's reply in the trace.
    r = curl("/INBOX", "-v", "-X", "UID SEARCH SUBJECT needle", user=user, pw=pw,
             scheme="imaps")
    found = re.search(rb"^\* SEARCH([\d ]*)\r?$", r.stdout, re.M)
    assert found, r.stdout
    assert [int(x) for x in found.group(1).split()] == [first, third]
    r = curl("/INBOX", "-X", "UID SEARCH ALL", user=user, pw=pw, scheme="imaps")
    assert re.search(rb"^\* SEARCH( \d+){3}\r?$", r.stdout, re.M), r.stdout


def test_curl_upload_appends(imap_server, curl, tmp_path):
    user, pw = imap_server.new_user("cp")
    msg = normalize(message("uploaded by curl", "Sent with curl -T.\n"))
    f = tmp_path / "up.eml"
    f.write_bytes(msg)
    curl("/INBOX", "-T", str(f), user=user, pw=pw, scheme="imaps")
    (uid,) = uids(imap_server, user, pw)
    r = curl(f"/INBOX;UID={uid}", user=user, pw=pw, scheme="imaps")
    assert r.stdout == msg

"""curl's POP3 client (pop3://, pop3s://, STLS with --ssl-reqd) against buudien."""

import subprocess

import pytest

from conftest import TIMEOUT, message, normalize, require_client


@pytest.fixture
def curl(server):
    exe = require_client("curl")

    def run(url_path, *args, user, pw, scheme="pop3", port=None, check=True):
        port = port or (server.pop3s_port if scheme == "pop3s" else server.pop3_port)
        cmd = [exe, "-sS", "--max-time", str(TIMEOUT), "--user", f"{user}:{pw}",
               "--cacert", str(server.cert), *args,
               f"{scheme}://127.0.0.1:{port}{url_path}"]
        r = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT + 5)
        if check:
            assert r.returncode == 0, (cmd, r.returncode, r.stderr.decode(errors="replace"))
        return r

    return run


def listing(out: bytes) -> dict[int, int]:
    return {int(n): int(s) for n, s in (line.split() for line in out.splitlines())}


def deliver(server, user, n, tag):
    msgs = [normalize(message(f"curl {tag} {i}", f".dotted line {i}\n")) for i in range(1, n + 1)]
    for m in msgs:
        server.deliver(user, m)
    return msgs


def test_curl_list_retr_dele(server, curl):
    user, pw = server.new_user("cu")
    msgs = deliver(server, user, 3, "plain")

    r = curl("/", user=user, pw=pw)
    assert listing(r.stdout) == {i + 1: len(m) for i, m in enumerate(msgs)}

    r = curl("/1", user=user, pw=pw)
    assert r.stdout == msgs[0], "curl's RETR output differs from the delivered message"

    r = curl("/", "-X", "DELE 1", "-I", user=user, pw=pw)
    r = curl("/", user=user, pw=pw)
    assert listing(r.stdout) == {1: len(msgs[1]), 2: len(msgs[2])}

    r = curl("/1", user=user, pw=pw)
    assert r.stdout == msgs[1]


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_curl_sasl_mechanisms(server, curl, mech):
    user, pw = server.new_user("cm")
    msgs = deliver(server, user, 1, mech)
    r = curl("/1", "--login-options", f"AUTH={mech}", user=user, pw=pw)
    assert r.stdout == msgs[0]


def test_curl_pop3s(server, curl):
    user, pw = server.new_user("cs")
    msgs = deliver(server, user, 2, "pop3s")
    r = curl("/", scheme="pop3s", user=user, pw=pw)
    assert listing(r.stdout) == {1: len(msgs[0]), 2: len(msgs[1])}
    r = curl("/2", scheme="pop3s", user=user, pw=pw)
    assert r.stdout == msgs[1]
    curl("/", "-X", "DELE 2", "-I", scheme="pop3s", user=user, pw=pw)
    r = curl("/", scheme="pop3s", user=user, pw=pw)
    assert listing(r.stdout) == {1: len(msgs[0])}


def test_curl_pop3s_insecure(server, curl):
    user, pw = server.new_user("ck")
    msgs = deliver(server, user, 1, "insecure")
    r = curl("/1", "-k", scheme="pop3s", user=user, pw=pw)
    assert r.stdout == msgs[0]


def test_curl_stls_required(server, curl):
    user, pw = server.new_user("ct")
    msgs = deliver(server, user, 2, "stls")
    r = curl("/", "--ssl-reqd", "-v", user=user, pw=pw)
    assert listing(r.stdout) == {1: len(msgs[0]), 2: len(msgs[1])}
    trace = r.stderr.decode(errors="replace")
    assert "STLS" in trace, trace
    assert "SSL connection using" in trace, trace
    r = curl("/2", "--ssl-reqd", user=user, pw=pw)
    assert r.stdout == msgs[1]


def test_curl_wrong_password_fails(server, curl):
    # Exercises the SASL failure path; curl exits 67 (login denied).
    user, _ = server.new_user("cw")
    r = curl("/", user=user, pw="wrong", check=False)
    assert r.returncode == 67, (r.returncode, r.stderr)

"""SIGHUP reloads the TLS certificate without a restart; a broken certificate keeps the
old one in use."""

import hashlib
import signal
import socket
import ssl
import time

from conftest import launch


def served_fingerprint(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    return hashlib.sha256(der).hexdigest()


def file_fingerprint(path) -> str:
    der = ssl.PEM_cert_to_DER_cert(path.read_text())
    return hashlib.sha256(der).hexdigest()


def wait_for(predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_sighup_reloads_certificate(buudien_bin, tmp_path):
    own = launch(buudien_bin, tmp_path)
    try:
        first = file_fingerprint(own.cert)
        assert served_fingerprint(own.pop3s_port) == first
        assert served_fingerprint(own.imaps_port) == first

        own.make_cert()  # a new key and certificate in the same files
        second = file_fingerprint(own.cert)
        assert second != first
        own.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: served_fingerprint(own.pop3s_port) == second, "the new certificate")
        assert "TLS certificate reloaded" in own.log()
        assert served_fingerprint(own.imaps_port) == second, "imaps uses the reloaded one"

        # A broken certificate file: the reload fails loudly and the old one stays.
        own.cert.write_text("not a certificate\n")
        own.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "TLS reload failed" in own.log(), "the reload error in the log")
        assert served_fingerprint(own.pop3s_port) == second
        assert served_fingerprint(own.imaps_port) == second
        # Still serving logins over TLS.
        user, pw = own.new_user("hup")
        assert own.stat(user, pw) == (0, 0)
    finally:
        assert own.stop() == 0, own.log()

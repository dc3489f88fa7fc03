"""MQTT over TLS (issue 15 item 3): a throwaway CA and server certificate, Mosquitto listening
with TLS beside plain TCP, the bridge connected over TLS, and the SDK sending and receiving a
message over TLS with the certificate verified."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.core.management import CommandError, call_command

from bench.services import free_port
from bridge import acl
from bridge.broker import TlsConfigError, TlsFiles, build_plugin, render_config
from mchat_sdk import Client
from mchat_sdk.errors import ConnectionFailed
from tests.broker_harness import ReloadableMosquitto
from tests.live import LiveStack

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(directory: Path) -> TlsFiles:
    """A CA, and a server certificate it signed for 127.0.0.1 and localhost (PEM files)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("MChat test CA"))
        .issuer_name(_name("MChat test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "server.pem", directory / "server.key", directory / "ca.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    files.key.chmod(0o600)
    return files


@pytest.fixture
def tls_stack(transactional_db, settings, tmp_path):
    """A private broker with a plain and a TLS listener, and a bridge connected over TLS."""
    build_plugin()
    tls = make_certificates(tmp_path)
    tls_port = free_port()
    directory = tmp_path / "broker"
    broker = ReloadableMosquitto(
        render_config(port=free_port(), directory=directory, tls=tls, tls_port=tls_port)
    )
    broker.start()
    settings.MCHAT_BROKER_DIR = directory
    settings.MCHAT_MQTT_URL = f"mqtts://127.0.0.1:{tls_port}"
    settings.MCHAT_TLS_CA = str(tls.ca)
    settings.MCHAT_PUBLIC_MQTT_TLS, settings.MCHAT_PUBLIC_MQTT_PORT = True, tls_port
    stack = LiveStack(broker, directory)
    try:
        acl.sync()
        broker.reload()
        stack.start_bridge()
        yield stack, tls, tls_port
    finally:
        stack.close_clients()
        stack.stop_bridge()
        broker.stop()


def test_the_sdk_talks_to_the_bridge_over_verified_tls(tls_stack, monkeypatch):
    stack, tls, tls_port = tls_stack
    conf = (stack.directory / "mosquitto.conf").read_text()
    assert (
        f"listener {tls_port} 127.0.0.1\ncertfile {tls.cert.resolve()}\nkeyfile {tls.key.resolve()}" in conf
    )

    alice, alice_pw = stack.issue("Alice")
    bob, bob_pw = stack.issue("Bob")

    def connection(employee, password: str) -> dict:
        return {
            "broker_host": "127.0.0.1",
            "broker_port": tls_port,
            "use_tls": True,
            "mqtt_username": employee.employee_id,
            "mqtt_password": password,
        }

    # Without our CA the certificate cannot be verified: the connection is refused.
    stranger = Client(connection(alice, alice_pw), device="untrusting")
    with pytest.raises(ConnectionFailed):
        stranger.connect(timeout=5)
    stranger.close()

    # The SDK trusts what OpenSSL trusts; a private CA is named by SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca))
    sender = Client(connection(alice, alice_pw), device="laptop", request_timeout=10).connect()
    reader = Client(connection(bob, bob_pw), device="phone", request_timeout=10).connect()
    try:
        sent = sender.send_private(bob.employee_id, "加密通道")
        got = reader.wait_event(lambda e: e.message.msg_id == sent["msg_id"], kind="message")
        assert got.message.text == "加密通道"
    finally:
        sender.close(end_session=True)
        reader.close(end_session=True)


def test_mqtt_connection_names_the_tls_port_when_a_certificate_is_configured(tmp_path):
    tls = make_certificates(tmp_path)
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, json; django.setup(); from django.conf import settings as s; "
            "print(json.dumps([s.MCHAT_PUBLIC_MQTT_TLS, s.MCHAT_PUBLIC_MQTT_PORT, s.MCHAT_MQTT_URL]))",
        ],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "mchat.settings",
            "MCHAT_TLS_CERT": str(tls.cert),
            "MCHAT_TLS_KEY": str(tls.key),
            "MCHAT_TLS_PORT": "18883",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(shown.stdout) == [True, 18883, "mqtts://127.0.0.1:18883"], shown.stderr


def test_a_missing_or_unreadable_certificate_stops_runstack_naming_the_file(tmp_path, settings):
    tls = make_certificates(tmp_path)
    settings.MCHAT_TLS_CERT, settings.MCHAT_TLS_KEY = str(tmp_path / "missing.pem"), str(tls.key)
    with pytest.raises(CommandError, match=r"MCHAT_TLS_CERT: cannot read .*missing\.pem"):
        call_command("runstack")
    settings.MCHAT_TLS_CERT, settings.MCHAT_TLS_KEY = str(tls.cert), str(tls.ca)  # not its key
    with pytest.raises(
        CommandError, match=r"server\.pem and .*ca\.pem are not a PEM certificate and its private key"
    ):
        call_command("runstack")
    settings.MCHAT_TLS_KEY = ""
    with pytest.raises(CommandError, match="MCHAT_TLS_KEY is not set"):
        call_command("runstack")
    with pytest.raises(TlsConfigError, match="MCHAT_TLS_CA: cannot read"):
        TlsFiles(tls.cert, tls.key, tmp_path / "no-ca.pem").check()

"""TLS on both sides of the gateway, with certificates from a CA generated here.

To remote providers: certificates are verified against the system's roots or a provider's
`ca_file`, host names included; `insecure_skip_verify` is the only way around it (the HTTPS peer
is the SDK fixture server). On the front door: `server.tls` serves HTTPS to the official SDK client
in both eras, and a renewed certificate is picked up without a restart (a broken one is not)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import time
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mcp.client import Client
from mcp.shared.exceptions import MCPError

from conftest import MODES, start_fixture, text

pytestmark = pytest.mark.anyio


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca():
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hangar test CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue(ca, ca_key, d, stem: str, dns: list[str], ips: list[str] = ()) -> x509.Certificate:
    """A server certificate for `dns` and `ips` signed by the CA, written to d/stem.{pem,key}."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    # Key first, then the certificate: a reader sees a matching pair once both are renamed in.
    for suffix, data in [
        ("key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
        ("pem", pem(cert)),
    ]:
        tmp = d / f".{stem}.{suffix}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, d / f"{stem}.{suffix}")
    return cert


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA (ca.pem) and its certificates: `localhost` only (cert.*), `localhost` and 127.0.0.1
    (front.*)."""
    d = tmp_path_factory.mktemp("tls")
    ca, ca_key = make_ca()
    (d / "ca.pem").write_bytes(pem(ca))
    issue(ca, ca_key, d, "cert", ["localhost"])
    issue(ca, ca_key, d, "front", ["localhost"], ["127.0.0.1"])
    (d / "not-a-ca.pem").write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
    return d, ca, ca_key


@pytest.fixture(scope="module")
def https_fixture(certs):
    """The fixture server serving HTTPS with the `localhost`-only certificate."""
    d = certs[0]
    proc, port = start_fixture("tls", env={"FIXTURE_TLS_CERT": str(d / "cert.pem"), "FIXTURE_TLS_KEY": str(d / "cert.key")})
    yield d, port
    proc.stop()


@pytest.mark.parametrize("mode", MODES)
async def test_certificates_are_verified(gateway_factory, https_fixture, mode):
    d, port = https_fixture
    gw = gateway_factory(
        f"""
providers:
  trusted: {{mode: remote, endpoint: "https://localhost:{port}/mcp", ca_file: "{d / 'ca.pem'}"}}
  untrusted: {{mode: remote, endpoint: "https://localhost:{port}/mcp"}}
  wronghost: {{mode: remote, endpoint: "https://127.0.0.1:{port}/mcp", ca_file: "{d / 'ca.pem'}"}}
  skipped: {{mode: remote, endpoint: "https://127.0.0.1:{port}/mcp", insecure_skip_verify: true}}
  broken: {{mode: remote, endpoint: "https://localhost:{port}/mcp", ca_file: "{d / 'not-a-ca.pem'}"}}
""",
        "gateway-tls",
    )
    async with Client(gw.url, mode=mode) as c:
        assert text(await c.call_tool("trusted__echo", {"text": "over tls"})) == "over tls"
        assert text(await c.call_tool("skipped__echo", {"text": "unchecked"})) == "unchecked"
        for name, why in [("untrusted", "certificate"), ("wronghost", "certificate"), ("broken", "certificate authorities")]:
            with pytest.raises(MCPError) as err:
                await c.call_tool(f"{name}__echo", {"text": "x"})
            assert why in err.value.message.lower() or why in str(err.value.data).lower(), (name, err.value.message)


def served_serial(port: int, ca: str) -> int:
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as s:
        return x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).serial_number


@pytest.mark.parametrize("mode", MODES)
async def test_the_front_door_serves_https_and_reloads_its_certificate(gateway_factory, certs, fixture_url, mode):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    d, ca, ca_key = certs
    gw = gateway_factory(
        f"""
server:
  tls: {{cert_file: "{d / 'front.pem'}", key_file: "{d / 'front.key'}"}}
providers:
  fx: {{mode: remote, endpoint: "{fixture_url}"}}
""",
        "gateway-https",
        ca=str(d / "ca.pem"),
    )
    http = httpx2.AsyncClient(verify=gw.ssl, timeout=httpx2.Timeout(30.0, read=300.0))
    async with Client(streamable_http_client(gw.url, http_client=http), mode=mode) as c:
        assert text(await c.call_tool("fx__echo", {"text": "through https"})) == "through https"
    # Plain HTTP gets no MCP answer on the TLS port.
    with pytest.raises(Exception):
        urllib.request.urlopen(f"http://127.0.0.1:{gw.port}/health/ready", timeout=5).read()
    before = served_serial(gw.port, str(d / "ca.pem"))
    renewed = issue(ca, ca_key, d, "front", ["localhost"], ["127.0.0.1"])
    deadline = time.monotonic() + 15
    while served_serial(gw.port, str(d / "ca.pem")) != renewed.serial_number:
        assert time.monotonic() < deadline, "the renewed certificate was not picked up"
        time.sleep(0.2)
    assert renewed.serial_number != before
    # A broken renewal leaves the current certificate in place.
    (d / "front.pem").write_text("not a certificate")
    time.sleep(3)
    assert served_serial(gw.port, str(d / "ca.pem")) == renewed.serial_number
    issue(ca, ca_key, d, "front", ["localhost"], ["127.0.0.1"])

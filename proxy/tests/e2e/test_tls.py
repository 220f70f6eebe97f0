"""TLS to remote providers: certificates are verified against the system's roots or a provider's
`ca_file`, host names included; `insecure_skip_verify` is the only way around it. The HTTPS peer
is the SDK fixture server with a certificate from a CA generated here."""

from __future__ import annotations

import datetime

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


@pytest.fixture(scope="module")
def https_fixture(tmp_path_factory):
    """A CA, a certificate for `localhost` only, and the fixture server serving HTTPS with it."""
    d = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hangar test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (d / "ca.pem").write_bytes(pem(ca))
    (d / "cert.pem").write_bytes(pem(cert))
    (d / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (d / "not-a-ca.pem").write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
    proc, port = start_fixture("tls", env={"FIXTURE_TLS_CERT": str(d / "cert.pem"), "FIXTURE_TLS_KEY": str(d / "key.pem")})
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

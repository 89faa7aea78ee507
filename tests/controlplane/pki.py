"""Certificates and keys for the local control plane.

Uses the ``cryptography`` package when it is importable (it is in the ``dev``
extra) and falls back to the ``openssl`` command line otherwise, so the
harness itself needs nothing beyond the standard library.

All keys are ECDSA P-256 (fast to generate; accepted by every component,
including the service-account token signer, which then issues ES256 tokens).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

try:  # pragma: no cover - depends on the environment
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    HAVE_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover
    HAVE_CRYPTOGRAPHY = False

VALID_DAYS = 365


@dataclass
class CertSpec:
    """What to put into one certificate."""

    name: str  # file stem: <name>.crt / <name>.key
    common_name: str
    organizations: list[str] = field(default_factory=list)
    server: bool = False
    client: bool = False
    dns_names: list[str] = field(default_factory=list)
    ip_addresses: list[str] = field(default_factory=list)


class PKI:
    """A CA plus the certificates/keys signed by it, as files in ``directory``."""

    def __init__(self, directory: Path, use_openssl: bool | None = None):
        self.dir = Path(directory)
        self.use_openssl = (not HAVE_CRYPTOGRAPHY) if use_openssl is None else use_openssl

    # paths -----------------------------------------------------------------
    def crt(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    @property
    def ca_crt(self) -> Path:
        return self.crt("ca")

    # generation ------------------------------------------------------------
    def create_ca(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.use_openssl:
            self._openssl_key(self.key("ca"))
            _run(
                ["openssl", "req", "-x509", "-new", "-key", str(self.key("ca")), "-sha256",
                 "-days", str(VALID_DAYS), "-subj", "/CN=geneva-test-ca",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                 "-out", str(self.ca_crt)]
            )
            return
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "geneva-test-ca")])
        cert = _certificate(name, name, key.public_key(), ca=True).sign(key, hashes.SHA256())
        self._write_key(self.key("ca"), key)
        self.ca_crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, spec: CertSpec) -> tuple[Path, Path]:
        """Issue a leaf certificate signed by the CA; returns (crt, key)."""
        crt, keyp = self.crt(spec.name), self.key(spec.name)
        if self.use_openssl:
            self._openssl_issue(spec, crt, keyp)
            return crt, keyp
        ca_key = serialization.load_pem_private_key(self.key("ca").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_crt.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in spec.organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name))
        usages = []
        if spec.server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if spec.client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = _certificate(x509.Name(attrs), ca_cert.subject, key.public_key(), ca=False).add_extension(
            x509.ExtendedKeyUsage(usages), critical=False)
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in spec.dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in spec.ip_addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        self._write_key(keyp, key)
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return crt, keyp

    def create_keypair(self, name: str) -> tuple[Path, Path]:
        """A bare key pair (service-account token signing); returns (pub, key)."""
        pub, keyp = self.dir / f"{name}.pub", self.key(name)
        if self.use_openssl:
            self._openssl_key(keyp)
            _run(["openssl", "pkey", "-in", str(keyp), "-pubout", "-out", str(pub)])
            return pub, keyp
        key = ec.generate_private_key(ec.SECP256R1())
        self._write_key(keyp, key)
        pub.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return pub, keyp

    # helpers -----------------------------------------------------------------
    @staticmethod
    def _write_key(path: Path, key) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    @staticmethod
    def _openssl_key(path: Path) -> None:
        _run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-out", str(path)])
        path.chmod(0o600)

    def _openssl_issue(self, spec: CertSpec, crt: Path, keyp: Path) -> None:
        self._openssl_key(keyp)
        subj = "".join(f"/O={o}" for o in spec.organizations) + f"/CN={spec.common_name}"
        usages = [u for u, on in (("serverAuth", spec.server), ("clientAuth", spec.client)) if on]
        ext = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature",
            "extendedKeyUsage=" + ",".join(usages),
        ]
        sans = [f"DNS:{d}" for d in spec.dns_names] + [f"IP:{i}" for i in spec.ip_addresses]
        if sans:
            ext.append("subjectAltName=" + ",".join(sans))
        with tempfile.NamedTemporaryFile("w", suffix=".ext", dir=self.dir, delete=False) as f:
            f.write("\n".join(ext) + "\n")
            extfile = f.name
        csr = self.dir / f"{spec.name}.csr"
        try:
            _run(["openssl", "req", "-new", "-key", str(keyp), "-subj", subj, "-out", str(csr)])
            _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.ca_crt),
                  "-CAkey", str(self.key("ca")), "-CAcreateserial", "-sha256",
                  "-days", str(VALID_DAYS), "-extfile", extfile, "-out", str(crt)])
        finally:
            Path(extfile).unlink(missing_ok=True)
            csr.unlink(missing_ok=True)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _certificate(subject: x509.Name, issuer: x509.Name, public_key, ca: bool) -> x509.CertificateBuilder:
    """What the CA and every leaf share: validity (from 5 minutes ago, to tolerate clock skew
    between components), serial, basic constraints, and key usage (the CA signs certificates;
    a leaf only signs handshakes)."""
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=ca, crl_sign=ca,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")

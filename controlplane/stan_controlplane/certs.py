"""The local control plane's PKI: one CA, the API server's serving certificate,
client certificates for the admin and the controller manager, and the
service-account signing key pair.

Generated once per state directory and reused, so that kubeconfigs, tokens and
stored objects stay valid across restarts.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from stan_operator import certificates

APISERVER_NAMES = ("127.0.0.1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default",
                   "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")


@dataclasses.dataclass(frozen=True)
class Pki:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.cert("ca")

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.directory / "sa.pub"


def ensure(directory: Path) -> Pki:
    """Create the PKI in ``directory`` unless it is already there."""
    pki = Pki(directory)
    if pki.service_account_pub.exists():
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    ca = certificates.new_ca("stan-local-ca")
    ca.write(pki.ca_cert, pki.key("ca"))
    certificates.issue(ca, "kube-apiserver", server_names=APISERVER_NAMES).write(
        pki.cert("apiserver"), pki.key("apiserver"))
    certificates.issue(ca, "stan-admin", organization="system:masters").write(pki.cert("admin"), pki.key("admin"))
    certificates.issue(ca, "system:kube-controller-manager").write(
        pki.cert("controller-manager"), pki.key("controller-manager"))
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki.service_account_key.write_bytes(sa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    pki.service_account_key.chmod(0o600)
    pki.service_account_pub.write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki

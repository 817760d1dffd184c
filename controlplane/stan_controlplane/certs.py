"""The local cluster's PKI: one CA and every identity it signs.

Client identities, each a user (common name) and its groups (organization) to
the API server: the admin, the controller manager, the scheduler, the API
server itself toward the kubelet, kube-proxy, and the kubelet toward the API
server (``system:node:<name>`` in ``system:nodes``, which the Node authorizer
and the NodeRestriction admission plugin confine to its own node). Serving
certificates: the API server's and the kubelet's. Plus the service-account
signing key pair.

Everything is generated once per state directory and reused, so that
kubeconfigs, tokens and stored objects stay valid across restarts; only a
serving certificate whose addresses changed is issued anew (a node's
addresses depend on which node instance the run got, see ``host``).
"""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from stan_core import certificates

APISERVER_NAMES = (
    "127.0.0.1",
    "localhost",
    "10.0.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
CLIENTS = {  # file name -> (user, group)
    "admin": ("stan-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", None),
}
KUBELET_CLIENT_USER = CLIENTS["apiserver-kubelet-client"][0]
"""The API server's user toward kubelets; ``cluster`` grants it the kubelet API (logs, exec)."""


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

    def client_context(self, name: str) -> ssl.SSLContext:
        """TLS that trusts the cluster's CA and presents ``name``'s client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        context.load_cert_chain(str(self.cert(name)), str(self.key(name)))
        return context

    def _ca(self) -> certificates.KeyPair:
        return certificates.KeyPair.read(self.ca_cert, self.key("ca"))

    def ensure_client(self, name: str, user: str, group: str | None = None) -> None:
        """A client certificate for ``user`` in ``group`` unless there is one."""
        if not self.cert(name).exists():
            certificates.issue(self._ca(), user, organization=group).write(self.cert(name), self.key(name))

    def ensure_serving(self, name: str, common_name: str, server_names: tuple[str, ...]) -> None:
        """A serving certificate for exactly ``server_names``, issued anew when they changed."""
        if self.cert(name).exists() and _server_names(self.cert(name)) == set(server_names):
            return
        certificates.issue(self._ca(), common_name, server_names=server_names).write(self.cert(name), self.key(name))


def _server_names(cert_path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(name.value) for name in names}


def ensure(directory: Path, apiserver_address: str) -> Pki:
    """The control plane's identities in ``directory``: whatever is missing is created.

    ``apiserver_address`` is where the API server listens, which its serving
    certificate must name.
    """
    pki = Pki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not pki.ca_cert.exists():
        certificates.new_ca("stan-local-ca").write(pki.ca_cert, pki.key("ca"))
    pki.ensure_serving("apiserver", "kube-apiserver", tuple(dict.fromkeys((*APISERVER_NAMES, apiserver_address))))
    for name, (user, group) in CLIENTS.items():
        pki.ensure_client(name, user, group)
    if not pki.service_account_pub.exists():
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pki.service_account_key.write_bytes(
            sa_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        pki.service_account_key.chmod(0o600)
        pki.service_account_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return pki


def ensure_node(pki: Pki, node_name: str, node_address: str) -> None:
    """The node's identities: the kubelet's, ``system:node:<name>`` toward the API server, and its serving
    certificate; kube-proxy's, the user the default RBAC policy grants what it needs."""
    pki.ensure_client("node", f"system:node:{node_name}", "system:nodes")
    pki.ensure_serving("kubelet", node_name, (node_name, node_address))
    pki.ensure_client("kube-proxy", "system:kube-proxy")

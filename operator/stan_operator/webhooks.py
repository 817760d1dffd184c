"""The admission webhook's server and its certificate.

kopf serves the webhook and keeps the ValidatingWebhookConfiguration in sync
with the handlers. The serving certificate comes from a directory when one is
mounted there (``tls.crt``, ``tls.key``, ``ca.crt``, as cert-manager writes a
Secret), else the operator makes a self-signed pair for its host at start.
When the operator manages the ValidatingWebhookConfiguration (locally), it
points at ``https://HOST:PORT``; a Helm chart registers its own, through a
Service. Either way failurePolicy is Ignore: with the operator down, tasks can
still be written, and the operator marks an invalid one Ready=False instead.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import kopf

from stan_core import certificates

CONFIGURATION_NAME = "stan.dev"


@dataclasses.dataclass(frozen=True)
class WebhookOptions:
    listen_address: str
    port: int
    host: str
    cert_dir: Path | None
    manage_configuration: bool = True


def _certificate_files(options: WebhookOptions) -> tuple[Path, Path, Path]:
    directory = options.cert_dir
    if directory is not None and (directory / "tls.crt").exists():
        return directory / "tls.crt", directory / "tls.key", directory / "ca.crt"
    directory = directory or Path(tempfile.mkdtemp(prefix="stan-webhook-"))
    directory.mkdir(parents=True, exist_ok=True)
    ca = certificates.new_ca("stan-webhook-ca")
    serving = certificates.issue(ca, options.host, server_names=(options.host, "localhost", "127.0.0.1"))
    serving.write(directory / "tls.crt", directory / "tls.key")
    (directory / "ca.crt").write_bytes(ca.cert_pem)
    return directory / "tls.crt", directory / "tls.key", directory / "ca.crt"


def server(options: WebhookOptions) -> kopf.WebhookServer:
    certfile, pkeyfile, cafile = _certificate_files(options)
    return kopf.WebhookServer(
        addr=options.listen_address,
        port=options.port,
        host=options.host,
        certfile=certfile,
        pkeyfile=pkeyfile,
        cafile=cafile,
    )

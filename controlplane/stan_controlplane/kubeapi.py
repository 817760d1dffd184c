"""The local cluster's own calls to its API server while it starts: reads and server-side applies, plain
enough for urllib, so that starting a cluster needs no Kubernetes client library.

Each is made with a client certificate of the cluster's PKI (the admin's).
Objects are written by server-side apply under one field manager, forced: a
start writes them as this checkout says whatever an earlier run left, and
applying the same object again changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request

FIELD_MANAGER = "stan-controlplane"
PLURALS = {
    "ServiceAccount": "serviceaccounts",
    "ConfigMap": "configmaps",
    "Service": "services",
    "Deployment": "deployments",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
}
"""The kinds a start writes, with their resource names."""
TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class Client:
    server: str
    context: ssl.SSLContext

    def get(self, path: str) -> dict | None:
        """The object or list at ``path`` (``/api/v1/nodes/x``), None when there is none."""
        try:
            with urllib.request.urlopen(f"{self.server}{path}", context=self.context, timeout=TIMEOUT) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def apply(self, manifest: dict) -> None:
        """Create or update ``manifest`` to be as given (server-side apply)."""
        group_version, kind = manifest["apiVersion"], manifest["kind"]
        metadata = manifest["metadata"]
        path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        if "namespace" in metadata:
            path += f"/namespaces/{metadata['namespace']}"
        query = urllib.parse.urlencode({"fieldManager": FIELD_MANAGER, "force": "true"})
        request = urllib.request.Request(
            f"{self.server}{path}/{PLURALS[kind]}/{metadata['name']}?{query}",
            data=json.dumps(manifest).encode(),
            method="PATCH",
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        urllib.request.urlopen(request, context=self.context, timeout=TIMEOUT).close()

"""The API client's session, built from a kubeconfig alone (nothing is contacted)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stan_core import kube

SERVER = "https://10.1.2.3:6443"


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "here",
                "clusters": [{"name": "here", "cluster": {"server": SERVER, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "here", "user": {"token": "t"}}],
                "contexts": [{"name": "here", "context": {"cluster": "here", "user": "here"}}],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for variable in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize(
    ("environment", "proxy"),
    [
        ({}, None),
        ({"HTTPS_PROXY": "http://user:secret@proxy.example:3128"}, "http://user:secret@proxy.example:3128"),
        ({"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "10.1.2.3"}, None),
    ],
)
async def test_the_environment_is_read_once_not_per_request(
    kubeconfig: None, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], proxy: str | None
) -> None:
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    async with await kube.api_client() as api:
        assert api.rest_client.pool_manager.trust_env is False
        assert api.rest_client.proxy == proxy

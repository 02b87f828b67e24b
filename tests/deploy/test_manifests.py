"""The Kubernetes manifests and the Compose file, checked offline: every manifest and each
overlay's output against the bundled Kubernetes schemas (``kubernetes-validate --strict``), the
renderer against ``kubectl kustomize`` where kubectl exists, ``compose.yaml`` against the
Compose specification (``check-jsonschema``'s bundled copy), and the promises the docs make:
non-root, read-only, probes, a grace period longer than the longest stream, a config the proxy
loads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from proxy.config import load_config
from tests.deploy.kustomize import apply_patch, render

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "team")
# The oldest Kubernetes these manifests are for, and the newest schemas bundled.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version() + ".0")
# Any download would fail: proof that validation needs no network.
OFFLINE = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": ""}


def manifests() -> list[Path]:
    """Every Kubernetes resource file (kustomizations and patches are kustomize's, not the API's)."""
    return sorted(p for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml" and "patches" not in p.parts)


def by_kind(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["kind"]: r for r in resources}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", manifests(), ids=lambda p: str(p.relative_to(KUBE)))
def test_each_manifest_is_valid_strictly(path: Path, version: str) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_valid_resources(overlay: str, version: str) -> None:
    resources = render(KUBE / overlay)
    assert sorted(by_kind(resources)) == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler",
                                          "PodDisruptionBudget", "Service"]
    for resource in resources:
        kubernetes_validate.validate(resource, version, strict=True)


def test_the_cli_validates_offline(tmp_path: Path) -> None:
    rendered = tmp_path / "team.yaml"
    rendered.write_text(yaml.safe_dump_all(render(KUBE / "team")))
    done = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet",
                           "-k", VERSIONS[0], str(rendered), *map(str, manifests())],
                          check=False, capture_output=True, text=True, env=OFFLINE, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_renderer_matches_kubectl_kustomize(overlay: str) -> None:
    done = subprocess.run(["kubectl", "kustomize", str(KUBE / overlay)], capture_output=True, text=True,
                          check=False, env=OFFLINE, timeout=120)
    assert done.returncode == 0, done.stderr
    theirs = [d for d in yaml.safe_load_all(done.stdout) if d]
    key = lambda r: (r["kind"], r["metadata"]["name"])
    assert sorted(theirs, key=key) == sorted(render(KUBE / overlay), key=key)


@pytest.mark.parametrize(("ops", "result"), [
    ([{"op": "add", "path": "/a/-", "value": 3}], {"a": [1, 2, 3], "b": {"c": 1}}),
    ([{"op": "add", "path": "/a/0", "value": 0}], {"a": [0, 1, 2], "b": {"c": 1}}),
    ([{"op": "remove", "path": "/a/1"}], {"a": [1], "b": {"c": 1}}),
    ([{"op": "replace", "path": "/b/c", "value": 2}], {"a": [1, 2], "b": {"c": 2}}),
    ([{"op": "add", "path": "/b/d~1e", "value": 4}], {"a": [1, 2], "b": {"c": 1, "d/e": 4}}),
    ([{"op": "remove", "path": "/b"}], {"a": [1, 2]}),
])
def test_json_patch(ops: list[dict[str, Any]], result: dict[str, Any]) -> None:
    document = {"a": [1, 2], "b": {"c": 1}}
    assert apply_patch(document, ops) == result
    assert document == {"a": [1, 2], "b": {"c": 1}}  # a copy is patched


def test_replace_of_a_missing_member_fails() -> None:
    with pytest.raises(KeyError):
        apply_patch({}, [{"op": "replace", "path": "/x", "value": 1}])


# ---- the promises ---------------------------------------------------------------------------

def pod(overlay: str) -> dict[str, Any]:
    spec: dict[str, Any] = by_kind(render(KUBE / overlay))["Deployment"]["spec"]["template"]["spec"]
    return spec


def config_toml(overlay: str) -> str:
    text: str = by_kind(render(KUBE / overlay))["ConfigMap"]["data"]["config.toml"]
    return text


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pod_is_locked_down(overlay: str) -> None:
    spec = pod(overlay)
    [container] = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "privileged": False, "capabilities": {"drop": ["ALL"]}}
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The writable paths are emptyDirs: /tmp always, the SQLite file's directory where there is one.
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    assert {m["name"] for m in container["volumeMounts"] if m["mountPath"] in writable} <= empty_dirs
    assert "/tmp" in writable
    url = tomllib.loads(config_toml(overlay)).get("store", {}).get("url", "")
    if url.startswith("sqlite:////"):
        assert str(Path(url.removeprefix("sqlite:///")).parent) in writable


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_outlasts_the_drain_and_the_longest_stream(overlay: str) -> None:
    spec = pod(overlay)
    [container] = spec["containers"]
    command = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    assert "SIGUSR1" in command  # drain first (proxy/gates/drain.py), then kubelet sends SIGTERM
    sleep = float(re.search(r"time\.sleep\((\d+(?:\.\d+)?)\)", command).group(1))  # type: ignore[union-attr]
    shutdown = tomllib.loads(config_toml(overlay))["server"]["shutdown_timeout"]
    assert spec["terminationGracePeriodSeconds"] >= sleep + shutdown + 10


def load_with_secrets(tmp_path: Path, config: str, secrets: Path) -> Any:
    """The config as the pod sees it: the include's absolute path pointed at the example."""
    text = re.sub(r'include = \["[^"]+"\]', 'include = ["secrets.toml"]', config)
    (tmp_path / "secrets.toml").write_text(secrets.read_text())
    (tmp_path / "config.toml").write_text(text)
    return load_config(tmp_path / "config.toml", env={"OLLAMA_BASE_URL": "http://ollama:11434"})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_config_loads_with_the_example_secret(overlay: str, tmp_path: Path) -> None:
    config = load_with_secrets(tmp_path, config_toml(overlay), KUBE / overlay / "secrets.example.toml")
    assert config.auth.keys and config.server.host == "0.0.0.0" and config.store.enabled
    assert config.store.flush_interval <= 1.0
    if overlay == "team":
        assert config.store.url.startswith("postgresql://") and config.ratelimit.backend == "redis"
        assert config.ratelimit.url.startswith("redis://")
    else:
        assert config.store.url.startswith("sqlite:////") and config.ratelimit.backend == "memory"


def test_team_runs_three_spread_replicas_with_workers_sized_to_the_cpu_limit() -> None:
    resources = by_kind(render(KUBE / "team"))
    deployment = resources["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert int(args[args.index("--workers") + 1]) == int(container["resources"]["limits"]["cpu"])
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    [term] = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert resources["PodDisruptionBudget"]["spec"] == {
        "minAvailable": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": "ollama-openai-proxy"}}}
    assert resources["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 3
    assert [v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]] == ["config", "secret", "tmp"]


def test_scrape_annotations_name_the_metrics_listener() -> None:
    for overlay in OVERLAYS:
        template = by_kind(render(KUBE / overlay))["Deployment"]["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        metrics = tomllib.loads(config_toml(overlay))["metrics"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == metrics["port"] and metrics["host"] == "0.0.0.0"


# ---- compose.yaml ---------------------------------------------------------------------------

COMPOSE = ROOT / "compose.yaml"


def test_compose_is_valid_against_the_compose_spec_offline() -> None:
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(COMPOSE)], check=False, capture_output=True, text=True, env=OFFLINE, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_waits_for_healthy_dependencies() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(services) == {"proxy", "ollama", "redis", "postgres"}
    assert all("healthcheck" in s for s in services.values())
    assert services["proxy"]["depends_on"] == {
        name: {"condition": "service_healthy"} for name in ("ollama", "postgres", "redis")}
    assert services["ollama"]["image"].startswith("ollama/ollama:")
    assert any(v.endswith(":/root/.ollama") for v in services["ollama"]["volumes"])
    assert "# deploy:" in COMPOSE.read_text()  # the GPU reservation, commented
    proxy = services["proxy"]
    assert proxy["read_only"] is True and proxy["cap_drop"] == ["ALL"]
    assert "/livez" in " ".join(proxy["healthcheck"]["test"])


def test_compose_config_loads_with_the_example_secret(tmp_path: Path) -> None:
    compose = ROOT / "deploy" / "compose"
    config = load_with_secrets(tmp_path, (compose / "config.toml").read_text(), compose / "secrets.example.toml")
    assert config.auth.keys and config.store.url.startswith("postgresql://")
    assert config.ratelimit.backend == "redis"


# ---- the systemd unit ------------------------------------------------------------------------

def test_the_systemd_unit_stops_gracefully_and_reloads_keys() -> None:
    unit = dict(line.split("=", 1) for line in (ROOT / "deploy" / "systemd" / "ollama-openai-proxy.service")
                .read_text().splitlines() if "=" in line and not line.startswith("#"))
    assert unit["KillSignal"] == "SIGTERM" and unit["KillMode"] == "mixed"  # the parent passes it on
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    from proxy.config import ServerConfig

    assert float(unit["TimeoutStopSec"]) > ServerConfig().shutdown_timeout + 10
    assert unit["NoNewPrivileges"] == "yes" and unit["ProtectSystem"] == "strict"
    assert "--config /etc/ollama-openai-proxy/config.toml" in unit["ExecStart"]

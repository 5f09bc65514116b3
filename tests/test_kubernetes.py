"""deploy/kubernetes: schema-valid core objects, consistent with each other and the image.

Core kinds are validated strictly (unknown fields rejected) against the Kubernetes
OpenAPI schemas kubernetes-validate ships; the ServiceMonitor (a CRD) structurally.
No cluster is started here.
"""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support import REPO

DEPLOY = REPO / "deploy" / "kubernetes"
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
HOST_MOUNTS = {"/host/proc": "/proc", "/host/sys": "/sys", "/host/root": "/", "/dev": "/dev"}


def objects() -> dict[str, dict[str, Any]]:
    """Every object of the kustomization's resources, keyed by kind."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    found: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((DEPLOY / name).read_text()):
            assert document["kind"] not in found, document["kind"]
            found[document["kind"]] = document
    return found


def image_cmd() -> list[str]:
    """The Containerfile's CMD (JSON form)."""
    text = (REPO / "Containerfile").read_text()
    found = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert found, "no JSON CMD in Containerfile"
    cmd: list[str] = json.loads(found.group(1))
    return cmd


def test_every_manifest_is_listed() -> None:
    listed = set(yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kind", ["Namespace", "DaemonSet", "Service"])
def test_core_objects_are_schema_valid(kind: str, version: str) -> None:
    kubernetes_validate.validate(objects()[kind], version, strict=True)


def test_a_misspelt_field_is_rejected() -> None:
    """The validator is strict: the schema test can fail."""
    daemonset = objects()["DaemonSet"]
    daemonset["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, VERSIONS[-1], strict=True)


def test_daemonset_is_non_root_read_only_and_reads_the_host_read_only() -> None:
    pod = objects()["DaemonSet"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert not pod.get("hostPID") and not pod.get("hostNetwork")
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for inside, host in HOST_MOUNTS.items():
        assert mounts[inside].get("readOnly") is True, inside
        assert volumes[mounts[inside]["name"]]["hostPath"]["path"] == host, inside


def test_daemonset_runs_the_image_command_with_a_cache_dir() -> None:
    (container,) = objects()["DaemonSet"]["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[: len(image_cmd())] == image_cmd()
    cache = next(a.split("=", 1)[1] for a in args if a.startswith("--cache.dir="))
    assert cache in {m["mountPath"] for m in container["volumeMounts"]}
    probes = {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
    assert probes == {"/-/ready", "/-/healthy"}


def test_service_and_servicemonitor_select_the_pods() -> None:
    found = objects()
    pod_labels = found["DaemonSet"]["spec"]["template"]["metadata"]["labels"]
    (container,) = found["DaemonSet"]["spec"]["template"]["spec"]["containers"]
    service, monitor = found["Service"], found["ServiceMonitor"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {port["name"]}
    namespaces = {
        o["metadata"].get("namespace") for o in found.values() if o["kind"] != "Namespace"
    }
    assert namespaces == {found["Namespace"]["metadata"]["name"]}


def test_readme_documents_capabilities_per_collector() -> None:
    text = (DEPLOY / "README.md").read_text()
    for collector in ("smart", "nvme", "ipmi", "gpu"):
        assert re.search(rf"^\| `{collector}`", text, re.M), collector

"""A small kustomize renderer for what ``deploy/kubernetes`` uses, so the overlays' output is
validated where ``kubectl`` is absent: ``resources`` (files and directories), ``patches`` with
a target (JSON patch, RFC 6902: add, remove, replace) and ``images``. Any other kustomization
field is refused, so a manifest that starts using one fails here rather than rendering wrong;
where ``kubectl`` exists the tests check this renderer's output against ``kubectl kustomize``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

__all__ = ["apply_patch", "render"]

KNOWN = {"apiVersion", "kind", "resources", "patches", "images"}


def render(directory: Path) -> list[dict[str, Any]]:
    """The resources ``directory``'s kustomization.yaml builds, patched."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - KNOWN
    if unknown:
        raise ValueError(f"{directory}: kustomization fields this renderer does not know: {sorted(unknown)}")
    resources: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            resources += render(path)
        else:
            resources += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in spec.get("patches", []):
        ops = yaml.safe_load(patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text())
        target = patch["target"]
        matched = [r for r in resources if r["kind"] == target["kind"] and r["metadata"]["name"] == target["name"]]
        if not matched:
            raise ValueError(f"{directory}: a patch targets {target}, which no resource is")
        for resource in matched:
            resources[resources.index(resource)] = apply_patch(resource, ops)
    for image in spec.get("images", []):
        for resource in resources:
            for container in _containers(resource):
                name, _, _ = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', 'latest')}"
    return resources


def apply_patch(document: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902's add, remove and replace on a copy of ``document`` (``-`` appends to a list)."""
    doc = copy.deepcopy(document)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        kind = op["op"]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if kind == "add":
                node.insert(index, op["value"])
            elif kind == "remove":
                del node[index]
            elif kind == "replace":
                node[index] = op["value"]
            else:
                raise ValueError(f"unsupported patch op {kind!r}")
        elif kind in ("add", "replace"):
            if kind == "replace" and last not in node:
                raise KeyError(f"replace of a missing member: {op['path']}")
            node[last] = op["value"]
        elif kind == "remove":
            del node[last]
        else:
            raise ValueError(f"unsupported patch op {kind!r}")
    return doc


def _containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    pod = resource.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]

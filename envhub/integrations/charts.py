"""The files of a Helm chart, as envhub reads them before and after helm does.

Kept apart from :mod:`envhub.integrations.helm` (which runs the binary): a
chart's metadata, the check that a chart folder of a repository reaches no
file outside it, the digest that names a chart folder's content, and the
user values merged for a release record.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from envhub.errors import ChartRenderFailed, SourcePathInvalid

_MAX_CHART_YAML = 1024 * 1024


def chart_metadata(path: Path, *, shown: str) -> dict[str, Any]:
    if not path.is_file():
        raise ChartRenderFailed(f"{shown} is not a Helm chart: it has no Chart.yaml", details={"path": shown})
    if path.stat().st_size > _MAX_CHART_YAML:
        raise ChartRenderFailed(f"{shown}/Chart.yaml is larger than 1 MiB", details={"path": shown})
    return _parse_chart_yaml(path.read_bytes(), shown=shown)


def _parse_chart_yaml(text: bytes, *, shown: str) -> dict[str, Any]:
    try:
        meta = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ChartRenderFailed(
            f"{shown}/Chart.yaml is not valid YAML: {exc}", details={"path": shown}
        ) from None
    if not isinstance(meta, dict):
        raise ChartRenderFailed(f"{shown}/Chart.yaml is not a mapping", details={"path": shown})
    return meta


def archived_chart_metadata(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if (
                len(parts) == 2
                and parts[1] == "Chart.yaml"
                and member.isfile()
                and member.size <= _MAX_CHART_YAML
            ):
                extracted = tar.extractfile(member)
                assert extracted is not None
                return _parse_chart_yaml(extracted.read(), shown=archive.name)
    raise ChartRenderFailed(f"{archive.name} holds no Chart.yaml")


def refuse_escapes(root: Path, folder: Path, shown: str) -> None:
    """helm follows symlinks when it loads a chart: none may lead out of the repository."""
    for current, folders, files in os.walk(folder, followlinks=False):
        for name in [*folders, *files]:
            entry = Path(current) / name
            if entry.is_symlink() and not entry.resolve().is_relative_to(root):
                where = f"{shown}/{entry.relative_to(folder).as_posix()}"
                raise SourcePathInvalid(
                    f"{where} is a symlink leading out of the repository",
                    details={"path": where, "reason": "escapes"},
                )


def missing_dependencies(folder: Path, dependencies: list[Any]) -> bool:
    charts = folder / "charts"
    for dependency in dependencies:
        name = str(dependency.get("name", "")) if isinstance(dependency, dict) else ""
        if not (charts / name / "Chart.yaml").is_file() and not list(
            charts.glob(f"{glob.escape(name)}-*.tgz")
        ):
            return True
    return False


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    files = []
    for current, _, names in os.walk(folder, followlinks=False):
        for name in names:
            entry = Path(current) / name
            if entry.is_file():
                files.append((entry.relative_to(folder).as_posix(), entry))
    for relative, entry in sorted(files):
        content = entry.read_bytes()
        if relative.startswith("charts/") and relative.endswith(".tgz"):
            content = _archive_contents_digest(content)
        elif relative == "Chart.lock":
            content = _lock_without_time(content)
        digest.update(f"{relative}\0{len(content)}\0".encode())
        digest.update(content)
    return "sha256:" + digest.hexdigest()


def _lock_without_time(content: bytes) -> bytes:
    """Chart.lock without ``generated``: helm writes the time it resolved the same versions."""
    try:
        lock = yaml.safe_load(content)
    except yaml.YAMLError:
        return content
    if not isinstance(lock, dict):
        return content
    lock.pop("generated", None)
    return yaml.safe_dump(lock, sort_keys=True).encode()


def _archive_contents_digest(content: bytes) -> bytes:
    """A packaged chart by the files it holds: helm stamps a fresh time into each one it packages."""
    digest = hashlib.sha256()
    try:
        with tarfile.open(fileobj=io.BytesIO(content)) as tar:
            for member in sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name):
                extracted = tar.extractfile(member)
                assert extracted is not None
                data = extracted.read()
                digest.update(f"{member.name}\0{len(data)}\0".encode())
                digest.update(data)
    except tarfile.TarError:
        return content  # not an archive after all: its bytes are its content
    return digest.digest()


def merged_values(values_files: list[Path], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in values_files:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ChartRenderFailed(
                f"values file {path.name} could not be read as YAML: {exc}",
                details={"values_file": path.name},
            ) from None
        if loaded is None:
            continue
        if not isinstance(loaded, dict):
            raise ChartRenderFailed(
                f"values file {path.name} must hold a mapping of values", details={"values_file": path.name}
            )
        merged = _merge(merged, loaded)
    try:
        yaml.safe_dump(dict(overrides))
    except yaml.YAMLError as exc:
        raise ChartRenderFailed(f"the environment's values are not plain data: {exc}") from None
    return _merge(merged, dict(overrides))


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged

"""Tools for the files of an environment's workspace: read, write, list, delete.

The same use cases as REST's routes (``api/v1/files.py``); paths are confined
to the workspace and each call is audited there (``services/files.py``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

from pydantic import Field

from envhub.domain.principals import Principal
from envhub.errors import ValidationFailed
from envhub.mcp.schemas import EnvironmentId
from envhub.services import files, ports
from envhub.services.files import DeletedFile, DirectoryListing, FileContent, WrittenFile
from envhub.services.units import unit_of_work

# What an agent's context can hold in one answer or one argument.
MAX_BYTES = 1024 * 1024

Path = Annotated[
    str,
    Field(
        min_length=1,
        max_length=files.MAX_PATH,
        description="Relative to the workspace (or absolute inside it); no '..'.",
    ),
]


def read_file(
    actor: Principal,
    environment_id: EnvironmentId,
    path: Path,
    offset: Annotated[int, Field(ge=0)] = 0,
    max_bytes: Annotated[int, Field(ge=1, le=MAX_BYTES)] = 256 * 1024,
) -> FileContent:
    """Read a file of the environment's workspace: text when it is UTF-8, else base64 (see encoding).

    A file longer than max_bytes comes back truncated: read on from offset + the bytes read.
    """
    with unit_of_work() as session:
        return files.read_file(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            path=path,
            offset=offset,
            limit=max_bytes,
        )


def write_file(
    actor: Principal,
    environment_id: EnvironmentId,
    path: Path,
    content: Annotated[str, Field(max_length=2 * MAX_BYTES)],
    encoding: Literal["utf-8", "base64"] = "utf-8",
) -> WrittenFile:
    """Create or replace a file of the workspace (its folders are made); the file changes all at once."""
    data = _decode(content, encoding)
    if len(data) > MAX_BYTES:
        raise ValidationFailed(
            f"write_file takes at most {MAX_BYTES} bytes; run_command can assemble larger files",
            details={"field": "content"},
        )
    with unit_of_work() as session:
        return files.write_file(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            path=path,
            data=data,
        )


def list_files(
    actor: Principal,
    environment_id: EnvironmentId,
    path: Annotated[str, Field(max_length=files.MAX_PATH)] = ".",
    max_entries: Annotated[int, Field(ge=1, le=files.MAX_ENTRIES)] = 500,
) -> DirectoryListing:
    """The entries of a folder of the workspace ("." for the workspace itself): name, type, size."""
    with unit_of_work() as session:
        return files.list_directory(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            path=path,
            max_entries=max_entries,
        )


def delete_file(actor: Principal, environment_id: EnvironmentId, path: Path) -> DeletedFile:
    """Delete a file (or a symlink, not what it points to) of the workspace; folders are refused."""
    with unit_of_work() as session:
        return files.delete_file(
            session=session, actor=actor, runtime=ports.runtime(), environment_id=environment_id, path=path
        )


def _decode(content: str, encoding: str) -> bytes:
    if encoding == "utf-8":
        return content.encode()
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationFailed("content is not valid base64", details={"field": "content"}) from exc

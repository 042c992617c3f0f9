"""Files of an environment's workspace: read, write, list, delete (``services/files.py``).

A write's body is the file itself (any bytes, ``application/octet-stream``),
bounded by the request size limit (``ENVHUB_MAX_BODY_BYTES``); a read answers
JSON, the content as text when it is UTF-8 and base64 otherwise (``encoding``).
Paths are relative to the workspace, confined to it, and every call is audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from envhub.api.v1.models import Caller, Id, answers, model_of
from envhub.models.db import session_scope
from envhub.services import files, ports
from envhub.services.files import DeletedFile, DirectoryListing, FileContent, WrittenFile

router = APIRouter(prefix="/api/v1", tags=["environments"])

FileContentModel = model_of(FileContent)
WrittenFileModel = model_of(WrittenFile)
DeletedFileModel = model_of(DeletedFile)
DirectoryListingModel = model_of(DirectoryListing)

FilePath = Annotated[
    str,
    Query(
        min_length=1,
        max_length=files.MAX_PATH,
        description="Relative to the workspace (or absolute inside it); no '..'.",
    ),
]


@router.get(
    "/environments/{environment_id}/files/content",
    response_model=FileContentModel,
    responses=answers(404, 409, 503),
    summary="Read a file of the environment's workspace (at most max_bytes from offset)",
)
def read_file(
    environment_id: Id,
    actor: Caller,
    path: FilePath,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    max_bytes: Annotated[int, Query(ge=1, le=files.MAX_READ)] = 1024 * 1024,
) -> FileContent:
    with session_scope() as session:
        return files.read_file(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            path=path,
            offset=offset,
            limit=max_bytes,
        )


@router.put(
    "/environments/{environment_id}/files/content",
    response_model=WrittenFileModel,
    responses=answers(404, 409, 503),
    summary="Create or replace a file of the workspace with the request's body (folders are made)",
)
def write_file(
    environment_id: Id,
    actor: Caller,
    path: FilePath,
    data: Annotated[
        bytes, Body(media_type="application/octet-stream", description="The file's bytes.")
    ] = b"",
) -> WrittenFile:
    with session_scope() as session:
        return files.write_file(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            path=path,
            data=data,
        )


@router.get(
    "/environments/{environment_id}/files",
    response_model=DirectoryListingModel,
    responses=answers(404, 409, 503),
    summary="List a folder of the workspace ('.' for the workspace itself)",
)
def list_files(
    environment_id: Id,
    actor: Caller,
    path: Annotated[str, Query(max_length=files.MAX_PATH)] = ".",
    max_entries: Annotated[int, Query(ge=1, le=files.MAX_ENTRIES)] = 1000,
) -> DirectoryListing:
    with session_scope() as session:
        return files.list_directory(
            session=session,
            actor=actor,
            runtime=ports.runtime(),
            environment_id=environment_id,
            path=path,
            max_entries=max_entries,
        )


@router.delete(
    "/environments/{environment_id}/files/content",
    response_model=DeletedFileModel,
    responses=answers(404, 409, 503),
    summary="Delete a file (or a symlink) of the workspace; folders are refused",
)
def delete_file(environment_id: Id, actor: Caller, path: FilePath) -> DeletedFile:
    with session_scope() as session:
        return files.delete_file(
            session=session, actor=actor, runtime=ports.runtime(), environment_id=environment_id, path=path
        )

"""Attack surface: an agent's file calls reach outside the workspace.

``services/files.py`` takes paths from whoever holds the shell right (an agent
token, a script). A path with ``..``, an absolute path elsewhere, or a symlink
planted in the workspace pointing at ``/etc`` must not let a read, write, list
or delete act outside the workspace: each is refused with
``workspace_path_invalid`` (reason ``escapes``) and nothing outside changes.
Symlinks that stay inside keep working.
"""

from __future__ import annotations

import pytest
from sqlmodel import Session

from envhub.config import Settings
from envhub.errors import WorkspacePathInvalid
from envhub.runtime.local import LocalRuntime
from envhub.services import files
from tests.integration.test_workspace_files import env_id, runtime, sh
from tests.support.world import World

pytestmark = pytest.mark.slow
__all__ = ["env_id", "runtime"]  # fixtures, shared with the integration tests


def test_no_path_leads_out_of_the_workspace(
    session: Session, world: World, runtime: LocalRuntime, env_id: int, settings: Settings
) -> None:
    ops = {"session": session, "actor": world.member, "runtime": runtime, "environment_id": env_id}
    sh(
        session,
        world,
        runtime,
        env_id,
        "mkdir -p inner && echo ok > inner/real && "
        "ln -s /etc out && ln -s /etc/passwd pw && ln -s inner/real alias && ln -s inner dir && "
        "ln -s /nowhere dangling",
    )
    workspace = settings.envs_dir / str(env_id) / "workspace"

    def refused(call, **kwargs) -> str:  # type: ignore[no-untyped-def]
        with pytest.raises(WorkspacePathInvalid) as caught:
            call(**ops, **kwargs)
        return str(caught.value.details["reason"])

    assert refused(files.read_file, path="pw") == "escapes"
    assert refused(files.read_file, path="out/hostname") == "escapes"
    assert refused(files.read_file, path="/etc/hostname") == "escapes"
    assert refused(files.read_file, path="../state.json") == "escapes"
    assert refused(files.read_file, path="inner/../../x") == "escapes"
    assert refused(files.list_directory, path="out") == "escapes"
    assert refused(files.list_directory, path="/") == "escapes"
    assert refused(files.write_file, path="out/planted", data=b"x") == "escapes"
    assert refused(files.write_file, path="out/new/deeper/planted", data=b"x") == "escapes"
    assert refused(files.write_file, path="pw", data=b"x") == "escapes"
    assert refused(files.write_file, path="dangling", data=b"x") == "escapes"
    assert refused(files.delete_file, path="out/hostname") == "escapes"
    assert refused(files.read_file, path=".") == "is_directory"

    # Symlinks that stay inside are followed; deleting one removes the link, not its target.
    assert files.read_file(**ops, path="alias")["content"] == "ok\n"
    files.write_file(**ops, path="dir/second", data=b"2")
    assert (workspace / "inner" / "second").read_bytes() == b"2"
    files.write_file(**ops, path="alias", data=b"through the link\n")
    assert (workspace / "inner" / "real").read_text() == "through the link\n"
    assert (workspace / "alias").is_symlink()
    files.delete_file(**ops, path="pw")
    assert not (workspace / "pw").is_symlink()
    assert sh(session, world, runtime, env_id, "test -f /etc/passwd && echo kept") == "kept\n"

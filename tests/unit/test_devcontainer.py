"""devcontainer.json as envhub reads it: the three places, comments, every lifecycle form, refusals."""

from __future__ import annotations

import pytest

from envhub.domain.devcontainer import Command, VolumeMount, find, parse, printable
from envhub.errors import DevcontainerInvalid

# A Node web shop as a team would describe it: comments, trailing commas, every lifecycle form.
NODE_SHOP = """
// Dev container for the shop (Node 22 + a cache volume).
{
  "name": "Shop",
  "image": "mcr.microsoft.com/devcontainers/javascript-node:1-22-bookworm",
  /* Features: git is honoured, docker-in-docker is not. */
  "features": {
    "ghcr.io/devcontainers/features/git:1": {},
    "ghcr.io/devcontainers/features/docker-in-docker:2": { "moby": true },
  },
  "containerEnv": {
    "NODE_ENV": "development",
    "API_BASE": "${localEnv:API_BASE:https://api.example.test}",
    "LD_PRELOAD": "/tmp/evil.so",
  },
  "remoteEnv": {
    "PATH": "${containerEnv:PATH}:${containerWorkspaceFolder}/node_modules/.bin",
    "SHOP_MODE": "${containerEnv:NODE_ENV}",
    "UNSET_ME": null,
  },
  "forwardPorts": [3000, "9229", "db:5432"],
  "portsAttributes": {
    "3000": { "label": "Storefront", "onAutoForward": "openPreview" },
    "9229": { "label": "Node debugger", "protocol": "http", "requireLocalPort": true },
    "8080-8090": { "label": "range" },
  },
  "postCreateCommand": "npm ci && npm run build",
  "postStartCommand": ["node", "scripts/migrate.js", "--yes"],
  "postAttachCommand": {
    "assets": "npm run watch:css",
    "types": ["npx", "tsc", "--watch", "--preserveWatchOutput"],
  },
  "workspaceFolder": "/workspaces/shop",
  "remoteUser": "node",
  "mounts": [
    "source=shop-node-modules,target=${containerWorkspaceFolder}/node_modules,type=volume",
    { "source": "shop-cache", "target": "/home/node/.cache", "type": "volume", "readonly": true },
    "source=${localEnv:HOME}/.ssh,target=/home/node/.ssh,type=bind,consistency=cached",
  ],
  "runArgs": ["--cap-add=SYS_PTRACE", "--security-opt", "seccomp=unconfined"],
  "privileged": true,
  "initializeCommand": "docker network create shop || true",
  "onCreateCommand": "echo created",
  "customizations": { "vscode": { "extensions": ["dbaeumer.vscode-eslint"] } },
}
"""

# A Python service built from a Dockerfile, as a second shape of file (no image).
PYTHON_BUILD = """{
  // Built from the repository's Dockerfile.
  "name": "api",
  "build": { "dockerfile": "Dockerfile", "context": "..", "args": { "PYTHON_VERSION": "3.12" } },
  "postCreateCommand": "pip install --user -r requirements.txt",
  "forwardPorts": [8000],
}"""


def test_a_commented_configuration_is_read_into_what_envhub_honours() -> None:
    config = parse(
        NODE_SHOP,
        path=".devcontainer/devcontainer.json",
        local_env={},
        base_env={"PATH": "/usr/bin:/bin", "HOME": "/workspace"},
    )
    assert config.name == "Shop"
    assert config.image == "mcr.microsoft.com/devcontainers/javascript-node:1-22-bookworm"
    assert config.container_env == {"NODE_ENV": "development", "API_BASE": "https://api.example.test"}
    # remoteEnv reads containerEnv (and the base PATH); null unsets.
    assert config.remote_env == {
        "PATH": "/usr/bin:/bin:/workspaces/shop/node_modules/.bin",
        "SHOP_MODE": "development",
    }
    assert [(p.port, p.label) for p in config.ports] == [(3000, "Storefront"), (9229, "Node debugger")]
    assert config.ports[0].on_auto_forward == "openPreview"
    assert config.workspace_folder == "/workspaces/shop"
    assert config.remote_user == "node"
    assert config.mounts == (
        VolumeMount("shop-node-modules", "/workspaces/shop/node_modules"),
        VolumeMount("shop-cache", "/home/node/.cache", read_only=True),
    )
    assert config.features == ("ghcr.io/devcontainers/features/git:1",)


def test_lifecycle_commands_keep_their_form_string_array_and_named_parallel() -> None:
    config = parse(NODE_SHOP, path=".devcontainer/devcontainer.json")
    create, start, attach = config.lifecycle
    assert create.hook == "postCreateCommand"
    assert create.commands == (Command(name="", shell="npm ci && npm run build"),)
    assert create.commands[0].argv_to_run() == ["/bin/sh", "-c", "npm ci && npm run build"]
    assert start.commands == (Command(name="", argv=("node", "scripts/migrate.js", "--yes")),)
    assert start.commands[0].argv_to_run() == ["node", "scripts/migrate.js", "--yes"]
    assert attach.hook == "postAttachCommand"
    assert [c.name for c in attach.commands] == ["assets", "types"]
    assert attach.commands[1].argv == ("npx", "tsc", "--watch", "--preserveWatchOutput")


def test_everything_not_honoured_is_listed_with_a_reason() -> None:
    config = parse(NODE_SHOP, path=".devcontainer/devcontainer.json")
    listed = {entry.key: entry.reason for entry in config.unsupported}
    assert set(listed) == {
        "containerEnv.LD_PRELOAD",
        "forwardPorts.db:5432",
        "portsAttributes.9229.requireLocalPort",
        "portsAttributes.8080-8090",
        "mounts[2]",
        "features.ghcr.io/devcontainers/features/docker-in-docker:2",
        "runArgs",
        "privileged",
        "initializeCommand",
        "onCreateCommand",
    }
    assert "host" in listed["initializeCommand"]
    assert "bind" in listed["mounts[2]"]
    # Nothing of the editor's own settings is reported, and nothing is both honoured and listed.
    assert "customizations" not in listed
    assert "LD_PRELOAD" not in config.env


def test_a_build_is_refused_without_an_image_builder_and_kept_with_one() -> None:
    refused = parse(PYTHON_BUILD, path=".devcontainer.json")
    assert refused.build is None
    [entry] = refused.unsupported
    assert entry.key == "build"
    assert "image builder" in entry.reason
    built = parse(PYTHON_BUILD, path=".devcontainer.json", builder=True)
    assert built.build is not None
    assert built.build.dockerfile == "Dockerfile"
    assert built.build.args == {"PYTHON_VERSION": "3.12"}
    assert built.unsupported == ()


def test_local_env_reads_only_what_it_is_given() -> None:
    text = '{"containerEnv": {"A": "${localEnv:HOME}", "B": "${localEnv:MISSING:fallback}"}}'
    config = parse(text, path=".devcontainer.json", local_env={"HOME": "/given"})
    assert config.container_env == {"A": "/given", "B": "fallback"}
    # envhub's own process environment is never read: without a value, empty.
    assert parse(text, path=".devcontainer.json").container_env == {"A": "", "B": "fallback"}


def test_devcontainer_id_names_the_environment_when_the_runtime_gives_one() -> None:
    text = '{"mounts": ["source=cache-${devcontainerId},target=/cache,type=volume"]}'
    assert parse(text, path=".devcontainer.json", identity="envhub-7").mounts == (
        VolumeMount("cache-envhub-7", "/cache"),
    )


def test_a_runtime_s_workspace_folder_names_the_real_place() -> None:
    text = '{"workspaceFolder": "/workspaces/x", "remoteEnv": {"W": "${containerWorkspaceFolder}"}}'
    assert parse(text, path=".devcontainer.json", folder="/workspace").remote_env == {"W": "/workspace"}


@pytest.mark.parametrize(
    ("text", "reason", "key"),
    [
        ('{"image": "x", ', "syntax", None),
        ("[1, 2]", "not_object", None),
        ('{"image": 3}', "bad_value", "image"),
        ('{"containerEnv": {"1BAD": "x"}}', "bad_value", "containerEnv"),
        ('{"postStartCommand": 7}', "bad_value", "postStartCommand"),
        ('{"postAttachCommand": {"a": []}}', "bad_value", "postAttachCommand.a"),
        ('{"forwardPorts": 3000}', "bad_value", "forwardPorts"),
        ('{"portsAttributes": {"3000": {"protocol": "ftp"}}, "forwardPorts": [3000]}', "bad_value", None),
        ('{"workspaceFolder": "workspaces/x"}', "bad_value", "workspaceFolder"),
        ('{"remoteUser": "root; rm -rf /"}', "bad_value", "remoteUser"),
        ('{"mounts": ["source=v,target=relative,type=volume"]}', "bad_value", "mounts[0]"),
        ('{"containerEnv": {"A": "${env:X}${devcontainerId}"}}', "bad_variable", None),
        ('{"build": {"context": "."}}', "bad_value", "build.dockerfile"),
    ],
)
def test_a_broken_file_is_refused_naming_the_file_and_key(text: str, reason: str, key: str | None) -> None:
    with pytest.raises(DevcontainerInvalid) as caught:
        parse(text, path=".devcontainer/devcontainer.json")
    assert caught.value.code == "devcontainer_invalid"
    assert caught.value.details["reason"] == reason
    if key is not None:
        assert caught.value.details["key"] == key
    if reason != "bad_variable":
        assert caught.value.message.startswith(".devcontainer/devcontainer.json: ")


def test_the_configuration_is_found_in_its_three_places() -> None:
    files = {
        ".devcontainer/devcontainer.json": "{}",
        ".devcontainer.json": '{"name": "root"}',
        ".devcontainer/python/devcontainer.json": '{"name": "python"}',
    }
    assert find(files.get) == (".devcontainer/devcontainer.json", "{}")
    del files[".devcontainer/devcontainer.json"]
    assert find(files.get) == (".devcontainer.json", '{"name": "root"}')
    assert find(files.get, name="python") == (".devcontainer/python/devcontainer.json", '{"name": "python"}')
    assert find({}.get) is None


def test_a_named_configuration_must_exist_and_be_a_plain_name() -> None:
    with pytest.raises(DevcontainerInvalid) as missing:
        find({}.get, name="node")
    assert missing.value.details["reason"] == "missing"
    for bad in ("../etc", "a/b", ".hidden", "a b"):
        with pytest.raises(DevcontainerInvalid) as refused:
            find({}.get, name=bad)
        assert refused.value.details["reason"] == "bad_name"


def test_a_huge_file_is_refused() -> None:
    with pytest.raises(DevcontainerInvalid) as caught:
        find({".devcontainer.json": "{}" + " " * 300_000}.get)
    assert caught.value.details["reason"] == "too_large"


def test_the_summary_is_plain_data() -> None:
    summary = parse(NODE_SHOP, path=".devcontainer/devcontainer.json").summary()
    assert summary["path"] == ".devcontainer/devcontainer.json"
    assert summary["ports"][0] == {
        "port": 3000,
        "label": "Storefront",
        "protocol": "http",
        "on_auto_forward": "openPreview",
    }
    assert any(entry["key"] == "runArgs" and entry["reason"] for entry in summary["unsupported"])
    assert summary["lifecycle"][2] == {"hook": "postAttachCommand", "commands": ["assets", "types"]}


def test_repository_text_in_what_is_listed_carries_no_terminal_escapes() -> None:
    text = (
        '{"\\u001b]52;c;ZXZpbA==\\u0007sneaky": 1, "forwardPorts": [3000],'
        ' "portsAttributes": {"3000": {"label": "Web\\u001b[2J"}}}'
    )
    config = parse(text, path=".devcontainer.json")
    assert [entry.key for entry in config.unsupported] == ["sneaky"]
    assert config.ports[0].label == "Web"
    assert printable("ok\tline \x1b[31mred\x1b[0m\x07") == "ok\tline red"

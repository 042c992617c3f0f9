"""The dashboard, end to end: a person creates a project and an environment, opens
its public URL, deletes it, and envhub cleans up after it.

Every wait is for an outcome (Playwright's expect / wait_for with generous
deadlines); nothing asserts on speed. Pages are never reloaded while waiting,
so a phase appearing proves the live push (or its periodic fallback) works.
"""

from __future__ import annotations

import json
import re
import secrets

import psutil
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Envhub
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]

# Long enough for a cold worker and the health check's own retries.
PHASE_TIMEOUT = 180_000
HELLO = "hello from envhub"
SHOP_SERVICES = """\
- name: web
  image: ghcr.io/acme/shop:1.4.2
  ports: [8080]
  health: {path: /healthz}
- name: worker
  image: ghcr.io/acme/shop:1.4.2
  command: [python, -m, shop.worker]
  replicas: 2
"""
SHOP_MANIFESTS = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: shop-settings}
data: {FEATURE_CHECKOUT: "on"}
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def create_project(
    page: Page, name: str, *, command: str, description: str = "", services: str = "", manifests: str = ""
) -> int:
    """Create a project through the "New project" dialog; returns its id."""
    page.goto("/")
    page.locator("#new-project").click()
    page.locator("#project-name").fill(name)
    if description:
        page.locator("#project-description").fill(description)
    page.locator("#project-command").fill(command)
    if services or manifests:
        page.locator("#toggle-workloads").click()
        page.locator("#project-services").fill(services)
        page.locator("#project-manifests").fill(manifests)
    page.locator("#create-project").click()
    page.wait_for_url(re.compile(r".*/projects/\d+$"))
    expect(page.locator("#page-title")).to_have_text(name)
    return int(page.url.rsplit("/", 1)[1])


def create_environment(page: Page) -> tuple[str, int]:
    """One-click "Create environment" on the project page; returns (name, id)."""
    before = page.locator(".env-row").count()
    page.locator("#create-environment").click()
    expect(page.locator(".env-row")).to_have_count(before + 1)
    link = page.locator(".env-link").first  # newest first
    name = link.inner_text()
    href = link.get_attribute("href") or ""
    return name, int(href.rsplit("/", 1)[1])


def process_tree(pid: int, create_time: float) -> list[psutil.Process]:
    root = psutil.Process(pid)
    assert abs(root.create_time() - create_time) < 1.0, "state.json names a different process"
    return [root, *root.children(recursive=True)]


def running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_environment_lifecycle(page: Page, envhub_server: Envhub) -> None:
    project = unique("web")
    command = f"echo '<h1>{HELLO}</h1>' > index.html && python3 -m http.server $PORT"
    project_id = create_project(page, project, command=command, description="served by http.server")

    name, environment_id = create_environment(page)
    page.locator(".env-link").first.click()
    page.wait_for_url(f"**/projects/{project_id}/environments/{environment_id}")
    expect(page.locator("#phase")).to_contain_text("ready", timeout=PHASE_TIMEOUT)
    expect(page.locator(".step[data-key=publish][data-status=done]")).to_be_visible()

    # The process tree the local runtime started, read before it is deleted.
    env_dir = envhub_server.data_dir / "envs" / str(environment_id)
    state = json.loads((env_dir / "state.json").read_text())
    tree = process_tree(state["pid"], state["create_time"])
    assert all(running(proc) for proc in tree)
    assert (env_dir / "workspace").is_dir()

    # The Workloads panel shows that process tree, in the environment's workspace.
    workloads = page.locator("#workloads")
    location = workloads.locator("#workloads-location")
    expect(location).to_contain_text("Workspace")
    expect(location).to_contain_text(str(env_dir / "workspace"))
    expect(workloads.locator(".workload-pod")).to_contain_text(f"pid {state['pid']}")
    expect(workloads.locator(".workload-pod")).to_contain_text("Running")
    main = workloads.locator(".workload-row[data-container=main]")
    expect(main).to_have_attribute("data-state", "running")
    expect(main.locator(".ready-dot")).to_have_attribute("data-ready", "true")
    expect(workloads.locator("#events-empty")).to_contain_text("The local runtime records no events")

    public_url = page.locator("#public-url").get_attribute("href") or ""
    assert public_url.startswith(f"http://{name}.{project}.")
    app = page.context.new_page()
    app.goto(public_url)
    expect(app.locator("h1")).to_have_text(HELLO)
    app.close()

    page.locator("#delete-environment").click()
    page.locator("#confirm-delete").click()
    expect(page.locator("#phase")).to_contain_text("deleted", timeout=PHASE_TIMEOUT)
    expect(page.locator("#deleted")).to_be_visible()
    expect(page.locator("#workloads")).to_have_count(0)  # nothing left to look inside

    wait_for(
        lambda: not any(running(proc) for proc in tree),
        timeout=60,
        what="the environment's processes to exit",
    )
    assert not (env_dir / "workspace").exists()
    assert not env_dir.exists()

    # Gone from the project's list, and its URL no longer reaches the app.
    page.goto(f"/projects/{project_id}")
    expect(page.locator(".env-row")).to_have_count(0)
    app = page.context.new_page()
    app.goto(public_url)
    expect(app.locator("body")).not_to_contain_text(HELLO)
    app.close()


def test_invalid_project_name_shows_the_error(page: Page) -> None:
    page.goto("/")
    page.locator("#new-project").click()
    page.locator("#project-name").fill("Not_Valid")
    page.locator("#create-project").click()
    error = page.locator(".field-error")
    expect(error).to_contain_text("project name 'Not_Valid' must be lower-case")
    expect(page.locator("#project-name")).to_be_visible()  # the dialog stays open

    # An error only the service can find (the name is taken) lands on the same field.
    taken = unique("taken")
    create_project(page, taken, command="python3 -m http.server $PORT")
    page.goto("/")
    page.locator("#new-project").click()
    page.locator("#project-name").fill(taken)
    page.locator("#project-name").press("Enter")  # Enter submits the form too
    expect(error).to_contain_text(f"a project named '{taken}' already exists")


def test_workload_errors_show_next_to_their_field(page: Page) -> None:
    name = unique("kube")
    page.goto("/")
    page.locator("#new-project").click()
    page.locator("#project-name").fill(name)
    page.locator("#toggle-workloads").click()
    services = page.locator("#field-services")
    manifests = page.locator("#field-manifests")

    # YAML that does not parse is caught in the dashboard, at once when leaving the field.
    page.locator("#project-services").fill("- name: web\n  image: [ghcr.io/acme/shop")
    page.locator("#project-manifests").click()
    expect(services.locator(".field-error")).to_contain_text("not valid YAML (line 2")
    page.locator("#create-project").click()
    expect(services.locator(".field-error")).to_contain_text("not valid YAML (line 2")

    # Parsed, but refused by the service: the message names the service and its field.
    page.locator("#project-services").fill("- name: web\n  image: ghcr.io/acme/shop:1\n  ports: [http]")
    expect(services.locator(".field-error")).to_have_count(0)  # editing clears the old message
    page.locator("#create-project").click()
    expect(services.locator(".field-error")).to_contain_text("web (service 1): ports #1")

    # A broken manifest document is reported on the manifests field, by its number.
    page.locator("#project-services").fill("- name: web\n  image: ghcr.io/acme/shop:1\n  ports: [8080]")
    page.locator("#project-manifests").fill(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n---\nkind: Secret\n"
    )
    page.locator("#create-project").click()
    expect(manifests.locator(".field-error")).to_contain_text("document 2 (Secret/?) has no apiVersion")
    expect(services.locator(".field-error")).to_have_count(0)

    # Fixed: the project is created, and its defaults list the services and manifests.
    page.locator("#project-manifests").fill("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n")
    page.locator("#create-project").click()
    page.wait_for_url(re.compile(r".*/projects/\d+$"))
    expect(page.locator("#defaults-services .service-row")).to_have_count(1)
    expect(page.locator("#defaults-services")).to_contain_text("ghcr.io/acme/shop:1")
    expect(page.locator("#defaults-services")).to_contain_text("8080")
    expect(page.locator("#defaults-manifests")).to_have_text("Raw manifests: 1 document")


def test_unknown_ids_show_not_found(page: Page) -> None:
    page.goto("/projects/987654")
    expect(page.locator("#not-found")).to_have_text("Project not found")
    page.goto("/projects/987654/environments/1")
    expect(page.locator("#not-found")).to_have_text("Environment not found")


def test_color_mode_toggle(page: Page) -> None:
    page.goto("/")
    html = page.locator("html")
    expect(html).not_to_have_class(re.compile(r"\bdark\b"))
    page.locator("#color-mode-toggle").click()
    expect(html).to_have_class(re.compile(r"\bdark\b"))
    page.locator("#color-mode-toggle").click()
    expect(html).not_to_have_class(re.compile(r"\bdark\b"))

"""The Reflex app: the dashboard, with envhub's API and gateway around it."""

import reflex as rx

from envhub.api import terminal
from envhub.api.app import create_api
from envhub.ui.pages import environment, project, projects
from envhub.ui.state import AuthState

app = rx.App(
    api_transformer=create_api(),
    stylesheets=["/envhub.css"],
    head_components=[rx.el.link(rel="icon", href="/favicon.svg", type="image/svg+xml")],
)

app.register_lifespan_task(terminal.lifespan)

app.add_page(
    projects.page,
    route="/",
    title="Projects · envhub",
    on_load=[AuthState.sign_in, projects.ProjectsState.load],
)
app.add_page(
    project.page,
    route="/projects/[project_id]",
    title="Project · envhub",
    on_load=[AuthState.sign_in, project.ProjectState.load],
)
app.add_page(
    environment.page,
    route="/projects/[project_id]/environments/[environment_id]",
    title="Environment · envhub",
    on_load=[AuthState.sign_in, environment.EnvironmentState.load],
)

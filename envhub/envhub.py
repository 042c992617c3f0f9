"""The Reflex app: the dashboard, with envhub's API and gateway around it."""

import reflex as rx

from envhub import logs, wiring
from envhub.api.app import create_api, serving
from envhub.config import get_settings
from envhub.ui.pages import (
    audit,
    deployments,
    device,
    environment,
    environment_access,
    environment_backups,
    environment_releases,
    environments,
    project,
    project_github,
    project_secrets,
    projects,
    sign_in,
    team,
    team_costs,
    teams,
    tokens,
)
from envhub.ui.state import AuthState

wiring.install()
if get_settings().log_format == logs.JSON:
    # envhub's own records; Reflex and Granian write theirs as JSON with REFLEX_LOG_JSON, which
    # the launcher and the image's entry point set from ENVHUB_LOG_FORMAT.
    logs.configure(logs.JSON, process="web", text="")

api = create_api()
app = rx.App(
    api_transformer=api,
    stylesheets=["/envhub.css"],
    head_components=[rx.el.link(rel="icon", href="/favicon.svg", type="image/svg+xml")],
)

app.register_lifespan_task(serving, api=api)

# Every page but the sign-in page starts by asking who is there (AuthState.sign_in),
# which sends anyone without a live session to /sign-in.
app.add_page(sign_in.page, route="/sign-in", title="Sign in · envhub", on_load=sign_in.SignInState.load)
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
    on_load=[
        AuthState.sign_in,
        project.ProjectState.load,
        project_github.ProjectGithubState.load,
        project_secrets.ProjectSecretsState.load,
    ],
)
app.add_page(
    deployments.page,
    route="/projects/[project_id]/deployments",
    title="Deployments · envhub",
    on_load=[AuthState.sign_in, deployments.DeploymentsState.load],
)
app.add_page(
    environment.page,
    route="/projects/[project_id]/environments/[environment_id]",
    title="Environment · envhub",
    on_load=[
        AuthState.sign_in,
        environment.EnvironmentState.load,
        environment_access.EnvironmentAccessState.load,
        environment_releases.EnvironmentReleasesState.load,
        environment_backups.EnvironmentBackupsState.load,
    ],
)
app.add_page(
    teams.teams_page,
    route="/teams",
    title="Teams · envhub",
    on_load=[AuthState.sign_in, teams.TeamsState.load],
)
app.add_page(
    team.team_page,
    route="/teams/[team_id]",
    title="Team · envhub",
    on_load=[AuthState.sign_in, team.TeamState.load],
)
app.add_page(
    team_costs.page,
    route="/teams/[team_id]/costs",
    title="Usage and cost · envhub",
    on_load=[AuthState.sign_in, team_costs.TeamCostsState.load],
)
app.add_page(
    tokens.page,
    route="/tokens",
    title="Tokens · envhub",
    on_load=[AuthState.sign_in, tokens.TokensState.load],
)
app.add_page(
    audit.page, route="/audit", title="Audit log · envhub", on_load=[AuthState.sign_in, audit.AuditState.load]
)
app.add_page(
    device.page,
    route="/device",
    title="Device sign-in · envhub",
    on_load=[AuthState.sign_in, device.DeviceState.load],
)
app.add_page(
    environments.page,
    route="/environments",
    title="Environments · envhub",
    on_load=[AuthState.sign_in, environments.EnvironmentsState.load],
)

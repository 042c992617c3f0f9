"""The Reflex app: the dashboard, with envhub's API and gateway around it."""

import reflex as rx

from envhub.api.app import create_api

app = rx.App(api_transformer=create_api())


@rx.page(route="/")
def index() -> rx.Component:
    return rx.text("hello")

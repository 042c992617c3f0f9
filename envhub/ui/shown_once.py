"""Values the dashboard shows exactly once (a new token, a webhook secret): the tab keeps them, no page state.

Whatever a page state holds, Reflex sends again: each hydration (a reload,
a reconnect) sends the whole state to the browser before the page's
``load`` can clear anything, and Redis keeps it between events. So a value
shown once is no state var. The event that makes it returns
:meth:`ShownOnce.show`, which hands it to a client-side variable (React
state in the tab) and keeps no copy on the server; a reload starts the tab
without it, and nothing on the server is left to send it again.

The client-side variable is Reflex's ``ClientStateVar``, still under
``reflex.experimental`` in the Reflex that requirements.txt pins.
"""

from __future__ import annotations

import reflex as rx
from reflex.experimental.client_state import ClientStateVar


class ShownOnce:
    """One value a page shows once; a module-level constant of that page.

    ``name`` becomes a JavaScript identifier of the compiled app: letters,
    digits and ``_``, and unique among the pages.
    """

    def __init__(self, name: str) -> None:
        self._var = ClientStateVar.create(f"once_{name}", default="")

    @property
    def value(self) -> rx.Var[str]:
        """What to render (empty when nothing is shown)."""
        return self._var.value.to(str)

    @property
    def shown(self) -> rx.Var[bool]:
        return self.value != ""

    def show(self, value: str) -> rx.event.EventSpec:
        """Returned by the event that made ``value``: the tab gets it, and the server keeps nothing."""
        return self._var.push(value)

    def forget(self) -> rx.event.EventSpec:
        """Returned by an event after which the value no longer applies (a page load, a disconnect)."""
        return self._var.push("")

    @property
    def dismiss(self) -> rx.Var:
        """An event trigger's action ("I have copied it", a dialog closing): the tab drops the value."""
        return self._var.set_value("")

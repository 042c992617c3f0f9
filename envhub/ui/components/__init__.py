"""Functions returning rx.Component, shared by the pages."""

"""The choices of ``url_access``, said as an enum, a schema type and words for people, are the same."""

from __future__ import annotations

from typing import get_args

from envhub.domain.url_access import URL_ACCESS_LABELS, UrlAccess, UrlAccessName


def test_the_schema_type_and_the_labels_name_every_choice() -> None:
    assert set(get_args(UrlAccessName)) == {access.value for access in UrlAccess}
    assert set(URL_ACCESS_LABELS) == set(UrlAccess)

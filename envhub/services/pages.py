"""Where a page of results is, as every face shows it."""

from __future__ import annotations

from typing import Any, TypedDict

from envhub.services.common import Page


class PageInfo(TypedDict):
    offset: int
    limit: int
    total: int
    has_next: bool
    label: str  # "11–20 of 42", or "No results"


def page_label(offset: int, count: int, total: int) -> str:
    if total == 0:
        return "No results"
    return f"{offset + 1}–{offset + count} of {total}"


def page_info(page: Page[Any]) -> PageInfo:
    return PageInfo(
        offset=page.offset,
        limit=page.limit,
        total=page.total,
        has_next=page.has_next,
        label=page_label(page.offset, len(page.items), page.total),
    )

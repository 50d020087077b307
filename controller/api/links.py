"""The `Link: <...>; rel="next"` header of a listing that answers a plain JSON list
(the legacy GET /tasks/, GET /api/v1/rollouts): its body stays the list it always was,
and the URL of the next page rides beside it."""

from __future__ import annotations

from fastapi import Request, Response


def link_next_page(request: Request, response: Response, next_cursor: str | None) -> None:
    """Point to the page after this one (the same query with `cursor`), if there is one."""
    if next_cursor:
        next_url = request.url.include_query_params(cursor=next_cursor)
        response.headers["Link"] = f'<{next_url}>; rel="next"'

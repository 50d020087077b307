"""A person opening the API's documentation pages in a browser without a session goes
to the dashboard's sign-in, and back to the page after it; a script still gets the
JSON 401 it can read."""

from __future__ import annotations

from fastapi.testclient import TestClient

HTML = {"Accept": "text/html,application/xhtml+xml"}


def test_a_browser_opening_docs_is_sent_to_sign_in_and_back(app) -> None:  # type: ignore[no-untyped-def]
    app.state.sign_in_path = "/ui/login"  # as mount_dashboard sets it
    with TestClient(app, follow_redirects=False) as client:
        for page in ("/docs", "/redoc"):
            answer = client.get(page, headers=HTML)
            assert answer.status_code == 303, answer.text
            assert answer.headers["location"] == f"/ui/login?next={page}"
        script = client.get("/docs")  # no text/html: a script
        assert script.status_code == 401
        assert script.json()["error"]["code"] == "unauthorized"
        assert client.get("/openapi.json", headers=HTML).status_code == 401


def test_without_the_dashboard_a_browser_gets_the_401(app) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app, follow_redirects=False) as client:
        assert client.get("/docs", headers=HTML).status_code == 401


def test_the_sign_in_leads_back_to_the_docs_and_to_dashboard_pages() -> None:
    from tme.ui.pages.login import after_sign_in

    assert after_sign_in("/docs") == "/docs"
    assert after_sign_in("/redoc") == "/redoc"
    assert after_sign_in("//evil.example/x") != "//evil.example/x"
    assert after_sign_in("/tasks").endswith("/tasks")

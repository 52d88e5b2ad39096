"""The JupyterHub client against a real JupyterHub (CHP from npm, mocksu single-user)."""

from __future__ import annotations

import shutil

import pytest

from support import jupyterhub
from wod_backend.remote import hub as hubmod
from wod_backend.config import JupyterHub
from wod_backend.remote.http import HttpError

pytestmark = pytest.mark.skipif(shutil.which("configurable-http-proxy") is None,
                                reason="needs configurable-http-proxy")


@pytest.fixture(scope="module")
def running_hub(tmp_path_factory):
    h = jupyterhub.start(tmp_path_factory.mktemp("hub"))
    yield h
    h.stop()


def client(running_hub, tmp_path, token=None, url=None) -> hubmod.Hub:
    tf = tmp_path / "hub.token"
    tf.write_text((token or running_hub.token) + "\n")
    tf.chmod(0o600)
    return hubmod.Hub(JupyterHub(url=url or running_hub.url, token_file=tf, timeout=30))


def test_users_and_servers_idempotent(running_hub, tmp_path):
    hub = client(running_hub, tmp_path)
    assert hub.ensure_user("student31") == hubmod.CREATED
    assert hub.ensure_user("student31") == hubmod.EXISTS
    assert hub.start("student31") in (hubmod.STARTED, hubmod.PENDING)
    assert running_hub.wait_server("student31", ready=True)
    assert hub.server_state("student31") == "ready"
    assert hub.start("student31") == hubmod.RUNNING
    assert hub.stop("student31") in (hubmod.STOPPED, hubmod.PENDING)
    assert running_hub.wait_server("student31", ready=False)
    # JupyterHub 6 answers 204 here, older ones 400: either way it is not an error
    assert hub.stop("student31") in (hubmod.STOPPED, hubmod.NOT_RUNNING)
    assert hub.server_state("student31") is None
    assert hub.server_state("nobody-here") is None


def test_wait_for_pending_start(running_hub, tmp_path):
    hub = client(running_hub, tmp_path)
    hub.ensure_user("student32")
    hub.start("student32")
    assert hub.wait_spawn("student32", 60).startswith("Server ready at")
    assert hub.server_state("student32") == "ready"
    assert hub.wait_spawn("student32", 5).startswith("Server ready at")  # ready already
    hub.stop("student32")
    assert hub.wait_stopped("student32", 30)
    with pytest.raises(HttpError) as info:  # nothing starting, nothing running
        hub.wait_spawn("student32", 5)
    assert info.value.temporary and "spawn failed: the hub has no server" in str(info.value)


def test_bad_token_is_a_permanent_error(running_hub, tmp_path):
    hub = client(running_hub, tmp_path, token="not-the-token")
    with pytest.raises(HttpError) as info:
        hub.ensure_user("student33")
    assert info.value.status == 403 and not info.value.temporary


def test_unreachable_hub_is_temporary(tmp_path):
    from support.slapd import free_port

    tf = tmp_path / "t"
    tf.write_text("x")
    hub = hubmod.Hub(JupyterHub(url=f"http://127.0.0.1:{free_port()}", token_file=tf,
                                timeout=2))
    with pytest.raises(HttpError) as info:
        hub.start("student1")
    assert info.value.temporary and "cannot connect" in str(info.value)


def test_api_url_forms():
    assert hubmod.api_url("http://h:8000") == "http://h:8000/hub/api"
    assert hubmod.api_url("http://h:8000/hub/api/") == "http://h:8000/hub/api"

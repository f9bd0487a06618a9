"""The page's server under load and abuse: 200 clients at once, idle and departing clients,
methods it does not take, and any JSON body (hypothesis); never a 500, never a traceback."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo import serve
from zoo.generation import PageGenerator
from zoo.serve import make_server
from zoo.experiment import train_and_evaluate
from zoo.trained_run import Run

CLIENTS = 200


@pytest.fixture(scope="module")
def server(registry, book, tmp_path_factory):
    """A briefly trained CVAE served in-process; yields (host, port)."""
    run = tmp_path_factory.mktemp("serve") / "cvae"
    recipe = book.resolve("cvae_mlp", registry, ["train.steps=20", "train.log_every=20", "train.checkpoint_every=20"])
    train_and_evaluate(recipe, run, registry, progress=False)
    loaded = Run.load(run, registry)
    generator = PageGenerator(loaded.experiment, loaded.graphdef, loaded.params, loaded.step)
    generator.warm_up()
    page = make_server(generator, port=0)
    thread = threading.Thread(target=page.serve_forever, daemon=True)
    thread.start()
    yield page.server_address[:2]
    page.shutdown()
    page.server_close()


def request(address, method: str, path: str, body: bytes = b"", timeout: float = 120) -> tuple[int, dict, dict]:
    """(status, headers, JSON answer) of one request on a fresh connection."""
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        connection.request(method, path, body=body or None, headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), json.loads(answer.read() or b"null")
    finally:
        connection.close()


def test_two_hundred_simultaneous_clients_are_all_answered(server):
    start = threading.Barrier(CLIENTS)
    statuses: list = [None] * CLIENTS

    def client(index: int) -> None:
        start.wait()
        try:
            statuses[index] = request(
                server, "POST", "/api/sample", json.dumps({"text": str(index % 10), "seed": index}).encode()
            )[0]
        except OSError as exc:
            statuses[index] = type(exc).__name__

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert statuses == [200] * CLIENTS, {s: statuses.count(s) for s in set(statuses)}


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"])
@pytest.mark.parametrize("path", ["/", "/api/sample"])
def test_a_method_the_page_does_not_take_is_405_in_json(server, method, path):
    status, headers, answer = request(server, method, path, b'{"text": "1"}' if method in ("PUT", "PATCH") else b"")
    assert status == 405 and headers["Allow"] == "GET, POST"
    assert answer == {"error": f"method {method} is not allowed; use GET or POST"}


def test_a_digit_that_is_not_a_decimal_digit_is_400(server):
    status, _, answer = request(server, "POST", "/api/sample", json.dumps({"text": "²"}).encode())
    assert status == 400 and "unknown class '²'" in answer["error"]


def test_an_idle_connection_is_closed_after_the_timeout(server, monkeypatch):
    assert serve.PageHandler.timeout == serve.IDLE_TIMEOUT_SECONDS <= 60
    monkeypatch.setattr(serve.PageHandler, "timeout", 1)
    with socket.create_connection(server, timeout=10) as idle:
        began = time.monotonic()
        assert idle.recv(1) == b""  # the server closed it
        assert 0.9 <= time.monotonic() - began < 8


def test_clients_that_leave_early_print_no_traceback(server, capfd):
    for index in range(40):
        with socket.create_connection(server, timeout=10) as rude:
            if index % 2:
                rude.sendall(b'POST /api/sample HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"te')  # then leaves mid-body
            else:  # reads its answer, then resets the kept-alive connection the server waits on
                rude.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\n\r\n")
                assert rude.recv(65536).startswith(b"HTTP/1.1 200")
            rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not a polite close
    time.sleep(1.0)
    assert request(server, "GET", "/api/info")[0] == 200  # still serving
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception" not in err, err[-2000:]


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=20)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
BODIES = st.one_of(
    st.fixed_dictionaries({}, optional={"text": JSON_VALUES, "temperature": JSON_VALUES, "seed": JSON_VALUES}),
    JSON_VALUES,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/api/sample", "/api/grid", "/api/walk", "/api/nothing"]), body=BODIES)
def test_any_json_body_gets_an_answer_never_a_500(server, path, body):
    status, _, answer = request(server, "POST", path, json.dumps(body).encode())
    assert status in (200, 400, 404, 413), (status, answer)
    assert isinstance(answer, dict) and (status == 200 or isinstance(answer.get("error"), str)), answer

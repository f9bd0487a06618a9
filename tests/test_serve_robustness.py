"""The page's server under load and abuse: 200 clients at once, a thousand silent connections,
idle, slow and departing clients, more clients than it takes, garbage request lines, methods it
does not take, and any JSON body (hypothesis); never a 500, never a traceback."""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import socket
import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo.web import serve
from zoo.web.generation import PageGenerator
from zoo.web.serve import make_server
from zoo.evaluation.trained_run import Run

CLIENTS = 200


@pytest.fixture(scope="module")
def generator(registry, tiny_cvae_run):
    """The page's generator of a briefly trained CVAE (the session's shared one), compiled."""
    loaded = Run.load(tiny_cvae_run, registry)
    generator = PageGenerator(loaded.experiment, loaded.graphdef, loaded.params, loaded.step)
    generator.warm_up()
    return generator


@contextlib.contextmanager
def serving(generator, **options):
    """The page served in-process on a free port with `make_server`'s options; yields (host, port)."""
    page = make_server(generator, port=0, **options)
    thread = threading.Thread(target=page.serve_forever, daemon=True)
    thread.start()
    try:
        yield page.server_address[:2]
    finally:
        page.shutdown()
        page.server_close()


@pytest.fixture(scope="module")
def server(generator):
    """The page served with the default options; yields (host, port)."""
    with serving(generator) as address:
        yield address


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


def closed_after(connection: socket.socket) -> float:
    """Seconds until the server closes `connection` (reading and dropping what it says first)."""
    began = time.monotonic()
    while connection.recv(65536):
        pass
    return time.monotonic() - began


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # a connection that says nothing
        b"GET /api/info HTTP/1.1\r\nHost: x\r\n",  # a request whose headers never end
        b"GET /api/info HTTP/1.1\r\nHost: x\r\n\r\n",  # a kept-alive connection, idle after its answer
    ],
    ids=["silent", "headers never end", "idle after an answer"],
)
def test_a_silent_client_is_closed_after_the_request_timeout(generator, sent):
    assert 1 <= serve.REQUEST_TIMEOUT_SECONDS <= 10
    with serving(generator, request_timeout=1.0) as address, socket.create_connection(address, timeout=10) as client:
        client.sendall(sent)
        assert 0.9 <= closed_after(client) < 6


def test_more_requests_than_it_takes_are_answered_503_and_it_recovers(generator):
    with serving(generator, max_connections=2, request_timeout=3.0) as address:
        slow = [socket.create_connection(address, timeout=10) for _ in range(2)]
        for client in slow:  # requests begun, never finished: each holds one of the two handlers
            client.sendall(b"POST /api/sample HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.5)
        status, headers, answer = request(address, "GET", "/api/info", timeout=10)
        assert status == 503 and headers["Retry-After"] == "1" and answer["error"].startswith("busy: "), answer
        for client in slow:
            client.close()
        time.sleep(0.5)
        assert request(address, "GET", "/api/info", timeout=10)[0] == 200


@pytest.mark.parametrize(
    "line",
    [b"GARBAGE", b"\x00\xff\xfe garbage", b"GET", b"GET / FTP/1.1", b"A B C D", b"POST /api/sample"],
    ids=["one word", "binary", "a method alone", "another protocol", "four words", "HTTP/0.9 POST"],
)
def test_a_garbage_request_line_is_answered_400(server, line):
    with socket.create_connection(server, timeout=10) as client:
        client.sendall(line + b"\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert "error" in json.loads(body)


def test_a_thousand_silent_connections_pin_no_thread_and_requests_go_on(server):
    """Each silent connection waits in the server's selector: no thread, and the page keeps answering."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2600:  # this process holds both ends of every connection
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    threads_before = threading.active_count()
    silent = []
    try:
        for index in range(1000):
            silent.append(socket.create_connection(server, timeout=10))
            if index % 100 == 99:  # requests keep being answered while the silent ones pile up
                assert request(server, "GET", "/api/info", timeout=10)[0] == 200
        answered = request(server, "POST", "/api/sample", json.dumps({"text": "12", "seed": 1}).encode(), timeout=30)
        assert answered[0] == 200
        assert threading.active_count() <= threads_before + 4, threading.active_count() - threads_before
    finally:
        for connection in silent:
            connection.close()


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

"""`zoo serve RUN`: the handwriting page and its small JSON API, on the standard library's HTTP server.

    GET  /             the page (zoo/web/index.html) and its static assets
    GET  /api/info     kind, class names, latent size, image shape, limits
    POST /api/sample   {"text": "2026", "temperature": 1.0, "seed": 3} -> images
    POST /api/grid     {"temperature": 1.0, "seed": 3} -> an 8 x 8 grid (unconditional models)
    POST /api/walk     {} -> the 2-D latent walk (unconditional models)

Every bad request gets JSON {"error": "..."} with a 4xx code; an unexpected
exception in a handler answers 500 and the server goes on serving.

A connection costs a thread only once its request has begun to arrive: until
then it waits in a selector (`WaitingRoom`), for at most the request timeout,
so silent connections pin nothing. At most `max_connections` requests are
handled at once; one more is answered 503 at once, as is a connection that
finds the waiting room full.
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Callable

from zoo.errors import ZooError
from zoo.web.generation import PageGenerator, RequestError

MAX_BODY_BYTES = 16 * 1024
DISCARD_LIMIT = 1024 * 1024  # a refused body up to this size is read before answering
BACKEND_MARK = "<!-- backend scripts -->"  # where export-web puts its in-browser model; the server leaves it empty
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
SERVED_ASSETS = ("app.js", "style.css")


def web_asset(name: str) -> str:
    """The text of one file of the page, shipped as package data in zoo/web/."""
    return (resources.files("zoo") / "web" / name).read_text(encoding="utf-8")


LISTEN_BACKLOG = 512  # connections the kernel queues before accept(); the standard library's 5 resets bursts
REQUEST_TIMEOUT_SECONDS = 5.0  # silence this long from a client (before or inside a request) closes its connection
MAX_CONNECTIONS = 256  # requests handled at once, each by a thread; one more is answered 503
WAITING_LIMIT = 4096  # connections that have sent nothing yet; each holds a file descriptor, no thread
ALLOWED_METHODS = ("GET", "POST")


class PageServer(ThreadingHTTPServer):
    """An HTTP server bound to one PageGenerator; generation is serialised by a lock."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        address: tuple[str, int],
        generator: PageGenerator,
        *,
        quiet: bool = True,
        request_timeout: float = REQUEST_TIMEOUT_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
    ):
        super().__init__(address, PageHandler)
        self.generator = generator
        self.quiet = quiet
        self.request_timeout = request_timeout
        self.handler_slots = threading.BoundedSemaphore(max_connections)
        self.waiting_room = WaitingRoom(self.dispatch, request_timeout, waiting_limit(max_connections))
        self.generation_lock = threading.Lock()  # XLA already uses every core; queue requests instead
        self.routes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "/api/sample": lambda body: generator.sample(
                body.get("text"), body.get("temperature", 1.0), body.get("seed", 0)
            ),
            "/api/grid": lambda body: generator.grid(body.get("temperature", 1.0), body.get("seed", 0)),
            "/api/walk": lambda body: generator.walk_images(),
        }

    def process_request(self, request, client_address) -> None:
        """An accepted connection waits for its request in the waiting room (no thread yet)."""
        if not self.waiting_room.admit(request, client_address):
            self.refuse_busy(request, "too many connections are waiting")

    def dispatch(self, request, client_address) -> None:
        """The connection's request has begun to arrive: a thread handles it, if one of the
        `max_connections` is free."""
        if not self.handler_slots.acquire(blocking=False):
            self.refuse_busy(request, "the server is handling as many requests as it takes")
            return
        try:
            super().process_request(request, client_address)  # ThreadingMixIn: a thread
        except BaseException:
            self.handler_slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.handler_slots.release()

    def refuse_busy(self, request, why: str) -> None:
        """503 in JSON, written without a thread (a few hundred bytes, a short timeout), then closed."""
        body = json.dumps({"error": f"busy: {why}; try again"}).encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        )
        try:
            request.settimeout(1.0)
            request.sendall(head.encode() + body)
        except OSError:  # the client is gone, or reads nothing
            pass
        self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self.waiting_room.close()

    def handle_error(self, request, client_address) -> None:
        """A client that left or timed out is routine; anything else is one line, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        print(f"zoo serve: request from {client_address[0]} failed: {type(error).__name__}: {error}", file=sys.stderr)

    @property
    def url(self) -> str:
        """The address to open, e.g. http://127.0.0.1:8000/."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"


class PageHandler(BaseHTTPRequestHandler):
    """Routes GET and POST requests; every answer is the page, an asset or JSON."""

    server: PageServer
    protocol_version = "HTTP/1.1"
    # The standard library answers a request line it cannot parse as HTTP/0.9 would, a body
    # without status line or headers; answered as HTTP/1.x, a garbage line gets its 400.
    default_request_version = "HTTP/1.0"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.request_timeout)  # each read of a request, and the wait for the next

    def send_error(self, code: int, message: Any = None, explain: Any = None) -> None:
        """The standard library's own refusals (bad request line, unknown method, ...) as JSON too;
        a method the page does not take is 405 with the methods it does."""
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code, message = (
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"method {self.command} is not allowed; use {' or '.join(ALLOWED_METHODS)}",
            )
            self.discard_body()  # unread, its bytes would make the kernel reset the connection before our answer
        self.close_connection = True
        try:
            self.send_json({"error": message or HTTPStatus(code).phrase}, code)
        except OSError:  # the client is gone
            pass

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        """The page, an asset or /api/info."""
        self._guarded(self._get)

    def do_POST(self) -> None:  # noqa: N802
        """One generation request with a JSON body."""
        self._guarded(self._post)

    def _guarded(self, handle: Callable[[], None]) -> None:
        try:
            handle()
        except (BrokenPipeError, ConnectionResetError):  # the client left; nothing to answer
            self.close_connection = True
        except RequestError as exc:
            self.send_json({"error": str(exc)}, exc.status)
        except Exception as exc:  # a bug must cost one request, not the server
            traceback.print_exc(file=sys.stderr)
            self.send_json({"error": f"internal error: {type(exc).__name__}: {exc}"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def _get(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self.send_text(web_asset("index.html").replace(BACKEND_MARK, ""), STATIC_TYPES[".html"])
        elif path.lstrip("/") in SERVED_ASSETS:
            name = path.lstrip("/")
            self.send_text(web_asset(name), STATIC_TYPES[name[name.rindex(".") :]])
        elif path == "/api/info":
            self.send_json(self.server.generator.info())
        elif path in self.server.routes:
            raise RequestError(f"{path} takes POST with a JSON body", HTTPStatus.METHOD_NOT_ALLOWED)
        else:
            raise RequestError(f"no such page: {path}", HTTPStatus.NOT_FOUND)

    def _post(self) -> None:
        path = self.path.split("?", 1)[0]
        route = self.server.routes.get(path)
        if route is None:
            self.discard_body()
            raise RequestError(f"no such endpoint: POST {path}", HTTPStatus.NOT_FOUND)
        body = self.read_json_body()
        with self.server.generation_lock:
            self.send_json(route(body))

    def read_json_body(self) -> dict[str, Any]:
        """The request's JSON object, or a RequestError saying what is wrong with it."""
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise RequestError("a JSON body with a Content-Length header is required", HTTPStatus.LENGTH_REQUIRED)
        if length > MAX_BODY_BYTES:
            self.discard_body()
            raise RequestError(
                f"the body is {length} bytes; at most {MAX_BODY_BYTES}", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            )
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(f"malformed JSON body: {exc}") from None
        if not isinstance(body, dict):
            raise RequestError(f"the JSON body must be an object, got {type(body).__name__}")
        return body

    def discard_body(self) -> None:
        """Read and drop a body we will not answer (up to DISCARD_LIMIT), then close the connection.

        Closing with unread bytes makes the kernel reset the connection, and
        the client could lose the error answer.
        """
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        if 0 < length <= DISCARD_LIMIT:
            self.rfile.read(length)
        self.close_connection = True

    def send_json(self, payload: dict[str, Any], status: int = HTTPStatus.OK) -> None:
        """Answer with a JSON document."""
        self.send_text(json.dumps(payload), "application/json", status)

    def send_text(self, text: str, content_type: str, status: int = HTTPStatus.OK) -> None:
        """Answer with a text document, never cached (the page changes with the run)."""
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", ", ".join(ALLOWED_METHODS))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the standard library's signature)
        if not self.server.quiet:
            super().log_message(format, *args)


class WaitingRoom:
    """Connections that have not sent a byte yet, watched by one thread in a selector: each is
    handed to `dispatch` when its request begins to arrive, or closed after `timeout` seconds of
    silence. At most `limit` wait; `admit` refuses more."""

    def __init__(self, dispatch: Callable[[socket.socket, Any], None], timeout: float, limit: int):
        self.dispatch, self.timeout, self.limit = dispatch, timeout, limit
        self._selector = selectors.DefaultSelector()
        self._waiting: dict[socket.socket, tuple[float, Any]] = {}  # connection -> (deadline, client address)
        self._lock = threading.Lock()
        self._wake, self._woken = socket.socketpair()  # a byte on it interrupts select() for a new deadline
        self._wake.setblocking(False)
        self._selector.register(self._woken, selectors.EVENT_READ)
        self._open = True
        threading.Thread(target=self._watch, name="zoo serve: waiting room", daemon=True).start()

    def admit(self, connection: socket.socket, address: Any) -> bool:
        """Hold `connection` until its request begins; False when the room is full."""
        with self._lock:
            if len(self._waiting) >= self.limit or not self._open:
                return False
            self._waiting[connection] = (time.monotonic() + self.timeout, address)
            self._selector.register(connection, selectors.EVENT_READ)
        self._nudge()
        return True

    def close(self) -> None:
        """Stop watching; the connections still waiting are closed."""
        with self._lock:
            self._open = False
        self._nudge()

    def _nudge(self) -> None:
        try:
            self._wake.send(b"\0")
        except OSError:  # its buffer is full of earlier nudges, or it is closed: the watcher wakes anyway
            pass

    def _watch(self) -> None:
        while True:
            with self._lock:
                if not self._open:
                    break
                first = min((deadline for deadline, _ in self._waiting.values()), default=None)
            events = self._selector.select(None if first is None else max(0.0, first - time.monotonic()))
            ready, expired = self._sort(events)
            for connection in expired:
                close_quietly(connection)
            for connection, address in ready:
                self.dispatch(connection, address)
        for connection in list(self._waiting):
            close_quietly(connection)
        self._selector.close()
        self._wake.close()
        self._woken.close()

    def _sort(self, events) -> tuple[list[tuple[socket.socket, Any]], list[socket.socket]]:
        """(connections whose request began, with their addresses; connections whose time is up),
        both taken out of the room."""
        ready, now = [], time.monotonic()
        with self._lock:
            for key, _ in events:
                if key.fileobj is self._woken:
                    self._woken.recv(4096)
                elif key.fileobj in self._waiting:
                    ready.append((key.fileobj, self._waiting.pop(key.fileobj)[1]))
                    self._selector.unregister(key.fileobj)
            expired = [connection for connection, (deadline, _) in self._waiting.items() if deadline <= now]
            for connection in expired:
                del self._waiting[connection]
                self._selector.unregister(connection)
        return ready, expired


def close_quietly(connection: socket.socket) -> None:
    """Close a connection whose client may already be gone."""
    try:
        connection.close()
    except OSError:
        pass


def waiting_limit(max_connections: int) -> int:
    """How many silent connections may wait: WAITING_LIMIT, within the file descriptors this
    process may open beside its handlers' (the soft limit raised towards the hard one first,
    as Go's runtime does)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = WAITING_LIMIT + max_connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return WAITING_LIMIT
    return max(16, min(WAITING_LIMIT, soft - max_connections - 256))


def make_server(
    generator: PageGenerator,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    quiet: bool = True,
    request_timeout: float = REQUEST_TIMEOUT_SECONDS,
    max_connections: int = MAX_CONNECTIONS,
) -> PageServer:
    """A bound server for `generator` (port 0: any free port); call serve_forever() on it.
    `request_timeout`: seconds of silence after which a client's connection is closed;
    `max_connections`: requests handled at once (more are answered 503)."""
    try:
        return PageServer(
            (host, port), generator, quiet=quiet, request_timeout=request_timeout, max_connections=max_connections
        )
    except OSError as exc:
        raise ZooError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

"""Gateway-made error responses: exact statuses and JSON bodies, and the connection handled safely."""

from __future__ import annotations

import socket

import httpx
from harness import free_port, one_service


def test_connection_refused_is_502_json(gateway):
    g = gateway(one_service(f"http://127.0.0.1:{free_port()}"))
    r = httpx.get(g.url + "/x")
    assert r.status_code == 502
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"].startswith("Bad gateway: cannot connect to backend")


def test_response_header_timeout_is_504_json(gateway, backends):
    b = backends()
    g = gateway(one_service(b.url, extra='[services.svc.load_balancer.timeouts]\nresponse_header = "300ms"'))
    r = httpx.get(g.url + "/delay/3")
    assert r.status_code == 504
    assert r.json() == {"error": "Gateway timeout: backend did not answer in time"}
    # the connection is still usable afterwards
    assert httpx.get(g.url + "/fine").status_code == 200


def test_backend_closing_mid_request_is_502(gateway):
    # a backend that accepts and immediately closes without answering
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    import threading

    def serve():
        for _ in range(4):
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.recv(65536)
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    g = gateway(one_service(f"http://127.0.0.1:{port}"))
    r = httpx.get(g.url + "/")
    srv.close()
    assert r.status_code == 502
    assert "error" in r.json()


def test_invalid_backend_response_is_502(gateway):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    import threading

    def serve():
        c, _ = srv.accept()
        c.recv(65536)
        c.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        c.close()

    threading.Thread(target=serve, daemon=True).start()
    g = gateway(one_service(f"http://127.0.0.1:{port}"))
    r = httpx.get(g.url + "/")
    srv.close()
    assert r.status_code == 502
    assert r.json() == {"error": "Bad gateway: invalid response from backend"}


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            chunks.append(d)
        return b"".join(chunks)


def test_malformed_request_is_400_and_closed(gateway, backends):
    g = gateway(one_service(backends().url))
    resp = raw(g.port, b"GARBAGE\x00 / HTTP/1.1\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in resp


def test_missing_host_on_http11_is_400(gateway, backends):
    g = gateway(one_service(backends().url))
    resp = raw(g.port, b"GET / HTTP/1.1\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 400 ")
    assert b'{"error":"Missing Host header"}' in resp


def test_uri_too_long_is_414_and_headers_too_large_is_431(gateway, backends):
    g = gateway(one_service(backends().url))
    resp = raw(g.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 414 ")
    resp = raw(g.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 40000 + b"\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 431 ")


def test_workers_survive_bad_input(gateway, backends):
    g = gateway(one_service(backends().url))
    pids = g.worker_pids()
    for data in (
        b"\xff\xfe\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ):
        raw(g.port, data)
    assert g.worker_pids() == pids
    assert httpx.get(g.url + "/").status_code == 200

"""A scripted HTTP/2 client for tests that need what high-level clients hide (interim responses, a body that
stops half-way): an ``h2`` connection driven over a socket, event by event."""

from __future__ import annotations

import socket
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events


def client_connection() -> h2.connection.H2Connection:
    """A client connection with its preface queued; fields are given and reported as ``str``."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    return conn


def converse(port: int, conn: h2.connection.H2Connection, handle: Callable[[h2.events.Event], bool]) -> None:
    """Drive ``conn`` over a socket to 127.0.0.1:``port`` until ``handle`` (given every event, and free to send
    more on ``conn``) returns True."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        while True:
            data = sock.recv(65536)
            assert data, "the gateway closed the connection"
            done = False
            for event in conn.receive_data(data):
                done = handle(event) or done
            sock.sendall(conn.data_to_send())
            if done:
                return

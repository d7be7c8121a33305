"""The gateway's exception tree. Every error the gateway raises or maps to a response is one of these.

    GatewayError                      base of everything below
    ├── ConfigError                   a config could not be loaded; carries *every* Problem found
    ├── StateError                    an embeddable-API call made in the wrong lifecycle state
    ├── PlaneError                    the shared-memory plane cannot be created or attached (shared/plane/errors.py)
    ├── RuleSyntaxError               a router rule does not parse (shared/rules/lexer.py)
    ├── UpstreamError                 talking to a backend failed before a response head (becomes a response)
    │   ├── ConnectError              502: refused, reset or closed before a response started
    │   ├── UpstreamTimeout           504: connect / response-header timeout
    │   └── BadUpstreamResponse       502: the backend's response could not be parsed or framed
    └── ClientError                   the client's request is malformed (raised from the HTTP/1.1 parser callbacks)
        ├── BadRequest                400
        ├── URITooLong                414
        └── HeaderTooLarge            431

Request-path errors carry their status and message; the wire protocols catch them in one place each
(``Downstream.fail`` for upstream errors, ``ClientProtocol.data_received`` for client errors) and
``worker/responses.py`` builds every error body; nothing else formats one. ``tests/unit/test_errors.py`` checks
that this tree is the module's real one.
"""

from __future__ import annotations

from dataclasses import dataclass


class GatewayError(Exception):
    """Base class of every error raised by a3s-gateway."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: where (file and dotted key path), what, and a fix if we can guess one."""

    file: str
    path: str
    message: str
    suggestion: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}: " if self.path else f"{self.file}: "
        hint = f" (did you mean {self.suggestion!r}?)" if self.suggestion else ""
        return f"{where}{self.message}{hint}"


class ConfigError(GatewayError):
    """A config was rejected. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class StateError(GatewayError):
    """An embeddable-API method was called in a lifecycle state that does not allow it."""


class UpstreamError(GatewayError):
    """The backend produced no response head: answered with ``status`` and ``message`` (or retried)."""

    status = 502

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConnectError(UpstreamError):
    status = 502


class UpstreamTimeout(UpstreamError):
    status = 504


class BadUpstreamResponse(UpstreamError):
    status = 502


class ClientError(GatewayError):
    """A malformed request: answered with ``status`` and the connection closed."""

    status = 400


class BadRequest(ClientError):
    status = 400


class URITooLong(ClientError):
    status = 414


class HeaderTooLarge(ClientError):
    status = 431

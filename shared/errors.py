"""The gateway's exception tree. Every error the gateway raises or maps to a response is one of these.

    GatewayError                      base of everything below
    ├── ConfigError                   a config could not be loaded; carries *every* Problem found
    ├── StateError                    an embeddable-API call made in the wrong lifecycle state
    ├── UpstreamError                 talking to a backend failed (becomes a response, never a crash)
    │   ├── ConnectError              502: refused, reset or unreachable before a response started
    │   ├── UpstreamTimeout           504: connect / response-header timeout
    │   └── BadUpstreamResponse       502: the backend's response could not be parsed
    └── ClientError                   the client's request is malformed
        ├── BadRequest                400
        ├── PayloadTooLarge           413
        ├── URITooLong                414
        └── HeaderTooLarge            431

Request-path errors are turned into JSON responses in exactly one place (``worker/responses.py``);
nothing else formats error bodies.
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
    status = 502


class ConnectError(UpstreamError):
    status = 502


class UpstreamTimeout(UpstreamError):
    status = 504


class BadUpstreamResponse(UpstreamError):
    status = 502


class ClientError(GatewayError):
    status = 400


class BadRequest(ClientError):
    status = 400


class PayloadTooLarge(ClientError):
    status = 413


class URITooLong(ClientError):
    status = 414


class HeaderTooLarge(ClientError):
    status = 431

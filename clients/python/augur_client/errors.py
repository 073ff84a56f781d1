"""The exceptions of augur_client: one for failed calls (with the gRPC status), one for discovery."""
from __future__ import annotations

import grpc


class AugurError(Exception):
    """Base of every error this package raises."""


class RpcError(AugurError):
    """A call that augur (or the transport) answered with a non-OK gRPC status.

    `code` is the `grpc.StatusCode`, `code_name` its name (`"INVALID_ARGUMENT"`), `message` the
    status message. augur's INVALID_ARGUMENT messages start with the field path
    (`candidates[0].item_id: must not be empty`); `field` is that path, else None.
    """

    def __init__(self, method: str, code: grpc.StatusCode, message: str) -> None:
        self.method = method
        self.code = code
        self.message = message
        super().__init__(f"{method}: {self.code_name}: {message}")

    @property
    def code_name(self) -> str:
        return self.code.name

    @property
    def field(self) -> str | None:
        if self.code is not grpc.StatusCode.INVALID_ARGUMENT:
            return None
        field, sep, _ = self.message.partition(": ")
        return field if sep and " " not in field else None

    @classmethod
    def from_grpc(cls, method: str, error: grpc.RpcError) -> RpcError:
        # Errors raised by a unary call are also grpc.Call objects (code() and details()).
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(method, code or grpc.StatusCode.UNKNOWN, details or "")


class DiscoveryError(AugurError):
    """The target could not be parsed, no etcd endpoint answered, or no augur is registered."""

"""The client's connection pool: aiohttp's TCPConnector, plus what surefetch needs to
know of the connections it hands out and keeps.

- the read deadline of an attempt starts once it has its connection (new or pooled);
- attempts whose connection came from the pool are noted, so that a request that
  meets a connection the server had already closed can be sent again;
- idle connections are kept for at most ``idle_hosts`` hosts (the client gives
  :func:`~surefetch._tune.idle_connections` over ``per_host``, so at most that many
  sockets): aiohttp's ``limit`` counts only connections in use, and a run over
  100,000 hosts would otherwise hold a socket for every host it saw in the last
  keep-alive period;
- every new connection is checked against the network policy on the address it is
  about to connect to (its socket factory), so that no name, spelling, redirect or
  DNS answer leads to an address the policy denies: no packet is sent there.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import socket
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.helpers import _EXC_SENTINEL

from ._deadlines import Deadlines, Task
from .errors import BlockedAddressError, cuts_body, is_parser_error
from .network import NetworkPolicy
from .proxy import ProxyChoice

__all__ = ["Connector", "ResponseProtocol", "socks_available"]


def socks_available() -> str | None:
    """Why SOCKS proxies cannot be used here (None: they can)."""
    try:
        import python_socks.async_.asyncio  # noqa: F401
    except ImportError:
        return "SOCKS proxies need aiohttp-socks: pip install 'surefetch[socks]'"
    return None


class _Connecting:
    """One new connection being made: its URL host, the addresses tried and refused."""

    __slots__ = ("blocked", "host", "port", "proxy", "tried")

    def __init__(self, host: str | None, port: int | None, proxy: bool) -> None:
        self.host = host
        self.port = port
        self.proxy = proxy  # a connection to the proxy: the user's own choice
        self.tried: set[str] = set()
        self.blocked: dict[str, str] = {}


_CONNECTING: contextvars.ContextVar[_Connecting | None] = contextvars.ContextVar(
    "surefetch_connecting", default=None
)


class _Refused(OSError):
    """The socket factory's refusal: aiohappyeyeballs then tries the next address."""


class Connector(aiohttp.TCPConnector):
    """A TCPConnector that starts the read deadline of the attempt it serves once that
    attempt has its connection (new or reused); redirects start it again per hop.

    It also notes, in :attr:`reused`, the attempts whose last connection came from the
    pool: a request that fails on one of those before any answer may have met a
    connection the server had already closed (the caller discards the note). It keeps
    idle connections for at most ``idle_hosts`` hosts, closing those of the host that
    has kept them longest.

    Each new connection's address is checked against ``network`` before its socket
    exists; when every address of a host is refused, the request fails with
    :class:`BlockedAddressError`."""

    def __init__(
        self,
        deadlines: Deadlines,
        *,
        idle_hosts: int,
        network: NetworkPolicy | None = None,
        socks: ProxyChoice | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(socket_factory=self._socket, **kwargs)
        self._deadlines = deadlines
        self._idle_hosts = idle_hosts
        self.network = network if network is not None else NetworkPolicy()
        #: The SOCKS proxy every connection goes through, if any.
        self.socks = socks
        self.reused: set[Task] = set()

    async def _resolve_host(
        self, host: str, port: int, traces: Any = None
    ) -> list[aiohttp.abc.ResolveResult]:
        if self.socks is not None and self.socks.url.scheme == "socks5h":
            # The proxy resolves the name: hand it on as it is.
            return [
                {"hostname": host, "host": host, "port": port, "family": 0, "proto": 0, "flags": 0}
            ]
        return await super()._resolve_host(host, port, traces)

    async def _wrap_create_connection(
        self,
        *args: Any,
        addr_infos: list[Any],
        req: aiohttp.ClientRequest,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, aiohttp.client_proto.ResponseHandler]:
        socks = self.socks
        if socks is None:
            return await super()._wrap_create_connection(
                *args, addr_infos=addr_infos, req=req, timeout=timeout,
                client_error=client_error, **kwargs,
            )  # fmt: skip
        from python_socks import ProxyError, ProxyTimeoutError, ProxyType
        from python_socks.async_.asyncio import Proxy

        address, port = addr_infos[0][4][:2]
        # A name that the proxy resolves is not ours to see; an address is.
        literal = ":" in address or address.replace(".", "").isdigit()
        if literal and (why := self.network.blocked(req.url.raw_host, address)) is not None:
            raise BlockedAddressError(f"blocked {address}:{port} (through the proxy): {why}")
        proxy = Proxy(
            ProxyType.SOCKS5,
            socks.url.raw_host or "",
            socks.url.port or 1080,
            username=socks.login,
            password=socks.password,
            rdns=socks.url.scheme == "socks5h",
        )
        try:
            sock = await proxy.connect(address, port, timeout=timeout.sock_connect)
        except ProxyTimeoutError as exc:
            raise TimeoutError(f"SOCKS proxy {socks} did not answer in time") from exc
        except (ProxyError, OSError) as exc:
            error = OSError(errno.ECONNREFUSED, f"SOCKS proxy {socks}: {exc}")
            raise aiohttp.ClientProxyConnectionError(req.connection_key, error) from exc
        try:
            return await self._loop.create_connection(*args, sock=sock, **kwargs)
        except BaseException:
            sock.close()
            raise

    def _socket(self, addr_info: Any) -> socket.socket:
        """aiohappyeyeballs' socket factory: the last moment before a packet leaves."""
        family, type_, proto, _, sockaddr = addr_info
        address = str(sockaddr[0])
        connecting = _CONNECTING.get()
        if connecting is None:  # not made through _create_connection: check anyway
            connecting = _Connecting(None, None, False)
        if not connecting.proxy:
            connecting.tried.add(address)
            why = self.network.blocked(connecting.host, address)
            if why is not None:
                connecting.blocked[address] = why
                raise _Refused(errno.EACCES, f"blocked by the network policy: {why}")
        return socket.socket(family=family, type=type_, proto=proto)

    async def _create_connection(
        self,
        req: aiohttp.ClientRequest,
        traces: list[aiohttp.tracing.Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> aiohttp.client_proto.ResponseHandler:
        """A new connection (never a pooled one): checked by the policy, per hop."""
        url = req.url
        host = url.raw_host
        network = self.network
        if req.proxy is not None:
            # The proxy connects on our behalf: only what the URL says can be checked.
            assert host is not None
            if ":" in host or host.replace(".", "").isdigit():
                why = network.blocked(host, host)
            else:
                why = network.blocked_name(host, unknown_address=True)
            if why is not None:
                raise BlockedAddressError(f"blocked {host} (through the proxy): {why}")
            connecting = _Connecting(host, url.port, True)
        else:
            if host is not None and (why := network.blocked_name(host)) is not None:
                raise BlockedAddressError(f"blocked {host}: {why}")
            connecting = _Connecting(host, url.port, False)
        token = _CONNECTING.set(connecting)
        try:
            return await super()._create_connection(req, traces, timeout)
        except aiohttp.ClientConnectorError:
            blocked = connecting.blocked
            if blocked and connecting.tried <= blocked.keys():  # no address was allowed
                address, why = next(iter(blocked.items()))
                shown = f"[{address}]" if ":" in address else address
                where = f"{shown}:{connecting.port}"
                if host and host.strip("[]") != address:
                    where += f" ({host})"
                raise BlockedAddressError(f"blocked {where}: {why}") from None
            raise
        finally:
            _CONNECTING.reset(token)

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[aiohttp.tracing.Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> aiohttp.connector.Connection:
        task = asyncio.current_task()
        self.reused.discard(task)
        connection = await super().connect(req, traces, timeout)
        if task is not None:
            self._deadlines.waiting(task)
        return connection

    async def _get(
        self, key: ConnectionKey, traces: list[aiohttp.tracing.Trace]
    ) -> aiohttp.connector.Connection | None:
        connection = await super()._get(key, traces)
        if connection is not None and (task := asyncio.current_task()) is not None:
            self.reused.add(task)
        return connection

    def _release(
        self, key: ConnectionKey, protocol: aiohttp.client_proto.ResponseHandler, **kw: Any
    ) -> None:
        super()._release(key, protocol, **kw)
        idle = self._conns
        while len(idle) > self._idle_hosts:
            oldest = next(iter(idle))
            if oldest == key:  # the host just served is the last to go
                break
            for proto, _ in idle.pop(oldest):
                proto.close()


class ResponseProtocol(ResponseHandler):
    """aiohttp's connection protocol, handing the body two errors that aiohttp 3.14 does
    not (neither method runs for a healthy response, so this costs nothing per request):

    - a body that ends with the connection (no Content-Length, not chunked) cut by a
      reset: aiohttp ends it as if the server had closed, so a truncated body would
      pass as complete. Here it fails as a body cut short of its Content-Length does.
    - a broken chunk after the head, with the C parser: aiohttp tells the connection
      but not the body, which then waits until a timeout ends it (and is retried).
      Here the body fails at once, as with the pure-Python parser.
    """

    __slots__ = ()

    def connection_lost(self, exc: BaseException | None) -> None:
        payload = self._payload
        reading = payload is not None and not payload.is_eof() and payload.exception() is None
        super().connection_lost(exc)
        # A body framed by length or chunks that was cut now holds aiohttp's error; one
        # that ended cleanly although the connection failed was delimited by its end.
        if reading and exc is not None and cuts_body(exc):
            assert payload is not None
            if payload.is_eof() and payload.exception() is None:
                error = aiohttp.ClientPayloadError(
                    "Response payload is not completed: it ends with the connection,"
                    f" which failed. {exc!r}"
                )
                error.__cause__ = exc
                # A reader already woken by the end sees this once the loop ends: _read_body.
                payload.set_exception(error, exc)

    def set_exception(self, exc: BaseException, exc_cause: BaseException = _EXC_SENTINEL) -> None:
        payload = self._payload
        super().set_exception(exc, exc_cause)
        if (
            payload is not None
            and is_parser_error(exc)
            and not payload.is_eof()
            and payload.exception() is None
        ):
            cause = exc if exc_cause is _EXC_SENTINEL else exc_cause
            error = aiohttp.ClientPayloadError(f"Response payload is not completed: {exc!r}")
            payload.set_exception(error, cause)
            error.__cause__ = cause  # set_exception sets it only on a waiting reader

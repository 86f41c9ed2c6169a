"""A small TCP load balancer in front of a swarm service: the test's stand-in for the routing mesh.

Why: swarm's ingress routing mesh and service VIPs need IPVS, which this machine's kernel lacks
(no /proc/sys/net/ipv4/vs), so published ports never answer here. On a real swarm the mesh (or
Traefik/HAProxy reading the Docker API) does this job. The stand-in behaves like those: it sends
new connections only to tasks whose desired state is `running` and whose container is
`healthy`, reached on a swarm-scoped bridge network the host can route to; a failed connect
tries the next backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time

import docker

EDGE_NETWORK = "mlops-edge"


def ensure_edge_network(name: str = EDGE_NETWORK) -> str:
    """A swarm-scoped bridge network: service tasks get IPs the host can reach."""
    client = docker.from_env()
    if not client.networks.list(names=[name]):
        client.networks.create(name, driver="bridge", scope="swarm", attachable=True)
    return name


class EdgeProxy:
    """Listen on 127.0.0.1:port; forward each connection to a healthy, running task of `service`."""

    def __init__(self, service: str, port: int, target_port: int = 8080, network: str = EDGE_NETWORK) -> None:
        self.service, self.port, self.target_port, self.network = service, port, target_port, network
        self.backends: list[str] = []
        self._client = docker.from_env()
        self._cycle = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve, daemon=True), threading.Thread(target=self._discover, daemon=True)]

    def _healthy_backends(self) -> list[str]:
        found = []
        for task in self._client.api.tasks(filters={"service": self.service, "desired-state": "running"}):
            status = task.get("Status", {})
            container_id = status.get("ContainerStatus", {}).get("ContainerID")
            if status.get("State") != "running" or not container_id:
                continue
            try:
                info = self._client.api.inspect_container(container_id)
            except docker.errors.NotFound:
                continue
            if info["State"].get("Health", {}).get("Status") != "healthy":
                continue
            address = info["NetworkSettings"]["Networks"].get(self.network, {}).get("IPAddress")
            if address:
                found.append(address)
        return sorted(found)

    def _discover(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.backends = self._healthy_backends()
            time.sleep(0.25)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        backends = list(self.backends)
        start = next(self._cycle)
        for attempt in range(len(backends)):
            address = backends[(start + attempt) % len(backends)]
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(address, self.target_port), 2)
            except (TimeoutError, OSError):
                continue
            await asyncio.gather(self._pipe(client_reader, writer), self._pipe(reader, client_writer))
            return
        client_writer.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._loop.run_until_complete(self._until_stopped())
        server.close()

    async def _until_stopped(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(0.1)

    def __enter__(self) -> EdgeProxy:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

"""Start the real engines tests need: Docker engine, local registry, swarm, Prometheus, PostgreSQL, base image.

Why: the proofs run against the real thing, not mocks. Every `ensure_*` is idempotent (a running
engine is reused, a second call costs one probe) and raises EngineUnavailable with the reason when
the engine cannot be had, so a test turns that into skip (laptop) or failure (CI) with
`tests.conftest.need_engine`. Usable outside pytest too: `python -m tests.engines` starts them all.

Engines are started in their own session (setsid) so they outlive the test process and the next
test run reuses them; logs and state live under ENGINE_DIR.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENGINE_DIR = Path(os.environ.get("MLOPS_ENGINE_DIR", "/tmp/mlops-engines"))
DOCKER_SOCK = Path("/var/run/docker.sock")
REGISTRY = os.environ.get("MLOPS_REGISTRY", "127.0.0.1:5000")
BASE_IMAGE = os.environ.get("MLOPS_BASE_IMAGE", "local/python-base:3.11")
# Names of what engine tests create (image repositories, stacks) carry this, so two test runs
# sharing one engine never touch each other's.
RUN_TAG = secrets.token_hex(4)


class EngineUnavailable(RuntimeError):
    """The engine is not installed or did not start; the message says which and where to look."""


def _run(*cmd: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a daemon detached from this process group (survives pytest, reused next run)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")  # noqa: SIM115 - handed to the child, closed with it
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def _wait(probe, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.3)
    hint = f"; see {log}" if log else ""
    raise EngineUnavailable(f"{what} did not become ready within {timeout:.0f}s{hint}")


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET url answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Docker engine -------------------------------------------------------------------------------

def docker_running() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return _run("docker", "info", "--format", "{{.ServerVersion}}", timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def ensure_docker(timeout: float = 60) -> None:
    """Start dockerd in the background when no engine answers (no systemd here)."""
    if docker_running():
        return
    if not shutil.which("dockerd") or not shutil.which("docker"):
        raise EngineUnavailable("docker engine not installed (apt-get install docker.io)")
    if os.geteuid() != 0:
        raise EngineUnavailable("docker engine is not running and starting dockerd needs root")
    log = ENGINE_DIR / "dockerd.log"
    _spawn(["dockerd"], log)
    _wait(docker_running, timeout, "dockerd", log)


# --- Local registry --------------------------------------------------------------------------------

def registry_running(addr: str = REGISTRY) -> bool:
    return http_ok(f"http://{addr}/v2/")


def ensure_registry(addr: str = REGISTRY, timeout: float = 30) -> str:
    """Debian's docker-registry on addr (filesystem storage, deletes enabled); returns addr."""
    if registry_running(addr):
        return addr
    binary = shutil.which("docker-registry") or shutil.which("registry")
    if not binary:
        raise EngineUnavailable("docker-registry not installed (apt-get install docker-registry)")
    state = ENGINE_DIR / "registry"
    state.mkdir(parents=True, exist_ok=True)
    config = state / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {state / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '{addr}'}}\n",
        encoding="utf-8",
    )
    _spawn([binary, "serve", str(config)], state / "registry.log")
    _wait(lambda: registry_running(addr), timeout, "docker-registry", state / "registry.log")
    return addr


# --- Swarm -------------------------------------------------------------------------------------------

def ensure_swarm() -> None:
    """A single-node swarm on loopback (for `docker stack deploy`)."""
    ensure_docker()
    state = _run("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    if state == "active":
        return
    result = _run("docker", "swarm", "init", "--advertise-addr", "127.0.0.1", timeout=60)
    if result.returncode != 0:
        raise EngineUnavailable(f"docker swarm init failed: {result.stderr.strip()}")


# --- Base image -------------------------------------------------------------------------------------

def image_exists(ref: str) -> bool:
    return _run("docker", "image", "inspect", ref, timeout=30).returncode == 0


def ensure_base_image(tag: str = BASE_IMAGE) -> str:
    """The air-gapped base (infra/base-image.sh, debootstrap + docker import), built once and reused."""
    ensure_docker()
    if image_exists(tag):
        return tag
    if not shutil.which("debootstrap"):
        raise EngineUnavailable(f"{tag} missing and debootstrap not installed (apt-get install debootstrap)")
    log = ENGINE_DIR / "base-image.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        code = subprocess.call(["bash", str(REPO / "infra" / "base-image.sh"), tag], stdout=out, stderr=subprocess.STDOUT,
                               timeout=900)
    if code != 0 or not image_exists(tag):
        raise EngineUnavailable(f"building {tag} failed; see {log}")
    return tag


# --- Prometheus ---------------------------------------------------------------------------------------

def start_prometheus(targets: list[str], port: int | None = None, interval: str = "1s",
                     config_text: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A Prometheus scraping `targets` (host:port) at /metrics, or running `config_text` (a whole
    prometheus.yml; rule files named in it by absolute path); returns (process, base URL).

    Not shared: each caller gets its own config and data dir; stop it with `proc.terminate()`.
    """
    binary = shutil.which("prometheus")
    if not binary:
        raise EngineUnavailable("prometheus not installed (apt-get install prometheus)")
    port = port or free_port()
    state = ENGINE_DIR / f"prometheus-{port}"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    config = state / "prometheus.yml"
    config.write_text(config_text or json.dumps({
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{"job_name": "serving", "static_configs": [{"targets": targets}]}],
    }), encoding="utf-8")
    log = state / "prometheus.log"
    proc = _spawn([binary, f"--config.file={config}", f"--storage.tsdb.path={state / 'data'}",
                   f"--web.listen-address=127.0.0.1:{port}"], log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: http_ok(f"{url}/-/ready"), 30, "prometheus", log)
    except EngineUnavailable:
        proc.terminate()
        raise
    return proc, url


def start_pushgateway(port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's Pushgateway on a free loopback port, nothing persisted; returns (process, host:port).

    Not shared: stop it with `proc.terminate()`."""
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if not binary:
        raise EngineUnavailable("prometheus-pushgateway not installed (apt-get install prometheus-pushgateway)")
    port = port or free_port()
    log = ENGINE_DIR / f"pushgateway-{port}.log"
    # Without --persistence.file= it writes under /var/lib/prometheus at exit.
    proc = _spawn([binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="], log)
    try:
        _wait(lambda: http_ok(f"http://127.0.0.1:{port}/-/ready"), 30, "pushgateway", log)
    except EngineUnavailable:
        proc.terminate()
        raise
    return proc, f"127.0.0.1:{port}"


# --- MLflow tracking server ---------------------------------------------------------------------------

def start_mlflow_server(folder: Path, timeout: float = 90) -> tuple[subprocess.Popen[bytes], str]:
    """`mlflow server` from this venv on a free loopback port (sqlite store, proxied artifacts in
    `folder`); returns (process, URL). Not shared: stop it with os.killpg(proc.pid, SIGTERM)."""
    import signal
    import sys

    port = free_port()
    log = folder / "server.log"
    proc = _spawn([str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
                   f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "artifacts"),
                   "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: http_ok(f"{url}/health"), timeout, "mlflow server", log)
    except EngineUnavailable:
        os.killpg(proc.pid, signal.SIGTERM)
        raise
    return proc, url


# --- PostgreSQL ---------------------------------------------------------------------------------------

def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL server binaries (apt-get install postgresql), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def start_postgres() -> tuple[str, Callable[[], None]]:
    """A throwaway PostgreSQL cluster on a free loopback port with a uniquely named database;
    returns (postgresql:// URL, stop). Not shared: each caller gets its own data dir.

    initdb refuses root, so as root the cluster runs as the `postgres` user (runuser)."""
    binaries = postgres_bin()
    if binaries is None:
        raise EngineUnavailable("PostgreSQL is not installed (apt-get install postgresql)")
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
    sockets = Path(tempfile.mkdtemp(prefix="mlops-pg-sock-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    database = f"mlops_{RUN_TAG}_{port}"

    def run(*cmd: str) -> None:
        done = _run(*as_user, *cmd, timeout=60)
        if done.returncode != 0:
            raise EngineUnavailable(f"{cmd[0]} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    def stop() -> None:
        _run(*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop", timeout=60)
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(sockets, ignore_errors=True)

    run(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
    try:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-o",
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        run(str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database)
    except EngineUnavailable:
        stop()
        raise
    return f"postgresql://postgres@127.0.0.1:{port}/{database}", stop


# --- Ray ----------------------------------------------------------------------------------------

class RayCluster:
    """A real Ray cluster on loopback: a head and `workers` worker nodes, every port pinned and a
    temp dir of its own, so test runs sharing the machine never meet. Each node runs in its own
    process group and is stopped by signalling that group (never `ray stop`, which ends every Ray
    process on the machine, other runs' included). The head also serves Ray Client at
    `client_address` (ray://127.0.0.1:PORT), the way a driver outside the cluster connects.

    Ray Client's proxy starts one server per session on ports counting up from a fixed 23000, with
    no setting to move them; two clusters on one machine race for the same port ("Starting Ray
    client server failed. See ray_client_server_23000.err"). So drivers connect to a proxy this class
    starts itself, with that range moved to a block of this run (the head's own proxy, which `ray
    start` insists on, gets a free port and no sessions)."""

    # The proxy module's range, set before its main() reads it; the rest of argv is Ray's own.
    PROXY = ("import sys; import ray.util.client.server.proxier as proxier; "
             "from ray.util.client.server.server import main; "
             "proxier.MIN_SPECIFIC_SERVER_PORT = int(sys.argv.pop(1)); "
             "proxier.MAX_SPECIFIC_SERVER_PORT = proxier.MIN_SPECIFIC_SERVER_PORT + 100; main()")

    def __init__(self, head_cpus: int = 1, worker_cpus: int = 1, workers: int = 1) -> None:
        import sys

        self.ray = Path(sys.executable).with_name("ray")
        if not self.ray.is_file():
            raise EngineUnavailable("ray is not installed (pip install -e '.[ray]')")
        self.temp = Path(tempfile.mkdtemp(prefix=f"ray-{RUN_TAG}-", dir="/tmp"))  # short: Ray's socket paths
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_port = free_port()
        self.client_address = f"ray://127.0.0.1:{self.client_port}"
        self.nodes: list[subprocess.Popen[bytes]] = []
        try:
            self.head = self._start(["--head", "--port", str(self.port), "--num-cpus", str(head_cpus),
                                     # Ray requires a port here; nothing connects to this one (see above).
                                     "--ray-client-server-port", str(free_port()),
                                     "--include-dashboard", "false", "--disable-usage-stats"], "head")
            self._start_client_proxy()
            self.workers = [self._start(["--address", self.address, "--num-cpus", str(worker_cpus)], f"worker{i}")
                            for i in range(workers)]
            self.wait_for_nodes(1 + workers)
        except BaseException:
            self.stop()
            raise

    def _start(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        # A block of 100 ports for this node's workers, below the kernel's ephemeral range (32768+),
        # where free_port's picks for the other components land, so the two never collide.
        base = 10_000 + secrets.randbelow(130) * 100
        self.runtime_env_agent_port = free_port()
        ports = ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                 "--runtime-env-agent-port", str(self.runtime_env_agent_port),
                 "--dashboard-agent-grpc-port", str(free_port()),
                 "--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port()),
                 "--min-worker-port", str(base), "--max-worker-port", str(base + 99)]
        cmd = [str(self.ray), "start", "--block", "--node-ip-address", "127.0.0.1", "--temp-dir", str(self.temp),
               *args, *ports]
        node = _spawn(cmd, self.temp / f"{name}.log")
        self.nodes.append(node)
        return node

    def _start_client_proxy(self) -> None:
        """Ray Client's proxy on `client_port`, its per-session servers in a block of this run's
        (23,000 to 31,999 less Ray's default block, apart from the worker blocks below 23,000)."""
        import sys

        base = 24_000 + secrets.randbelow(80) * 100
        cmd = [sys.executable, "-c", self.PROXY, str(base), f"--address={self.address}", "--host=127.0.0.1",
               f"--port={self.client_port}", "--mode=proxy",
               f"--runtime-env-agent-address=http://127.0.0.1:{self.runtime_env_agent_port}",
               f"--temp-dir-marker={self.temp}"]  # unknown to Ray (parse_known_args): marks the process ours
        self.nodes.append(_spawn(cmd, self.temp / "client-proxy.log"))

    def wait_for_nodes(self, count: int, timeout: float = 90) -> None:
        """Until `count` nodes are alive (asked through `ray status`-free means: a probe driver)."""
        import sys

        probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
                 "print(sum(n['Alive'] for n in ray.nodes()))")

        def ready() -> bool:
            if any(node.poll() is not None for node in self.nodes):
                raise EngineUnavailable(f"a Ray node exited while starting; see the logs in {self.temp}")
            try:
                for port in (self.port, self.client_port):
                    with socket.create_connection(("127.0.0.1", port), timeout=2):
                        pass
                done = subprocess.run([sys.executable, "-c", probe, self.address], capture_output=True, text=True,
                                      timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                return False
            return done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(count)]

        _wait(ready, timeout, f"Ray cluster with {count} nodes at {self.address}", self.temp / "head.log")

    def kill_worker(self, index: int = 0) -> None:
        """SIGKILL a worker node's whole process group: the node dies as a crashed machine would."""
        import signal

        with _suppress_gone():
            os.killpg(self.workers[index].pid, signal.SIGKILL)

    def stop(self) -> None:
        import signal

        for node in reversed(self.nodes):
            with _suppress_gone():
                os.killpg(node.pid, signal.SIGTERM)
        for node in self.nodes:
            try:
                node.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with _suppress_gone():
                    os.killpg(node.pid, signal.SIGKILL)
        for pid in self._orphans():  # e.g. log_monitor.py of a SIGKILLed node: ours by its temp dir
            with _suppress_gone():
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp, ignore_errors=True)

    def _orphans(self) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if str(self.temp).encode() in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found


def _suppress_gone() -> contextlib.suppress:
    return contextlib.suppress(ProcessLookupError, PermissionError)


def ensure_all() -> None:
    """Everything the serving engine tests use, in dependency order."""
    ensure_docker()
    ensure_registry()
    ensure_swarm()
    ensure_base_image()


if __name__ == "__main__":
    started = time.monotonic()
    ensure_all()
    print(f"docker, registry {REGISTRY}, swarm, {BASE_IMAGE}: ready in {time.monotonic() - started:.1f}s")

"""The prediction log: every /predict row and the ground truth that arrives later, and its read side.

Why off the request path: a route only appends one record per request to a bounded list (no I/O,
no encoding); one writer thread per process takes the list in batches, one transaction per batch.
Whatever goes wrong there (a full queue, a database that is down, a read-only file) costs the
lost rows, counted through `on_dropped`, never a failed or slower prediction.

Where it goes (`MLOPS_PREDICTION_LOG`): a sqlite file (WAL, busy timeout) that the worker
processes of one server share, `postgresql://...` for several replicas, or `off`. Rows older
than the retention are pruned by the writer now and then. The monitor reads it back with
`export_rows` (plain dicts, no pandas: the image has none).

One table row per request, not per predicted row (`requests`): a 1000-row batch is one insert
and one JSON text per column (features, predictions, scores, probabilities), where one insert and
three JSON texts per row into a table with three indexes cost the writer 4.3 ms of CPU per 1000
rows, more than the rest of the request. The rows' ids (the join key of /feedback by `ids` and of
labels given by id) are in the request's row, and /feedback finds them by `request_ids` (one row
per batch row that carries one, indexed on the id) or, for a request of one row, by a partial
index on `requests.ids` (a second table row cost single-row requests 15% more of the writer's
CPU). A contract without an id column pays nothing for them. Labels keep one row each, by
request and row or by id. `export_rows` expands requests back into rows and joins labels a chunk
of requests at a time.

The layout before (`predictions`, one row per predicted row) is still read, labelled and pruned,
never written: a log from before the change ages out within one retention period, after which
the LEGACY code can go.

Imports no other pipeline module and nothing beyond the standard library (psycopg for PostgreSQL;
the writer encodes with orjson, of the serve extra: json.dumps cost 7 ms per 1000 rows).
"""

from __future__ import annotations

import contextlib
import heapq
import json
import operator
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import repeat
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, NamedTuple

OFF = "off"
# What may wait for the writer, in requests and in rows: a stalled log drops past either. Rows as
# the route hands them over hold about 1.2 KB each (the bundled 9 columns), so 10,000 requests of
# 2000 rows alone would have held 12 GB per worker.
QUEUE_REQUESTS = 10_000
QUEUE_ROWS = 200_000
BATCH_REQUESTS = 500  # requests per transaction at most
# The writer lets records gather this long before a transaction: at a few thousand requests a second
# one transaction (and one thread wake-up) per request cost more than the request's own work.
BATCH_LINGER_SECONDS = 0.02
PRUNE_EVERY_SECONDS = 600.0
SQLITE_BUSY_MS = 5000
PG_CONNECT_TIMEOUT = 3
SCHEMA_LOCK = 4_127_010  # PostgreSQL advisory lock key taken while creating the tables
ALL_TIME = 1e12  # seconds: beyond any timestamp either way, portable where infinity is not
EXPORT_REQUESTS = 200  # requests read, expanded and joined with their labels at a time
# From this many rows on a request's features are stored by column: below, copying each row's dict
# costs less than setting that up.
COLUMNAR_ROWS = 3
IN_KEYS = 500  # values per `IN (...)` list: sqlite builds before 3.32 allow 999 parameters

SCHEMA = (
    # One row per /predict request. features: {"columns": [...], "values": [[...] per row]} (or a
    # list of one object per row when the rows' columns differ), id column left out; ids: the
    # rows' ids as `encode` spells them, in one JSON array (NULL when no row has one); predictions,
    # scores, probabilities: one JSON array each, NULL when absent.
    """CREATE TABLE IF NOT EXISTS requests (
        request_id TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, model_version TEXT, model_digest TEXT,
        row_count INTEGER NOT NULL, ids TEXT, features TEXT NOT NULL, predictions TEXT NOT NULL,
        scores TEXT, probabilities TEXT)""",
    "CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts)",
    # Finding rows by id (/feedback by ids): the rows of batches that carry one, and single-row
    # requests by their `ids` ('["<id>"]'). Nothing for a contract without an id column.
    "CREATE TABLE IF NOT EXISTS request_ids (id_value TEXT NOT NULL, request_id TEXT NOT NULL, row_index INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS request_ids_id ON request_ids (id_value)",
    "CREATE INDEX IF NOT EXISTS requests_one_id ON requests (ids) WHERE row_count = 1 AND ids IS NOT NULL",
    # Ground truth: by request and row (request_id set), or by the contract's id column (request_id NULL).
    """CREATE TABLE IF NOT EXISTS labels (
        request_id TEXT, row_index INTEGER, id_value TEXT, label TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS labels_request ON labels (request_id, row_index)",
    "CREATE INDEX IF NOT EXISTS labels_id ON labels (id_value)",
)
INSERT_REQUEST = ("INSERT INTO requests (request_id, ts, model_version, model_digest, row_count, ids, features,"
                  " predictions, scores, probabilities) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
INSERT_ID = "INSERT INTO request_ids (id_value, request_id, row_index) VALUES (?, ?, ?)"
INSERT_ROW_LABEL = "INSERT INTO labels (request_id, row_index, id_value, label, ts) VALUES (?, ?, NULL, ?, ?)"
INSERT_ID_LABEL = "INSERT INTO labels (request_id, row_index, id_value, label, ts) VALUES (NULL, NULL, ?, ?, ?)"
EXPORT_NEW = """SELECT request_id, ts, model_version, model_digest, row_count, ids, features, predictions, scores
FROM requests WHERE ts >= ? AND ts < ? ORDER BY ts, request_id"""
# LEGACY: the layout before one row per request; read, labelled and pruned, never written.
LEGACY = "predictions"
EXPORT_LEGACY = """SELECT p.request_id, p.row_index, p.ts, p.model_version, p.model_digest, p.id_value, p.features,
       p.prediction, p.score, COALESCE(
         (SELECT l.label FROM labels l WHERE l.request_id = p.request_id AND l.row_index = p.row_index
          ORDER BY l.ts DESC LIMIT 1),
         (SELECT l.label FROM labels l WHERE l.request_id IS NULL AND l.id_value = p.id_value
          ORDER BY l.ts DESC LIMIT 1))
FROM predictions p WHERE p.ts >= ? AND p.ts < ? ORDER BY p.ts, p.request_id, p.row_index"""


def new_request_id() -> str:
    """A UUIDv7 (RFC 9562; `uuid.uuid7` from Python 3.14) as 32 hex digits: time-ordered, so the
    log's primary key grows at its end. Random UUIDv4 ids put every insert on a random page of an
    ever larger index: 12.5 against 5.3 us of the writer's CPU per row at 150,000 rows, worse as
    the log grows. 74 random bits keep it unguessable for /feedback."""
    millis, rand = time.time_ns() // 1_000_000, secrets.randbits(74)
    return f"{(millis << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & (1 << 62) - 1):032x}"


def encode(value: Any) -> str:
    """JSON text of a value as the API saw it (NumPy scalars become plain numbers)."""
    return json.dumps(value, default=_plain, separators=(",", ":"))


def _fast_json(orjson: Any, value: Any) -> str:
    """JSON text by orjson (1.5 ms against json's 7 ms per 1000 rows; the writer imports it and
    passes it in), by `encode` for what orjson refuses (an integer beyond 64 bits, which a
    contract without bounds lets through). A NumPy view orjson refuses (not C-contiguous: the
    positive class's column of the probabilities) goes through `tolist` to orjson, not to
    `encode` (0.3 ms per 1000 scores)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except orjson.JSONEncodeError:
        if hasattr(value, "tolist"):
            return _fast_json(orjson, value.tolist())
        return encode(value)


def id_key(value: Any) -> str:
    """The text an id is stored and looked up by: `encode`'s, for a string by json's own C
    function (`encode` costs 0.55 us an id: 1000-row batches carry 1000 of them)."""
    return encode_basestring_ascii(value) if type(value) is str else encode(value)


def _features(rows: list[dict[str, Any]], id_column: str | None) -> Any:
    """The rows minus the id column as one JSON-ready value: {"columns", "values"} when there are
    a few rows and each has the first row's columns (as the API's validated rows do: a third of
    the cost of copying each dict without its id), else one dict per row."""
    if len(rows) >= COLUMNAR_ROWS:
        first = rows[0]
        columns = [name for name in first if name != id_column]
        if len(columns) > 1 and set(map(len, rows)) == {len(first)} and (
                id_column not in first or all(map(operator.contains, rows, repeat(id_column)))):
            try:
                return {"columns": columns, "values": list(map(operator.itemgetter(*columns), rows))}
            except KeyError:  # a row with another column in place of one of the first's
                pass
    return [{k: v for k, v in row.items() if k != id_column} for row in rows]


def _rows_of(features: Any) -> list[dict[str, Any]]:
    """The inverse of `_features` (after json.loads)."""
    if isinstance(features, dict):
        return [dict(zip(features["columns"], values, strict=True)) for values in features["values"]]
    return list(features)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # a NumPy array or scalar
        return value.tolist()
    raise TypeError(f"cannot log {type(value).__name__}")


# --- the stores ---------------------------------------------------------------------------------

class Store:
    """One database behind the log: sqlite or PostgreSQL, the same SQL with its own placeholders."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self.path = None if self.postgres else Path(url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url)

    def describe(self) -> str:
        return "postgresql" if self.postgres else str(self.path)

    def connect(self) -> Any:
        """A new connection with the schema in place (each thread uses its own)."""
        if self.postgres:
            import psycopg

            conn: Any = psycopg.connect(self.url, connect_timeout=PG_CONNECT_TIMEOUT)
        else:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=SQLITE_BUSY_MS / 1000, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        try:
            with self.transaction(conn) as cur:
                if self.postgres:  # two workers creating the tables at once collide in PostgreSQL's catalog
                    cur.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
                for statement in SCHEMA:
                    cur.execute(statement)
        except Exception:
            conn.close()
            raise
        return conn

    def connect_reader(self) -> Any:
        """A connection for reading only: a sqlite file must exist and is opened read-only (the
        monitor never creates or changes a log), PostgreSQL as usual."""
        if self.postgres:
            import psycopg

            return psycopg.connect(self.url, connect_timeout=PG_CONNECT_TIMEOUT)
        assert self.path is not None
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no prediction log there")
        return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=SQLITE_BUSY_MS / 1000)

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.postgres else statement

    def tables(self, cur: _Cursor) -> set[str]:
        """The log's tables: a log begun before one row per request still holds the LEGACY table,
        and one no writer of today has opened yet lacks the new ones."""
        query = ("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()" if self.postgres
                 else "SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in cur.execute(query)}

    def transaction(self, conn: Any) -> _Transaction:
        return _Transaction(self, conn)


class _Transaction:
    """`with store.transaction(conn) as cur:` commits on success, rolls back on error."""

    def __init__(self, store: Store, conn: Any) -> None:
        self.store, self.conn = store, conn

    def __enter__(self) -> _Cursor:
        return _Cursor(self.store, self.conn.cursor())

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is None:
            self.conn.commit()
        else:
            with contextlib.suppress(Exception):
                self.conn.rollback()


class _Cursor:
    def __init__(self, store: Store, cursor: Any) -> None:
        self.store, self.cursor = store, cursor

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.cursor.execute(self.store.sql(statement), tuple(params))
        return list(self.cursor.fetchall()) if self.cursor.description else []

    def executemany(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.cursor.executemany(self.store.sql(statement), rows)

    def execute_in(self, statement: str, keys: Sequence[Any], *params: Any) -> list[tuple[Any, ...]]:
        """`statement` with `{keys}` standing for `?, ?, ...`, run for IN_KEYS keys at a time; the
        rows of all runs. `params` come after the keys."""
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(keys), IN_KEYS):
            part = list(keys[start:start + IN_KEYS])
            rows += self.execute(statement.format(keys=", ".join("?" * len(part))), [*part, *params])
        return rows


# --- the write side -----------------------------------------------------------------------------

class Record(NamedTuple):
    """One /predict request as the route hands it over (encoded by the writer, not the route; a
    tuple: a frozen dataclass cost the route a microsecond more per request)."""

    request_id: str
    ts: float
    rows: list[dict[str, Any]]  # validated rows, id column included when sent
    predictions: list[Any]
    scores: Any  # positive-class score per row, or None (regression)
    probabilities: Any  # rows x classes, or None


class FeedbackError(ValueError):
    """Feedback that names what does not exist: `loc` is the field, as in a 422 entry."""

    def __init__(self, loc: list[Any], msg: str) -> None:
        super().__init__(msg)
        self.loc, self.msg = loc, msg


class _Flush:
    """A marker in the pending list: set once every record before it is written or dropped."""

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class PredictionLog:
    """The write side for one server process: `record` from the route, a writer thread, `feedback`.

    The route side is one uncontended lock and a list append per request: the writer wakes once
    per gathering of records (not per request), takes the whole list and writes it. A
    `queue.Queue` cost the route and the writer about 10 us a request in locks and wake-ups."""

    def __init__(self, url: str, *, model_version: str = "unknown", model_digest: str = "unknown",
                 id_column: str | None = None, retention_days: float | None = 30.0,
                 on_written: Callable[[int], None] = lambda n: None,
                 on_dropped: Callable[[str, int], None] = lambda reason, n: None,
                 queue_size: int = QUEUE_REQUESTS, queue_rows: int = QUEUE_ROWS, prune_every: float = PRUNE_EVERY_SECONDS,
                 linger: float = BATCH_LINGER_SECONDS) -> None:
        self.store = Store(url)
        self.model_version, self.model_digest = model_version, model_digest
        self.id_column = id_column
        self.retention_days = retention_days
        self.on_written, self.on_dropped = on_written, on_dropped
        self.queue_size, self.queue_rows, self.prune_every, self.linger = queue_size, queue_rows, prune_every, linger
        self._lock = threading.Lock()
        self._pending: list[Any] = []  # records, with _Flush markers and _STOP among them
        self._queued = 0  # records taken in and not yet written or dropped: the memory bound
        self._queued_rows = 0  # their rows
        self._wake = threading.Event()  # set when _pending turns non-empty
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._last_prune = 0.0

    # route side: never blocks, never raises
    def record(self, record: Record) -> None:
        with self._lock:
            # a request of more rows than the bound (MLOPS_MAX_ROWS raised past it) gets in alone
            if self._queued >= self.queue_size or (self._queued_rows and self._queued_rows + len(record.rows) > self.queue_rows):
                full = True
            else:
                full = False
                self._pending.append(record)
                self._queued += 1
                self._queued_rows += len(record.rows)
                first = len(self._pending) == 1
        if full:
            self.on_dropped("queue_full", len(record.rows))
        elif first:
            self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything recorded so far is written (or dropped); False on timeout, or at
        once when no writer runs and records wait."""
        if self._thread is None or not self._thread.is_alive():
            return self._queued == 0
        marker = _Flush()
        self._append(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Graceful shutdown: write what is queued, then stop the writer."""
        if self._thread is None:
            return
        self.flush(timeout)
        self._append(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def _append(self, marker: Any) -> None:
        with self._lock:
            self._pending.append(marker)
        self._wake.set()

    # writer side
    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.linger)  # let the records of the next few milliseconds join this transaction
            with self._lock:
                taken, self._pending = self._pending, []
                self._wake.clear()
            if self._write_all(taken):
                break
            self._maybe_prune()
        self._disconnect()

    def _write_all(self, taken: list[Any]) -> bool:
        """Write the taken records in transactions of BATCH_REQUESTS, setting each flush marker
        once what precedes it is written; True when told to stop."""
        batch: list[Record] = []
        for item in taken:
            if isinstance(item, Record):
                batch.append(item)
                if len(batch) == BATCH_REQUESTS:
                    self._write(batch)
                    batch = []
                continue
            if batch:
                self._write(batch)
                batch = []
            if item is _STOP:
                return True
            item.done.set()
        if batch:
            self._write(batch)
        return False

    def _write(self, batch: list[Record]) -> None:
        rows = sum(len(record.rows) for record in batch)
        try:
            import orjson

            requests: list[tuple[Any, ...]] = []
            ids: list[tuple[Any, ...]] = []
            for record in batch:
                requests.append(self._request(orjson, record, ids))
            if self._conn is None:
                self._conn = self.store.connect()
            with self.store.transaction(self._conn) as cur:
                cur.executemany(INSERT_REQUEST, requests)
                cur.executemany(INSERT_ID, ids)
            self.on_written(rows)
        except Exception:
            self.on_dropped("write_error", rows)
            self._disconnect()
        finally:
            with self._lock:
                self._queued -= len(batch)
                self._queued_rows -= rows

    def _request(self, orjson: Any, record: Record, ids: list[tuple[Any, ...]]) -> tuple[Any, ...]:
        """The `requests` row of one record; appends its `request_ids` rows (none for a single row)
        to `ids`. An id is written by `id_key`, as the /feedback lookup spells it; the rest is read
        back only by json.loads (orjson: faster), one JSON text per column."""
        rows, id_column, request_id = record.rows, self.id_column, record.request_id
        keys = None
        if id_column is not None:
            idents = [row.get(id_column) for row in rows]
            if idents.count(None) < len(idents):
                keys = ["null" if ident is None else id_key(ident) for ident in idents]
                if len(rows) > 1:
                    ids += [(key, request_id, index) for index, key in enumerate(keys) if key != "null"]
        return (request_id, record.ts, self.model_version, self.model_digest, len(rows),
                None if keys is None else f"[{','.join(keys)}]", _fast_json(orjson, _features(rows, id_column)),
                _fast_json(orjson, record.predictions),
                None if record.scores is None else _fast_json(orjson, record.scores),
                None if record.probabilities is None else _fast_json(orjson, record.probabilities))

    def _maybe_prune(self) -> None:
        now = time.time()
        if self.retention_days is None or now - self._last_prune < self.prune_every:
            return
        self._last_prune = now
        try:
            self.prune(now)
        except Exception:
            self._disconnect()

    def prune(self, now: float | None = None) -> int:
        """Delete requests (their ids included) and labels older than the retention, in both layouts;
        returns the predicted rows deleted."""
        if self.retention_days is None:
            return 0
        cutoff = (now or time.time()) - self.retention_days * 86400
        conn = self._conn if self._conn is not None and threading.current_thread() is self._thread else None
        own = conn is None
        conn = conn or self.store.connect()
        try:
            with self.store.transaction(conn) as cur:
                old = cur.execute("SELECT request_id, row_count, ids FROM requests WHERE ts < ?", (cutoff,))
                cur.executemany("DELETE FROM request_ids WHERE id_value = ? AND request_id = ?",
                                [(id_key(ident), request_id) for request_id, count, ids in old if ids is not None and count > 1
                                 for ident in json.loads(ids) if ident is not None])
                cur.execute("DELETE FROM requests WHERE ts < ?", (cutoff,))
                deleted = sum(count for _, count, _ in old)
                if LEGACY in self.store.tables(cur):
                    deleted += cur.execute(f"SELECT COUNT(*) FROM {LEGACY} WHERE ts < ?", (cutoff,))[0][0]
                    cur.execute(f"DELETE FROM {LEGACY} WHERE ts < ?", (cutoff,))
                cur.execute("DELETE FROM labels WHERE ts < ?", (cutoff,))
            return int(deleted)
        finally:
            if own:
                conn.close()

    def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    # feedback: on the /feedback path, in a worker thread of its own
    def feedback(self, labels: list[Any], request_id: str | None = None, ids: list[Any] | None = None,
                 wait: float = 0.5) -> int:
        """Store ground truth for one request's rows (in order) or for rows by id; returns rows labelled.

        A request this process answered but has not written yet is flushed first; one answered by
        another worker gets `wait` seconds to appear. Raises FeedbackError naming the field."""
        self.flush()
        deadline = time.monotonic() + wait
        conn = self.store.connect()
        try:
            while True:
                missing = self._missing(conn, labels, request_id, ids)
                if missing is None or time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
            if missing is not None:
                raise missing
            now = time.time()
            with self.store.transaction(conn) as cur:
                if request_id is not None:
                    cur.execute("DELETE FROM labels WHERE request_id = ?", (request_id,))
                    cur.executemany(INSERT_ROW_LABEL,
                                    [(request_id, i, encode(label), now) for i, label in enumerate(labels)])
                else:
                    keys = [encode(i) for i in ids or []]
                    cur.executemany("DELETE FROM labels WHERE request_id IS NULL AND id_value = ?", [(k,) for k in keys])
                    cur.executemany(INSERT_ID_LABEL,
                                    [(k, encode(label), now) for k, label in zip(keys, labels, strict=True)])
            return len(labels)
        finally:
            conn.close()

    def _missing(self, conn: Any, labels: list[Any], request_id: str | None, ids: list[Any] | None) -> FeedbackError | None:
        with self.store.transaction(conn) as cur:
            legacy = LEGACY in self.store.tables(cur)
            if request_id is not None:
                found = cur.execute("SELECT row_count FROM requests WHERE request_id = ?", (request_id,))
                if not found and legacy:
                    found = cur.execute(f"SELECT COUNT(*) FROM {LEGACY} WHERE request_id = ?", (request_id,))
                count = found[0][0] if found else 0
                if not count:
                    return FeedbackError(["request_id"], f"unknown request id {request_id!r} (never logged, or pruned)")
                if count != len(labels):
                    return FeedbackError(["labels"], f"request {request_id} had {count} row(s); got {len(labels)} label(s)")
                return None
            keys = [id_key(i) for i in ids or []]
            known = {r[0] for r in cur.execute_in("SELECT DISTINCT id_value FROM request_ids WHERE id_value IN ({keys})", keys)}
            known |= {r[0][1:-1] for r in cur.execute_in(  # '["A"]' -> '"A"'
                "SELECT DISTINCT ids FROM requests WHERE row_count = 1 AND ids IS NOT NULL AND ids IN ({keys})",
                [f"[{key}]" for key in keys])}
            if legacy:
                query = f"SELECT DISTINCT id_value FROM {LEGACY} WHERE id_value IN ({{keys}})"
                known |= {r[0] for r in cur.execute_in(query, keys)}
            for index, key in enumerate(keys):
                if key not in known:
                    return FeedbackError(["ids", index], f"unknown id {json.loads(key)!r} (no logged prediction has it)")
            return None


# --- the read side ------------------------------------------------------------------------------

def export_rows(url: str, since: float | None = None, until: float | None = None) -> Iterator[dict[str, Any]]:
    """Every logged row with `since <= ts < until` (unix seconds), oldest first, with its label.

    Yields {"request_id", "row", "ts", "model_version", "model_digest", "id", "features",
    "prediction", "score", "label"}: `id`, `score` and `label` are None when absent; `label` is the
    ground truth given for that request's row, else the one given for its id. Rows come in the
    order of ts, request id, row, from both layouts. `url`: a sqlite path (or sqlite:///path),
    which must exist, or a postgresql:// URL."""
    store = Store(url)
    conn = store.connect_reader()
    try:
        window = (-ALL_TIME if since is None else since, ALL_TIME if until is None else until)
        cur = _Cursor(store, conn.cursor())
        tables = store.tables(cur)
        layouts = [_export_requests(store, conn, cur, window)] if "requests" in tables else []
        if LEGACY in tables:
            layouts.append(_export_legacy(store, conn, window))
        yield from heapq.merge(*layouts, key=lambda row: (row["ts"], row["request_id"], row["row"]))
    finally:
        conn.close()


def _export_requests(store: Store, conn: Any, other: _Cursor, window: tuple[float, float]) -> Iterator[dict[str, Any]]:
    """The rows of the `requests` table, EXPORT_REQUESTS requests at a time with their labels
    (read through `other`, while this cursor is still being read)."""
    cur = conn.cursor()
    cur.execute(store.sql(EXPORT_NEW), window)
    while chunk := cur.fetchmany(EXPORT_REQUESTS):
        by_row, by_id = _labels(other, chunk)
        for rid, ts, version, digest, count, ids, features, predictions, scores in chunk:
            idents = [None] * count if ids is None else json.loads(ids)
            score_list = [None] * count if scores is None else json.loads(scores)
            for index, (ident, row, prediction, score) in enumerate(zip(
                    idents, _rows_of(json.loads(features)), json.loads(predictions), score_list, strict=True)):
                label = by_row.get((rid, index))
                if label is None and ident is not None:
                    label = by_id.get(id_key(ident))
                yield {"request_id": rid, "row": index, "ts": ts, "model_version": version, "model_digest": digest,
                       "id": ident, "features": row, "prediction": prediction,
                       "score": None if score is None else float(score),
                       "label": None if label is None else json.loads(label)}


def _labels(cur: _Cursor, chunk: list[tuple[Any, ...]]) -> tuple[dict[tuple[str, int], str], dict[str, str]]:
    """The latest label text per (request id, row) and per id for a chunk of EXPORT_NEW rows."""
    request_ids = [rid for rid, *_ in chunk]
    all_ids = [json.loads(ids) for _, _, _, _, _, ids, *_ in chunk if ids is not None]
    keys = sorted({id_key(ident) for idents in all_ids for ident in idents if ident is not None})
    by_ts = operator.itemgetter(-1)  # the latest label wins
    by_row = {(rid, index): label for rid, index, label, _ in sorted(cur.execute_in(
        "SELECT request_id, row_index, label, ts FROM labels WHERE request_id IN ({keys})", request_ids), key=by_ts)}
    by_id = {key: label for key, label, _ in sorted(cur.execute_in(
        "SELECT id_value, label, ts FROM labels WHERE request_id IS NULL AND id_value IN ({keys})", keys), key=by_ts)}
    return by_row, by_id


def _export_legacy(store: Store, conn: Any, window: tuple[float, float]) -> Iterator[dict[str, Any]]:
    """LEGACY: the rows of the `predictions` table (one per predicted row), labels joined in SQL."""
    cur = conn.cursor()
    cur.execute(store.sql(EXPORT_LEGACY), window)
    while chunk := cur.fetchmany(1000):
        for rid, row, ts, version, digest, ident, features, prediction, score, label in chunk:
            yield {"request_id": rid, "row": row, "ts": ts, "model_version": version, "model_digest": digest,
                   "id": None if ident is None else json.loads(ident), "features": json.loads(features),
                   "prediction": json.loads(prediction), "score": score,
                   "label": None if label is None else json.loads(label)}

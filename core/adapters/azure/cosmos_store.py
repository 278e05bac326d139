"""`DocumentStore` on Azure Cosmos DB (NoSQL API), with the SQLite store's semantics.

* Containers (`core/containers.py`) are created if missing with their partition key and
  default TTL. A container without a default TTL gets `defaultTtl = -1` (TTL on, nothing
  expires by default) so that a document's own `ttl` is honoured in every container, as
  the local store does.
* Filters become parameterised Cosmos SQL; paths are validated exactly like the SQLite
  store's and rendered as `c["a"]["b"][1]` (no identifier ever comes from a value).
  Cosmos comparisons are type-strict (across JSON types they match nothing), which is the
  SQLite store's rule too.
* Paging is keyset paging over a total order: `order_by` value (by JSON type first:
  missing < null < booleans < numbers < strings), then partition key, then id. Cosmos
  serves an ORDER BY of several properties only from a composite index, so every
  container is created with composite indexes for `(partition key, id)`, `(id, partition
  key)` and for each path in `ORDER_BY_PATHS` (or the `order_by_paths` given); ordering by
  any other path is refused up front with an error naming the path. Continuation tokens
  are the SQLite store's format: the last key, bound to the query that produced it. A
  page cannot end on a document whose `order_by` value is an array or an object (the
  keyset cannot compare them): that query is refused naming the document.
* Every partition-scoped query also carries `partition key = @pk` in its WHERE clause:
  redundant on Cosmos DB, required by cosmosdb-server, which ignores the request's
  partition scope.
* `upsert_many` validates every document first, then writes them concurrently (one
  point upsert each, `UPSERT_CONCURRENCY` workers). Not a transactional batch: the test
  server (cosmosdb-server 1.0.1) reads a batch's partition key from each operation rather
  than from the request header the Python SDK sends, so batches cannot be tested here,
  and the port promises no atomicity across documents.
* Errors: 409/412 -> ConflictError, 404 -> None/False for items and NotFoundError for a
  missing container, 429 -> retried by the SDK honouring `x-ms-retry-after-ms`
  (`THROTTLE_RETRIES` times, at most `THROTTLE_WAIT_SECONDS` in all), then TransientError
  with `retry_after`; 401/403 and credential failures -> AuthError; timeouts, connection
  errors and 5xx -> TransientError; other 4xx -> PermanentError.
"""

from __future__ import annotations

import json
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey
from azure.cosmos.exceptions import CosmosClientTimeoutError, CosmosHttpResponseError

from core.config import Settings
from core.containers import CONTAINERS
from core.continuation import decode_token, encode_token, fingerprint
from core.documents import (
    Scalar,
    check_comparison,
    check_limit,
    check_path,
    check_scalar,
    document_keys,
    encode_document,
    exists_wanted,
    in_values,
    refuse_not_equals_none,
)
from core.errors import (
    AuthError,
    ConflictError,
    NotFoundError,
    PermanentError,
    PortError,
    TransientError,
)
from core.ports import ContainerSpec, Document, Filter, Page

THROTTLE_RETRIES = 5
THROTTLE_WAIT_SECONDS = 30
UPSERT_CONCURRENCY = 8  # within the SDK's HTTP connection pool (10 per host)

ORDER_BY_PATHS: dict[str, tuple[str, ...]] = {
    "shards": ("createdAt", "updatedAt", "lastSyncedAt", "externalId", "shardTypeName"),
    "shard_types": ("createdAt", "version"),
    "integrations": ("createdAt", "updatedAt"),
    "sync_executions": ("startedAt", "createdAt", "updatedAt"),
    "sync_state": ("updatedAt",),
    "suggested_links": ("createdAt", "confidence"),
    "idempotency": ("createdAt",),
    "webhook_registrations": ("createdAt",),
    "quarantine": ("createdAt", "updatedAt"),
}
"""Paths each container can be ordered by (besides id and its partition key): each one
gets a composite index. Infrastructure that creates the containers (the Bicep) must
declare the same composite indexes, or those ORDER BY queries fail in Azure."""

EXCLUDED_INDEX_PATHS = ('/"_etag"/?', "/rawData/*", "/structuredData/rawData/*")
"""Raw provider payloads are stored for replay and audit, never queried: not indexed."""

_SYSTEM_FIELDS = ("_rid", "_self", "_attachments")
_SEGMENT = re.compile(r"([A-Za-z0-9_]+)((?:\[\d+\])*)")
_RETRY_AFTER_HEADER = "x-ms-retry-after-ms"
_OWNER_RESOURCE_NOT_FOUND = 1003
_TRANSIENT_STATUSES = frozenset({408, 410, 429, 449, 500, 502, 503, 504})
# cosmosdb-server 1.0.1 answers a point read of a missing item with a 500 unless this
# header is set (its read handler dereferences the missing item); it is a query option that
# a point read of Cosmos DB does not use. Sent through azure-core's per-call `headers`.
_POINT_READ_HEADERS = {"x-ms-documentdb-query-enablecrosspartition": "true"}

# JSON type ranks in Cosmos DB's ORDER BY order, with the predicate that tests for each.
_RANK_PREDICATES = (
    "NOT IS_DEFINED({0})",
    "IS_NULL({0})",
    "IS_BOOL({0})",
    "IS_NUMBER({0})",
    "IS_STRING({0})",
    "IS_ARRAY({0})",
    "IS_OBJECT({0})",
)
_COMPARABLE_RANKS = frozenset({2, 3, 4})


# -------------------------------------------------------------------------------------
# client (one per process)
# -------------------------------------------------------------------------------------

_clients: dict[tuple[str, str | None, bool], CosmosClient] = {}
_clients_lock = threading.Lock()


def shared_client(endpoint: str, key: str | None, *, verify_tls: bool = True) -> CosmosClient:
    """The process's CosmosClient for this endpoint: an account key only for emulators,
    DefaultAzureCredential (managed identity in Azure) otherwise."""
    cache_key = (endpoint, key, verify_tls)
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            with cosmos_errors(endpoint):
                client = _clients[cache_key] = _new_client(endpoint, key, verify_tls)
        return client


def _new_client(endpoint: str, key: str | None, verify_tls: bool) -> CosmosClient:
    credential: Any
    if key:
        credential = key
    else:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    if not verify_tls:
        from urllib3.exceptions import InsecureRequestWarning

        warnings.filterwarnings("ignore", category=InsecureRequestWarning)
    return CosmosClient(
        endpoint,
        credential=credential,
        connection_verify=verify_tls,
        retry_throttle_total=THROTTLE_RETRIES,
        retry_throttle_backoff_max=THROTTLE_WAIT_SECONDS,
    )


def build(settings: Settings) -> CosmosDocumentStore:
    """The composition root's factory (`STORE=cosmos`)."""
    from core.runtime import ConfigurationError

    endpoint = settings.cosmos_endpoint
    if not endpoint:
        raise ConfigurationError("STORE=cosmos needs COSMOS_ENDPOINT (the account's URL)")
    return CosmosDocumentStore(
        lambda: shared_client(endpoint, settings.cosmos_key, verify_tls=settings.cosmos_verify_tls),
        settings.cosmos_database,
    )


# -------------------------------------------------------------------------------------
# errors
# -------------------------------------------------------------------------------------


def _retry_after(exc: CosmosHttpResponseError) -> float | None:
    headers = exc.headers or {}
    value = headers.get(_RETRY_AFTER_HEADER)
    try:
        return None if value is None else int(value) / 1000
    except ValueError:
        return None


def translate(exc: Exception, resource: str) -> PortError:
    """An SDK exception as the port error it means, naming `resource`."""
    if isinstance(exc, CosmosHttpResponseError):
        status = exc.status_code or 0
        detail = f"Cosmos DB {resource}: HTTP {status}"
        if status == 429:
            return TransientError(
                f"{detail}: throttled (request rate too large) after {THROTTLE_RETRIES} retries",
                resource=resource,
                retry_after=_retry_after(exc),
            )
        if status in (401, 403):
            return AuthError(f"{detail}: credentials refused", resource=resource)
        if status in (409, 412):
            return ConflictError(f"{detail}: conflict", resource=resource)
        if status == 404:
            return NotFoundError(f"{detail}: not found", resource=resource)
        if status == 413:
            return PermanentError(f"{detail}: request too large", resource=resource)
        if status in _TRANSIENT_STATUSES or status >= 500 or status == 0:
            return TransientError(f"{detail}: {_reason(exc)}", resource=resource)
        return PermanentError(f"{detail}: {_reason(exc)}", resource=resource)
    if isinstance(exc, ClientAuthenticationError):
        return AuthError(
            f"Cosmos DB {resource}: no credential could be obtained ({type(exc).__name__})",
            resource=resource,
        )
    if isinstance(exc, CosmosClientTimeoutError):
        return TransientError(f"Cosmos DB {resource}: timed out", resource=resource)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientError(
            f"Cosmos DB {resource}: cannot reach the service ({type(exc).__name__})",
            resource=resource,
        )
    return TransientError(f"Cosmos DB {resource}: {type(exc).__name__}", resource=resource)


def _reason(exc: CosmosHttpResponseError) -> str:
    """The server's message without the SDK's repeated headers and activity ids."""
    message = str(getattr(exc, "message", "") or exc).strip()
    first = message.splitlines()[0] if message else ""
    return first[:300]


@contextmanager
def cosmos_errors(resource: str) -> Iterator[None]:
    try:
        yield
    except PortError:
        raise
    except (CosmosHttpResponseError, ClientAuthenticationError) as exc:
        raise translate(exc, resource) from exc
    except (CosmosClientTimeoutError, ServiceRequestError, ServiceResponseError) as exc:
        raise translate(exc, resource) from exc


# -------------------------------------------------------------------------------------
# the store
# -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Prepared:
    body: Document
    pk: str
    id: str


class _Params:
    def __init__(self) -> None:
        self.values: list[dict[str, Any]] = []

    def bind(self, value: Any) -> str:
        name = f"@p{len(self.values)}"
        self.values.append({"name": name, "value": value})
        return name


def composite_keys(spec: ContainerSpec, order_by_paths: Iterable[str]) -> list[list[str]]:
    keys = [[spec.partition_field, "id"], ["id", spec.partition_field]]
    for path in sorted(order_by_paths):
        order = _sort_keys(spec, path)
        if order not in keys:
            keys.append(order)
    return keys


def indexing_policy(spec: ContainerSpec, order_by_paths: Iterable[str]) -> dict[str, Any]:
    """Everything indexed but raw payloads, plus the composite indexes paging needs. The
    Bicep loads the same policies from `infra/bicep/modules/cosmos-indexing.json`, which
    `python -m core.adapters.azure.cosmos_store` writes (a test keeps them equal)."""
    composites = []
    for keys in composite_keys(spec, order_by_paths):
        for order in ("ascending", "descending"):
            composites.append([{"path": _index_path(key), "order": order} for key in keys])
    return {
        "indexingMode": "consistent",
        "automatic": True,
        "includedPaths": [{"path": "/*"}],
        "excludedPaths": [{"path": path} for path in EXCLUDED_INDEX_PATHS],
        "compositeIndexes": composites,
    }


def indexing_policies() -> dict[str, dict[str, Any]]:
    return {spec.name: indexing_policy(spec, ORDER_BY_PATHS[spec.name]) for spec in CONTAINERS}


class CosmosDocumentStore:
    """`DocumentStore` on one Cosmos DB database (see the module docstring)."""

    def __init__(
        self,
        connect: Callable[[], CosmosClient],
        database: str,
        containers: Sequence[ContainerSpec] = CONTAINERS,
        *,
        order_by_paths: Mapping[str, Sequence[str]] = ORDER_BY_PATHS,
        upsert_concurrency: int = UPSERT_CONCURRENCY,
    ) -> None:
        self._connect = connect
        self._database_name = database
        self._specs = {spec.name: spec for spec in containers}
        self._order_by_paths: dict[str, frozenset[str]] = {}
        for spec in containers:
            paths = tuple(order_by_paths.get(spec.name, ()))
            for path in paths:
                _segments(spec, path)
            self._order_by_paths[spec.name] = frozenset(paths)
        self._upsert_concurrency = upsert_concurrency
        self._lock = threading.Lock()
        self._database: DatabaseProxy | None = None
        self._containers: dict[str, ContainerProxy] = {}
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"CosmosDocumentStore(database={self._database_name!r})"

    def close(self) -> None:
        """Stop the upsert workers; the client is the process's and stays open."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    # ---------------------------------------------------------------- set-up

    def _ensure(self) -> DatabaseProxy:
        """Create the database and every container on first use (once per instance)."""
        database = self._database
        if database is not None:
            return database
        with self._lock:
            if self._database is not None:
                return self._database
            with cosmos_errors(self._database_name):
                client = self._connect()
                database = client.create_database_if_not_exists(self._database_name)
            for spec in self._specs.values():
                self._containers[spec.name] = self._ensure_container(database, spec)
            self._database = database
            return database

    def _ensure_container(self, database: DatabaseProxy, spec: ContainerSpec) -> ContainerProxy:
        with cosmos_errors(f"{self._database_name}/{spec.name}"):
            container = database.create_container_if_not_exists(
                id=spec.name,
                partition_key=PartitionKey(path=spec.partition_key),
                default_ttl=spec.default_ttl_seconds or -1,
                indexing_policy=self.indexing_policy(spec),
            )
            properties = container.read()
        paths = properties.get("partitionKey", {}).get("paths", [])
        if paths != [spec.partition_key]:
            raise PermanentError(
                f"Cosmos DB container {spec.name} exists with partition key {paths},"
                f" expected [{spec.partition_key!r}]",
                resource=spec.name,
            )
        return container

    def indexing_policy(self, spec: ContainerSpec) -> dict[str, Any]:
        return indexing_policy(spec, self._order_by_paths[spec.name])

    def _composite_keys(self, spec: ContainerSpec) -> list[list[str]]:
        return composite_keys(spec, self._order_by_paths[spec.name])

    def _container(self, name: str) -> tuple[ContainerSpec, ContainerProxy]:
        spec = self._specs.get(name)
        if spec is None:
            raise NotFoundError(f"container {name!r} does not exist", resource=name)
        self._ensure()
        return spec, self._containers[name]

    # ---------------------------------------------------------------- reads

    def get(self, container: str, partition_key: str, id: str) -> Document | None:
        spec, proxy = self._container(container)
        with self._item_errors(spec, partition_key, id):
            try:
                return _public(
                    proxy.read_item(id, partition_key, headers=dict(_POINT_READ_HEADERS))
                )
            except CosmosHttpResponseError as exc:
                if _missing_item(exc):
                    return None
                raise

    def query(
        self,
        container: str,
        *,
        partition_key: str | None = None,
        filters: Sequence[Filter] = (),
        order_by: str | None = None,
        descending: bool = False,
        limit: int = 100,
        continuation: str | None = None,
    ) -> Page:
        spec = self._spec(container)
        check_limit(container, limit)
        params = _Params()
        clauses = self._where(spec, partition_key, filters, params)
        keys = self._order_keys(spec, order_by)
        query_id = fingerprint(container, clauses, params.values, order_by, descending)
        ranked = order_by is not None
        if continuation is not None:
            last = decode_token(continuation, query_id, len(keys) + int(ranked), container)
            clauses.append(_after(spec, keys, last, ranked, descending, params))
        direction = "DESC" if descending else "ASC"
        order = ", ".join(f"{_ref(spec, key)} {direction}" for key in keys)
        sql = f"SELECT TOP {limit + 1} * FROM c{_where_sql(clauses)} ORDER BY {order}"
        items = self._run(spec, sql, params, partition_key)
        page = [_public(item) for item in items[:limit]]
        token = None
        if len(items) > limit:
            token = encode_token(_key_of(spec, keys, items[limit - 1], ranked), query_id)
        return Page(items=page, continuation=token)

    def count(
        self, container: str, *, partition_key: str | None = None, filters: Sequence[Filter] = ()
    ) -> int:
        spec = self._spec(container)
        params = _Params()
        clauses = self._where(spec, partition_key, filters, params)
        sql = f"SELECT VALUE COUNT(1) FROM c{_where_sql(clauses)}"
        return int(sum(self._run(spec, sql, params, partition_key)))

    def _run(
        self, spec: ContainerSpec, sql: str, params: _Params, partition_key: str | None
    ) -> list[Any]:
        _, proxy = self._container(spec.name)
        scope: dict[str, Any] = (
            {"enable_cross_partition_query": True}
            if partition_key is None
            else {"partition_key": partition_key}
        )
        with cosmos_errors(spec.name):
            return list(proxy.query_items(sql, parameters=params.values, **scope))

    def _spec(self, container: str) -> ContainerSpec:
        spec = self._specs.get(container)
        if spec is None:
            raise NotFoundError(f"container {container!r} does not exist", resource=container)
        return spec

    def _where(
        self,
        spec: ContainerSpec,
        partition_key: str | None,
        filters: Sequence[Filter],
        params: _Params,
    ) -> list[str]:
        clauses: list[str] = []
        if partition_key is not None:
            if not isinstance(partition_key, str):
                raise PermanentError(
                    f"partition_key must be a string, got {type(partition_key).__name__}",
                    resource=spec.name,
                )
            # Redundant with the request's partition scope on Cosmos DB; cosmosdb-server
            # ignores that scope and requires the key in the query.
            clauses.append(f"{_ref(spec, spec.partition_field)} = {params.bind(partition_key)}")
        clauses.extend(_compile_filter(spec, condition, params) for condition in filters)
        return clauses

    def _order_keys(self, spec: ContainerSpec, order_by: str | None) -> list[str]:
        if order_by is None:
            return [spec.partition_field, "id"]
        _segments(spec, order_by)
        keys = _sort_keys(spec, order_by)
        if keys not in self._composite_keys(spec):
            raise PermanentError(
                f"order_by path {order_by!r} in container {spec.name} has no composite index:"
                " add it to ORDER_BY_PATHS (and the Bicep) to order by it",
                resource=spec.name,
            )
        return keys

    # ---------------------------------------------------------------- writes

    def create(self, container: str, doc: Document) -> Document:
        spec = self._spec(container)
        prepared = _prepare(spec, doc)
        _, proxy = self._container(container)
        with self._item_errors(spec, prepared.pk, prepared.id):
            try:
                return _public(proxy.create_item(prepared.body))
            except CosmosHttpResponseError as exc:
                if exc.status_code == 409:
                    raise ConflictError(
                        f"document {prepared.id!r} already exists in {container}/{prepared.pk}",
                        resource=f"{container}/{prepared.pk}/{prepared.id}",
                    ) from exc
                raise

    def upsert(self, container: str, doc: Document, *, if_match: str | None = None) -> Document:
        spec = self._spec(container)
        prepared = _prepare(spec, doc)
        _, proxy = self._container(container)
        with self._item_errors(spec, prepared.pk, prepared.id):
            if if_match is None:
                return _public(proxy.upsert_item(prepared.body))
            try:
                return _public(
                    proxy.replace_item(
                        prepared.id,
                        prepared.body,
                        etag=if_match,
                        match_condition=MatchConditions.IfNotModified,
                    )
                )
            except CosmosHttpResponseError as exc:
                if exc.status_code in (404, 412) and not _missing_container(exc):
                    raise ConflictError(
                        f"document {container}/{prepared.pk}/{prepared.id} changed or is gone"
                        " (etag mismatch)",
                        resource=f"{container}/{prepared.pk}/{prepared.id}",
                    ) from exc
                raise

    def get_many(
        self, container: str, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Document]:
        """Concurrent point reads: 1 RU each, and each goes straight to its partition."""
        unique = list(dict.fromkeys(keys))
        if len(unique) <= 1:
            return {key: doc for key in unique if (doc := self.get(container, *key)) is not None}
        results = self._workers().map(lambda key: self.get(container, *key), unique)
        return {key: doc for key, doc in zip(unique, results, strict=True) if doc is not None}

    def upsert_many(self, container: str, docs: Sequence[Document]) -> list[Document]:
        spec = self._spec(container)
        prepared = [_prepare(spec, doc) for doc in docs]
        if not prepared:
            return []
        _, proxy = self._container(container)

        def write(item: _Prepared) -> Document:
            with self._item_errors(spec, item.pk, item.id):
                return _public(proxy.upsert_item(item.body))

        if len(prepared) == 1:
            return [write(prepared[0])]
        return list(self._workers().map(write, prepared))

    def _workers(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self._upsert_concurrency, thread_name_prefix="cosmos-upsert"
                )
            return self._pool

    def delete(
        self, container: str, partition_key: str, id: str, *, if_match: str | None = None
    ) -> bool:
        spec, proxy = self._container(container)
        condition: dict[str, Any] = (
            {}
            if if_match is None
            else {"etag": if_match, "match_condition": MatchConditions.IfNotModified}
        )
        with self._item_errors(spec, partition_key, id):
            try:
                proxy.delete_item(id, partition_key, **condition)
            except CosmosHttpResponseError as exc:
                if if_match is not None and (exc.status_code == 412 or _missing_item(exc)):
                    raise ConflictError(
                        f"document {container}/{partition_key}/{id} changed or is gone"
                        " (etag mismatch)",
                        resource=f"{container}/{partition_key}/{id}",
                    ) from exc
                if _missing_item(exc):
                    return False
                raise
        return True

    @contextmanager
    def _item_errors(self, spec: ContainerSpec, partition_key: str, id: str) -> Iterator[None]:
        """Item calls: a missing container is named as such, anything else by the item."""
        try:
            yield
        except CosmosHttpResponseError as exc:
            if _missing_container(exc):
                raise NotFoundError(
                    f"Cosmos DB container {self._database_name}/{spec.name} does not exist",
                    resource=spec.name,
                ) from exc
            raise translate(exc, f"{spec.name}/{partition_key}/{id}") from exc
        except (
            ClientAuthenticationError,
            CosmosClientTimeoutError,
            ServiceRequestError,
            ServiceResponseError,
        ) as exc:
            raise translate(exc, f"{spec.name}/{partition_key}/{id}") from exc

    def ping(self) -> None:
        database = self._ensure()
        with cosmos_errors(self._database_name):
            database.read()


# -------------------------------------------------------------------------------------
# documents
# -------------------------------------------------------------------------------------


def _missing_item(exc: CosmosHttpResponseError) -> bool:
    return exc.status_code == 404 and not _missing_container(exc)


def _missing_container(exc: CosmosHttpResponseError) -> bool:
    return exc.status_code == 404 and exc.sub_status == _OWNER_RESOURCE_NOT_FOUND


def _public(doc: Mapping[str, Any]) -> Document:
    """The stored document as the port shows it: Cosmos' own bookkeeping fields dropped,
    `_etag` and `_ts` kept."""
    return {key: value for key, value in doc.items() if key not in _SYSTEM_FIELDS}


def _prepare(spec: ContainerSpec, doc: Document) -> _Prepared:
    """Validate as the SQLite store does, before anything is sent."""
    doc_id, pk, _ = document_keys(spec, doc)
    body = {key: value for key, value in doc.items() if key not in _SYSTEM_FIELDS}
    encode_document(spec, doc_id, body)
    return _Prepared(body=body, pk=pk, id=doc_id)


# -------------------------------------------------------------------------------------
# paths and filters
# -------------------------------------------------------------------------------------


def _segments(spec: ContainerSpec, path: str) -> list[str | int]:
    check_path(spec, path)
    segments: list[str | int] = []
    for part in path.split("."):
        match = _SEGMENT.fullmatch(part)
        assert match is not None  # the whole path matched FILTER_PATH
        segments.append(match.group(1))
        segments.extend(int(index) for index in re.findall(r"\[(\d+)\]", match.group(2)))
    return segments


def _ref(spec: ContainerSpec, path: str) -> str:
    """`c["a"]["b"][1]`: safe because every segment matched the path pattern."""
    return "c" + "".join(
        f"[{segment}]" if isinstance(segment, int) else f'["{segment}"]'
        for segment in _segments(spec, path)
    )


def _index_path(path: str) -> str:
    return "/" + path.replace(".", "/").replace("[", "/").replace("]", "")


def _sort_keys(spec: ContainerSpec, order_by: str) -> list[str]:
    keys = [order_by]
    for tie_breaker in (spec.partition_field, "id"):
        if tie_breaker not in keys:
            keys.append(tie_breaker)
    return keys


def _equals(ref: str, value: Scalar, params: _Params) -> str:
    """Cosmos' `=` is type-strict already: `1` never equals `true` or `"1"`."""
    if value is None:
        return f"{ref} = null"
    return f"{ref} = {params.bind(value)}"


def _compile_filter(spec: ContainerSpec, condition: Filter, params: _Params) -> str:
    ref = _ref(spec, condition.path)
    op, value = condition.op, condition.value
    if op == "exists":
        return f"IS_DEFINED({ref})" if exists_wanted(spec, condition) else f"NOT IS_DEFINED({ref})"
    if op == "in":
        return _in(spec, condition, ref, params)
    check_comparison(spec, condition)
    scalar = check_scalar(spec, condition, value)
    if op == "==":
        return _equals(ref, scalar, params)
    if op == "!=":
        if scalar is None:
            refuse_not_equals_none(spec, condition)
        if isinstance(scalar, bool):
            return f"{ref} = {params.bind(not scalar)}"
        # Same type, other value. Not `!=`: cosmosdb-server matches `!=` across types.
        bound = params.bind(scalar)
        return f"({ref} < {bound} OR {ref} > {bound})"
    if op == "contains":
        bound = params.bind(scalar)
        if isinstance(scalar, str):
            return f"(ARRAY_CONTAINS({ref}, {bound}) OR CONTAINS({ref}, {bound}))"
        return f"ARRAY_CONTAINS({ref}, {bound})"
    if scalar is None or isinstance(scalar, bool):
        raise PermanentError(
            f"filter {condition.path!r} {op!r} in container {spec.name} compares only numbers"
            f" or strings, got {scalar!r}",
            resource=spec.name,
        )
    return f"{ref} {op} {params.bind(scalar)}"


def _in(spec: ContainerSpec, condition: Filter, ref: str, params: _Params) -> str:
    scalars = in_values(spec, condition)
    if not scalars:
        return "false"
    bound = ", ".join(params.bind(value) for value in scalars)
    return f"{ref} IN ({bound})"


# -------------------------------------------------------------------------------------
# keyset paging
# -------------------------------------------------------------------------------------


def _rank(value: Any, present: bool) -> int:
    if not present:
        return 0
    if value is None:
        return 1
    if isinstance(value, bool):
        return 2
    if isinstance(value, int | float):
        return 3
    if isinstance(value, str):
        return 4
    if isinstance(value, list):
        return 5
    return 6


def _lookup(doc: Any, segments: Sequence[str | int]) -> tuple[bool, Any]:
    for segment in segments:
        if isinstance(segment, int):
            if not isinstance(doc, list) or segment >= len(doc):
                return False, None
        elif not isinstance(doc, dict) or segment not in doc:
            return False, None
        doc = doc[segment]
    return True, doc


def _key_of(spec: ContainerSpec, keys: list[str], doc: Document, ranked: bool) -> list[Any]:
    """The page's last document's position: [rank, value] of `order_by`, then the rest."""
    if not ranked:
        return [doc[key] for key in keys]
    present, value = _lookup(doc, _segments(spec, keys[0]))
    rank = _rank(value, present)
    if rank not in _COMPARABLE_RANKS | {0, 1}:
        raise PermanentError(
            f"cannot page past document {doc.get('id')!r} in container {spec.name}: its"
            f" {keys[0]!r} is an array or object; order by a scalar field",
            resource=spec.name,
        )
    return [rank, value if rank in _COMPARABLE_RANKS else None] + [doc[key] for key in keys[1:]]


def _after(
    spec: ContainerSpec,
    keys: list[str],
    last: list[Any],
    ranked: bool,
    descending: bool,
    params: _Params,
) -> str:
    """Documents strictly after `last` in the (possibly descending) key order, as one flat
    OR of conjunctions (cosmosdb-server's parser slows down sharply with nesting)."""
    beyond = "<" if descending else ">"
    alternatives: list[str] = []
    equal_prefix: list[str] = []
    tail = last
    if ranked:
        rank, value = last[0], last[1]
        ref = _ref(spec, keys[0])
        other_ranks = range(rank) if descending else range(rank + 1, len(_RANK_PREDICATES))
        alternatives.extend(_RANK_PREDICATES[r].format(ref) for r in other_ranks)
        if rank in _COMPARABLE_RANKS:
            bound = params.bind(value)
            alternatives.append(f"{ref} {beyond} {bound}")
            equal_prefix.append(f"{ref} = {bound}")
        else:
            equal_prefix.append(_RANK_PREDICATES[rank].format(ref))
        keys, tail = keys[1:], last[2:]
    for key, value in zip(keys, tail, strict=True):
        ref, bound = _ref(spec, key), params.bind(value)
        alternatives.append(" AND ".join([*equal_prefix, f"{ref} {beyond} {bound}"]))
        equal_prefix.append(f"{ref} = {bound}")
    return "(" + " OR ".join(alternatives) + ")"


def _where_sql(clauses: list[str]) -> str:
    return f" WHERE {' AND '.join(clauses)}" if clauses else ""


if __name__ == "__main__":
    import json
    from pathlib import Path

    target = Path(__file__).resolve().parents[3] / "infra/bicep/modules/cosmos-indexing.json"
    target.write_text(json.dumps(indexing_policies(), indent=2) + "\n")
    print(f"wrote {target}")

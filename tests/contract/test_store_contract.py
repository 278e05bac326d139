"""DocumentStore contract: what the domain may rely on from every store adapter."""

from __future__ import annotations

import base64
import json
import multiprocessing
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from core.adapters.local.sqlite_store import SqliteDocumentStore
from core.containers import IDEMPOTENCY, SHARDS
from core.errors import ConflictError, NotFoundError, PermanentError
from core.ports import DocumentStore, Filter
from tests.contract.conftest import Backend, ManualClock

DAY = 24 * 3600


def shard(tenant: str, id: str, **fields: Any) -> dict[str, Any]:
    return {"id": id, "tenantId": tenant, **fields}


def ids(docs: list[dict[str, Any]]) -> list[str]:
    return [doc["id"] for doc in docs]


def query_all(
    store: DocumentStore, container: str, continuation: str | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """Every page of a query (from `continuation` on), in order."""
    items: list[dict[str, Any]] = []
    while True:
        page = store.query(container, continuation=continuation, **kwargs)
        items.extend(page.items)
        continuation = page.continuation
        if continuation is None:
            return items


# ------------------------------------------------------------------------ CRUD


def test_create_then_get_returns_the_document_with_etag_and_ts(
    store: DocumentStore, run_id: str
) -> None:
    created = store.create(SHARDS.name, shard(run_id, "a", name="Acme", nested={"x": [1, 2]}))

    fetched = store.get(SHARDS.name, run_id, "a")

    assert fetched == created
    assert fetched is not None
    assert fetched["name"] == "Acme"
    assert fetched["nested"] == {"x": [1, 2]}
    assert isinstance(fetched["_etag"], str)
    assert fetched["_etag"]
    assert isinstance(fetched["_ts"], int)


def test_get_of_a_missing_document_returns_none(store: DocumentStore, run_id: str) -> None:
    assert store.get(SHARDS.name, run_id, "missing") is None


def test_get_many_reads_the_named_documents_across_partitions(
    store: DocumentStore, run_id: str
) -> None:
    other = f"{run_id}-other"
    store.upsert_many(
        SHARDS.name,
        [shard(run_id, "a", n=1), shard(run_id, "b", n=2), shard(other, "a", n=3)],
    )
    found = store.get_many(
        SHARDS.name, [(run_id, "a"), (other, "a"), (run_id, "missing"), (run_id, "a")]
    )
    assert set(found) == {(run_id, "a"), (other, "a")}
    assert found[(run_id, "a")]["n"] == 1
    assert found[(other, "a")]["n"] == 3
    assert store.get_many(SHARDS.name, []) == {}


def test_upsert_inserts_then_replaces_with_a_new_etag(store: DocumentStore, run_id: str) -> None:
    first = store.upsert(SHARDS.name, shard(run_id, "a", stage="open", extra=1))
    second = store.upsert(SHARDS.name, shard(run_id, "a", stage="won"))

    fetched = store.get(SHARDS.name, run_id, "a")

    assert fetched is not None
    assert fetched["stage"] == "won"
    assert "extra" not in fetched
    assert second["_etag"] != first["_etag"]
    assert fetched["_etag"] == second["_etag"]


def test_delete_removes_and_reports_whether_it_did(store: DocumentStore, run_id: str) -> None:
    store.create(SHARDS.name, shard(run_id, "a"))

    assert store.delete(SHARDS.name, run_id, "a") is True
    assert store.get(SHARDS.name, run_id, "a") is None
    assert store.delete(SHARDS.name, run_id, "a") is False


def test_same_id_in_two_partitions_is_two_documents(store: DocumentStore, run_id: str) -> None:
    tenant_a, tenant_b = f"{run_id}-a", f"{run_id}-b"
    store.create(SHARDS.name, shard(tenant_a, "same", owner="a"))
    store.create(SHARDS.name, shard(tenant_b, "same", owner="b"))

    doc_a = store.get(SHARDS.name, tenant_a, "same")
    doc_b = store.get(SHARDS.name, tenant_b, "same")
    assert doc_a is not None
    assert doc_b is not None
    assert (doc_a["owner"], doc_b["owner"]) == ("a", "b")
    assert store.get(SHARDS.name, f"{run_id}-other", "same") is None

    assert store.delete(SHARDS.name, tenant_a, "same") is True
    assert store.get(SHARDS.name, tenant_b, "same") is not None
    assert ids(store.query(SHARDS.name, partition_key=tenant_a).items) == []


def test_create_of_an_existing_id_conflicts(store: DocumentStore, run_id: str) -> None:
    store.create(SHARDS.name, shard(run_id, "a", version=1))

    with pytest.raises(ConflictError):
        store.create(SHARDS.name, shard(run_id, "a", version=2))
    fetched = store.get(SHARDS.name, run_id, "a")
    assert fetched is not None
    assert fetched["version"] == 1


def test_upsert_with_the_current_etag_succeeds(store: DocumentStore, run_id: str) -> None:
    created = store.create(SHARDS.name, shard(run_id, "a", version=1))

    updated = store.upsert(SHARDS.name, shard(run_id, "a", version=2), if_match=created["_etag"])

    assert updated["version"] == 2
    assert updated["_etag"] != created["_etag"]


def test_upsert_with_a_stale_etag_conflicts_and_keeps_the_stored_document(
    store: DocumentStore, run_id: str
) -> None:
    created = store.create(SHARDS.name, shard(run_id, "a", version=1))
    store.upsert(SHARDS.name, shard(run_id, "a", version=2))

    with pytest.raises(ConflictError):
        store.upsert(SHARDS.name, shard(run_id, "a", version=3), if_match=created["_etag"])
    fetched = store.get(SHARDS.name, run_id, "a")
    assert fetched is not None
    assert fetched["version"] == 2


def test_upsert_with_an_etag_of_a_deleted_document_conflicts(
    store: DocumentStore, run_id: str
) -> None:
    created = store.create(SHARDS.name, shard(run_id, "a"))
    store.delete(SHARDS.name, run_id, "a")

    with pytest.raises(ConflictError):
        store.upsert(SHARDS.name, shard(run_id, "a"), if_match=created["_etag"])
    assert store.get(SHARDS.name, run_id, "a") is None


def test_delete_with_if_match(store: DocumentStore, run_id: str) -> None:
    created = store.create(SHARDS.name, shard(run_id, "a", version=1))
    current = store.upsert(SHARDS.name, shard(run_id, "a", version=2))

    with pytest.raises(ConflictError):
        store.delete(SHARDS.name, run_id, "a", if_match=created["_etag"])
    assert store.get(SHARDS.name, run_id, "a") is not None

    assert store.delete(SHARDS.name, run_id, "a", if_match=current["_etag"]) is True
    with pytest.raises(ConflictError):
        store.delete(SHARDS.name, run_id, "a", if_match=current["_etag"])


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"tenantId": "t"}, "id"),
        ({"id": "", "tenantId": "t"}, "id"),
        ({"id": 7, "tenantId": "t"}, "id"),
        ({"id": "a"}, "tenantId"),
        ({"id": "a", "tenantId": 5}, "tenantId"),
    ],
)
def test_a_document_without_id_or_partition_key_is_refused_naming_both(
    store: DocumentStore, doc: dict[str, Any], field: str
) -> None:
    for write in (store.create, store.upsert, lambda c, d: store.upsert_many(c, [d])):
        with pytest.raises(PermanentError) as error:
            write(SHARDS.name, doc)
        assert field in str(error.value)
        assert SHARDS.name in str(error.value)


def test_a_document_that_is_not_json_is_refused(store: DocumentStore, run_id: str) -> None:
    with pytest.raises(PermanentError, match="not JSON"):
        store.upsert(SHARDS.name, shard(run_id, "a", when=object()))
    with pytest.raises(PermanentError):
        store.upsert(SHARDS.name, shard(run_id, "a", score=float("nan")))
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    with pytest.raises(PermanentError, match="refers to itself"):
        store.upsert(SHARDS.name, shard(run_id, "a", loop=cyclic))
    assert store.get(SHARDS.name, run_id, "a") is None


def test_unknown_container_is_not_found_naming_it(store: DocumentStore, run_id: str) -> None:
    calls = [
        lambda: store.get("nope", run_id, "a"),
        lambda: store.create("nope", shard(run_id, "a")),
        lambda: store.upsert("nope", shard(run_id, "a")),
        lambda: store.upsert_many("nope", [shard(run_id, "a")]),
        lambda: store.delete("nope", run_id, "a"),
        lambda: store.query("nope"),
        lambda: store.count("nope"),
    ]
    for call in calls:
        with pytest.raises(NotFoundError, match="nope"):
            call()


# ------------------------------------------------------------------------ TTL


def test_container_default_ttl_expires_documents(
    store: DocumentStore, clock: ManualClock, run_id: str
) -> None:
    store.create(IDEMPOTENCY.name, {"id": run_id, "key": run_id})

    clock.advance(DAY - 1)
    assert store.get(IDEMPOTENCY.name, run_id, run_id) is not None

    clock.advance(1)
    assert store.get(IDEMPOTENCY.name, run_id, run_id) is None
    assert store.query(IDEMPOTENCY.name, partition_key=run_id).items == []
    assert store.count(IDEMPOTENCY.name, partition_key=run_id) == 0
    assert store.delete(IDEMPOTENCY.name, run_id, run_id) is False


def test_document_ttl_overrides_the_container_default(
    store: DocumentStore, clock: ManualClock, run_id: str
) -> None:
    store.upsert(SHARDS.name, shard(run_id, "short", ttl=10))
    store.upsert(SHARDS.name, shard(run_id, "forever"))
    store.upsert(IDEMPOTENCY.name, {"id": "never", "key": run_id, "ttl": -1})
    store.upsert(IDEMPOTENCY.name, {"id": "hour", "key": run_id, "ttl": 3600})

    clock.advance(11)
    assert store.get(SHARDS.name, run_id, "short") is None
    assert store.get(SHARDS.name, run_id, "forever") is not None
    assert ids(store.query(IDEMPOTENCY.name, partition_key=run_id).items) == ["hour", "never"]

    clock.advance(2 * DAY)
    assert ids(store.query(IDEMPOTENCY.name, partition_key=run_id).items) == ["never"]


def test_get_many_reads_hundreds_of_keys_in_their_own_partitions_and_skips_expired_ones(
    store: DocumentStore, clock: ManualClock, run_id: str
) -> None:
    """The idempotency container's shape: every key its own partition, more keys than one
    statement takes, some of them expired."""
    keys = [f"{run_id}-{n}" for n in range(450)]
    store.upsert_many(
        IDEMPOTENCY.name, [{"id": key, "key": key, "n": n} for n, key in enumerate(keys)]
    )
    store.upsert(IDEMPOTENCY.name, {"id": "short", "key": run_id, "ttl": 10})
    clock.advance(11)

    wanted = [(key, key) for key in keys] + [(run_id, "short"), (keys[0], "absent")]
    found = store.get_many(IDEMPOTENCY.name, wanted)

    assert set(found) == {(key, key) for key in keys}
    assert [found[(key, key)]["n"] for key in keys] == list(range(450))


def test_an_expired_document_can_be_created_again(
    store: DocumentStore, clock: ManualClock, run_id: str
) -> None:
    store.create(SHARDS.name, shard(run_id, "a", ttl=5, version=1))
    clock.advance(6)

    store.create(SHARDS.name, shard(run_id, "a", version=2))

    fetched = store.get(SHARDS.name, run_id, "a")
    assert fetched is not None
    assert fetched["version"] == 2


def test_an_expired_document_cannot_be_updated_by_etag(
    store: DocumentStore, clock: ManualClock, run_id: str
) -> None:
    created = store.create(SHARDS.name, shard(run_id, "a", ttl=5))
    clock.advance(6)

    with pytest.raises(ConflictError):
        store.upsert(SHARDS.name, shard(run_id, "a"), if_match=created["_etag"])


@pytest.mark.parametrize("ttl", [0, -2, 1.5, "60", True])
def test_an_invalid_ttl_is_refused(store: DocumentStore, run_id: str, ttl: object) -> None:
    with pytest.raises(PermanentError, match="ttl"):
        store.upsert(SHARDS.name, shard(run_id, "a", ttl=ttl))


# ------------------------------------------------------------------------ batches


def test_upsert_many_writes_every_document_with_its_own_etag(
    store: DocumentStore, run_id: str
) -> None:
    store.create(SHARDS.name, shard(run_id, "d000", version=0))
    docs = [shard(run_id, f"d{n:03}", n=n, version=1) for n in range(300)]

    written = store.upsert_many(SHARDS.name, docs)

    assert ids(written) == ids(docs)
    assert len({doc["_etag"] for doc in written}) == 300
    assert store.count(SHARDS.name, partition_key=run_id) == 300
    first = store.get(SHARDS.name, run_id, "d000")
    assert first is not None
    assert first["version"] == 1
    assert first["_etag"] == written[0]["_etag"]
    assert store.upsert_many(SHARDS.name, []) == []


def test_upsert_many_with_one_bad_document_writes_none(store: DocumentStore, run_id: str) -> None:
    docs = [shard(run_id, "good"), {"id": "bad"}]

    with pytest.raises(PermanentError, match="tenantId"):
        store.upsert_many(SHARDS.name, docs)
    assert store.get(SHARDS.name, run_id, "good") is None


# ------------------------------------------------------------------------ queries

FILTER_DOCS = [
    {"id": "a", "n": 1, "name": "alpha", "tags": ["x", "y"], "flag": True, "maybe": None,
     "nested": {"v": 10}},
    {"id": "b", "n": 2, "name": "beta", "tags": ["y"], "flag": False, "nested": {"v": 20}},
    {"id": "c", "n": 3, "name": "gamma ray", "tags": [], "nested": {"v": 30},
     "items": [{"k": 1}, {"k": 2}]},
    {"id": "d", "n": "3", "name": "delta", "tags": ["x", 3], "flag": 1},
    {"id": "e", "n": 2.5, "name": "epsilon", "tags": "x-ray"},
]  # fmt: skip

FILTER_CASES = [
    (Filter("n", "==", 2), ["b"]),
    (Filter("n", "==", 3), ["c"]),
    (Filter("n", "==", "3"), ["d"]),
    (Filter("n", "==", 2.5), ["e"]),
    (Filter("flag", "==", True), ["a"]),
    (Filter("flag", "==", 1), ["d"]),
    (Filter("flag", "==", False), ["b"]),
    (Filter("maybe", "==", None), ["a"]),
    (Filter("n", "!=", 2), ["a", "c", "e"]),
    (Filter("n", "!=", "3"), []),
    (Filter("flag", "!=", True), ["b"]),
    (Filter("n", "<", 3), ["a", "b", "e"]),
    (Filter("n", "<=", 3), ["a", "b", "c", "e"]),
    (Filter("n", ">", 2), ["c", "e"]),
    (Filter("n", ">=", 2.5), ["c", "e"]),
    (Filter("name", ">", "c"), ["c", "d", "e"]),
    (Filter("name", "<=", "beta"), ["a", "b"]),
    (Filter("n", "in", [1, 3, "3"]), ["a", "c", "d"]),
    (Filter("n", "in", ()), []),
    (Filter("flag", "in", [True, None]), ["a"]),
    (Filter("id", "in", ["b", "e", "zz"]), ["b", "e"]),
    (Filter("tags", "contains", "x"), ["a", "d", "e"]),
    (Filter("tags", "contains", 3), ["d"]),
    (Filter("name", "contains", "amm"), ["c"]),
    (Filter("name", "contains", "AMM"), []),
    (Filter("maybe", "exists"), ["a"]),
    (Filter("flag", "exists", True), ["a", "b", "d"]),
    (Filter("flag", "exists", False), ["c", "e"]),
    (Filter("nested.v", ">=", 20), ["b", "c"]),
    (Filter("items[1].k", "==", 2), ["c"]),
    (Filter("tags[0]", "==", "y"), ["b"]),
    (Filter("id", "==", "c"), ["c"]),
    (Filter("id", ">", "c"), ["d", "e"]),
]


@pytest.fixture
def filter_tenant(store: DocumentStore, run_id: str) -> str:
    store.upsert_many(SHARDS.name, [{**doc, "tenantId": run_id} for doc in FILTER_DOCS])
    store.upsert(SHARDS.name, {**FILTER_DOCS[0], "tenantId": f"{run_id}-other"})
    return run_id


@pytest.mark.parametrize(
    ("condition", "expected"),
    FILTER_CASES,
    ids=[f"{f.path} {f.op} {f.value!r}" for f, _ in FILTER_CASES],
)
def test_filter_operators(
    store: DocumentStore, filter_tenant: str, condition: Filter, expected: list[str]
) -> None:
    page = store.query(SHARDS.name, partition_key=filter_tenant, filters=[condition])

    assert sorted(ids(page.items)) == expected
    assert store.count(SHARDS.name, partition_key=filter_tenant, filters=[condition]) == len(
        expected
    )


def test_filters_combine_with_and(store: DocumentStore, filter_tenant: str) -> None:
    def matching(*filters: Filter) -> list[str]:
        page = store.query(SHARDS.name, partition_key=filter_tenant, filters=filters)
        return sorted(ids(page.items))

    assert matching(Filter("tags", "contains", "x"), Filter("n", ">=", 1)) == ["a", "e"]
    assert matching(
        Filter("tags", "contains", "x"), Filter("n", ">=", 1), Filter("name", "!=", "alpha")
    ) == ["e"]
    assert matching(Filter("flag", "exists"), Filter("nested.v", ">", 10)) == ["b"]


def test_filter_on_the_partition_key_field(store: DocumentStore, filter_tenant: str) -> None:
    condition = Filter("tenantId", "==", f"{filter_tenant}-other")

    assert ids(store.query(SHARDS.name, filters=[condition]).items) == ["a"]


@pytest.mark.parametrize(
    "path",
    ["", "a..b", ".a", "a.", "a b", "n') OR 1=1 --", "a[x]", "$.a", "a/b", "tags[-1]"],
)
def test_an_invalid_path_is_refused(store: DocumentStore, run_id: str, path: str) -> None:
    with pytest.raises(PermanentError, match="path"):
        store.query(SHARDS.name, partition_key=run_id, filters=[Filter(path, "==", 1)])
    with pytest.raises(PermanentError, match="path"):
        store.query(SHARDS.name, partition_key=run_id, order_by=path)


@pytest.mark.parametrize(
    "condition",
    [
        Filter("n", "in", "abc"),
        Filter("n", "in", 5),
        Filter("n", "<", True),
        Filter("n", ">", None),
        Filter("n", "==", [1]),
        Filter("n", "==", {"a": 1}),
        Filter("n", "exists", "yes"),
        Filter("n", "!=", None),
        Filter("n", "like", "a"),  # type: ignore[arg-type]
    ],
)
def test_an_invalid_filter_is_refused_naming_its_path(
    store: DocumentStore, run_id: str, condition: Filter
) -> None:
    with pytest.raises(PermanentError, match="'n'"):
        store.query(SHARDS.name, partition_key=run_id, filters=[condition])


def test_order_by_ascending_and_descending(store: DocumentStore, run_id: str) -> None:
    values = {"p": 5, "q": 1, "r": 3, "s": 3, "t": 2}
    store.upsert_many(SHARDS.name, [shard(run_id, key, rank=v) for key, v in values.items()])

    ascending = store.query(SHARDS.name, partition_key=run_id, order_by="rank")
    descending = store.query(SHARDS.name, partition_key=run_id, order_by="rank", descending=True)

    assert ids(ascending.items) == ["q", "t", "r", "s", "p"]
    assert ids(descending.items) == ["p", "s", "r", "t", "q"]


def test_order_by_nested_strings(store: DocumentStore, run_id: str) -> None:
    names = {"1": "delta", "2": "alpha", "3": "charlie", "4": "bravo"}
    store.upsert_many(
        SHARDS.name, [shard(run_id, key, data={"name": v}) for key, v in names.items()]
    )

    page = store.query(SHARDS.name, partition_key=run_id, order_by="data.name")

    assert [doc["data"]["name"] for doc in page.items] == ["alpha", "bravo", "charlie", "delta"]


def test_order_by_puts_missing_values_first_then_types_in_order(
    store: DocumentStore, run_id: str
) -> None:
    store.upsert_many(
        SHARDS.name,
        [
            shard(run_id, "b-str", v="a"),
            shard(run_id, "c-num", v=2),
            shard(run_id, "z-missing"),
            shard(run_id, "d-true", v=True),
            shard(run_id, "y-null", v=None),
            shard(run_id, "e-false", v=False),
        ],
    )

    page = store.query(SHARDS.name, partition_key=run_id, order_by="v")

    assert ids(page.items) == ["z-missing", "y-null", "e-false", "d-true", "c-num", "b-str"]


@pytest.mark.parametrize(("order_by", "descending"), [(None, False), ("n", False), ("n", True)])
def test_paging_returns_every_document_exactly_once_in_order(
    store: DocumentStore, run_id: str, order_by: str | None, descending: bool
) -> None:
    docs = [shard(run_id, f"doc-{i:03}", n=(i * 7) % 50) for i in range(250)]
    store.upsert_many(SHARDS.name, docs)
    expected = ids(
        sorted(docs, key=lambda d: (d["n"], d["id"]) if order_by else d["id"], reverse=descending)
    )

    pages = []
    continuation = None
    while True:
        page = store.query(
            SHARDS.name,
            partition_key=run_id,
            order_by=order_by,
            descending=descending,
            limit=40,
            continuation=continuation,
        )
        pages.append(ids(page.items))
        continuation = page.continuation
        if continuation is None:
            break

    assert [len(p) for p in pages] == [40, 40, 40, 40, 40, 40, 10]
    assert [doc_id for p in pages for doc_id in p] == expected


def test_paging_is_stable_when_documents_change_between_pages(
    store: DocumentStore, run_id: str
) -> None:
    store.upsert_many(SHARDS.name, [shard(run_id, f"d{i:02}", n=i) for i in range(10)])
    first = store.query(SHARDS.name, partition_key=run_id, order_by="n", limit=4)

    store.delete(SHARDS.name, run_id, "d03")
    store.upsert(SHARDS.name, shard(run_id, "d01b", n=1))
    rest = query_all(
        store, SHARDS.name, partition_key=run_id, order_by="n", limit=4,
        continuation=first.continuation,
    )  # fmt: skip

    assert ids(first.items) == ["d00", "d01", "d02", "d03"]
    assert ids(rest) == ["d04", "d05", "d06", "d07", "d08", "d09"]


def test_a_full_last_page_has_no_continuation(store: DocumentStore, run_id: str) -> None:
    store.upsert_many(SHARDS.name, [shard(run_id, f"d{i}") for i in range(4)])

    page = store.query(SHARDS.name, partition_key=run_id, limit=4)

    assert len(page.items) == 4
    assert page.continuation is None


def test_an_invalid_continuation_token_is_refused(store: DocumentStore, run_id: str) -> None:
    store.upsert_many(SHARDS.name, [shard(run_id, f"d{i}", n=i) for i in range(5)])
    token = store.query(SHARDS.name, partition_key=run_id, order_by="n", limit=2).continuation
    assert token is not None
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    tampered = json.loads(raw)
    tampered["k"][-1] = "d0"
    forged = base64.urlsafe_b64encode(json.dumps(tampered).encode()).decode()

    bad_tokens = ["garbage!!", "e30", token[:-3], forged, "", "bm90IGpzb24"]
    for bad in bad_tokens:
        with pytest.raises(PermanentError, match="invalid continuation token"):
            store.query(SHARDS.name, partition_key=run_id, order_by="n", limit=2, continuation=bad)
    with pytest.raises(PermanentError, match="invalid continuation token"):
        store.query(SHARDS.name, partition_key=run_id, order_by="id", limit=2, continuation=token)


@pytest.mark.parametrize("limit", [0, -1, 1001, True])
def test_limit_out_of_bounds_is_refused(store: DocumentStore, limit: int) -> None:
    with pytest.raises(PermanentError, match="limit"):
        store.query(SHARDS.name, limit=limit)


def test_cross_partition_query_and_count(store: DocumentStore, run_id: str) -> None:
    for tenant in ("t1", "t2", "t3"):
        store.upsert_many(
            SHARDS.name,
            [shard(f"{run_id}-{tenant}", f"d{i}", run=run_id, i=i) for i in range(3)],
        )
    mine = Filter("run", "==", run_id)

    everything = query_all(store, SHARDS.name, filters=[mine], limit=4)
    ones = store.query(SHARDS.name, filters=[mine, Filter("i", "==", 1)])

    assert sorted((doc["tenantId"], doc["id"]) for doc in everything) == [
        (f"{run_id}-{t}", f"d{i}") for t in ("t1", "t2", "t3") for i in range(3)
    ]
    assert len(everything) == 9
    assert sorted(doc["tenantId"] for doc in ones.items) == [
        f"{run_id}-t1", f"{run_id}-t2", f"{run_id}-t3"
    ]  # fmt: skip
    assert store.count(SHARDS.name, filters=[mine]) == 9
    assert store.count(SHARDS.name, partition_key=f"{run_id}-t2", filters=[mine]) == 3
    assert store.count(SHARDS.name, partition_key=f"{run_id}-none") == 0


# ------------------------------------------------------------------------ concurrency


def increment(store: DocumentStore, tenant: str, times: int, conflicts: list[int]) -> None:
    """Read-modify-write with optimistic concurrency, retrying on conflict."""
    for _ in range(times):
        while True:
            current = store.get(SHARDS.name, tenant, "counter")
            assert current is not None
            time.sleep(0)  # let the other writer in between the read and the write
            try:
                store.upsert(
                    SHARDS.name,
                    {**current, "value": current["value"] + 1},
                    if_match=current["_etag"],
                )
                break
            except ConflictError:
                conflicts.append(1)


@pytest.mark.parametrize("clients", ["one client", "two clients"])
def test_concurrent_read_modify_write_loses_no_increment(
    store_backend: Backend[DocumentStore], run_id: str, clients: str
) -> None:
    store = store_backend.adapter
    other = store if clients == "one client" else store_backend.reopen()
    store.create(SHARDS.name, shard(run_id, "counter", value=0))
    conflicts: list[int] = []
    workers = [
        threading.Thread(target=increment, args=(client, run_id, 50, conflicts))
        for client in (store, other)
    ]

    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    final = store.get(SHARDS.name, run_id, "counter")
    assert final is not None
    assert final["value"] == 100


def test_a_second_client_sees_the_first_clients_writes(
    store_backend: Backend[DocumentStore], run_id: str
) -> None:
    store_backend.adapter.upsert(SHARDS.name, shard(run_id, "a", v=1))

    other = store_backend.reopen()

    fetched = other.get(SHARDS.name, run_id, "a")
    assert fetched is not None
    assert fetched["v"] == 1
    store_backend.adapter.ping()
    other.ping()


# ------------------------------------------------------------------------ SQLite adapter only


def raw_row_count(path: Path, container: str) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute(f'SELECT count(*) FROM "{container}"').fetchone()[0])


def test_sqlite_purge_expired_deletes_expired_rows(tmp_path: Path) -> None:
    clock = ManualClock()
    store = SqliteDocumentStore(tmp_path / "s.sqlite", clock=clock)
    store.upsert(SHARDS.name, shard("t", "short", ttl=5))
    store.upsert(IDEMPOTENCY.name, {"id": "k", "key": "k"})
    store.upsert(SHARDS.name, shard("t", "kept"))
    clock.advance(DAY)

    assert store.purge_expired() == 2
    assert raw_row_count(tmp_path / "s.sqlite", SHARDS.name) == 1
    assert raw_row_count(tmp_path / "s.sqlite", IDEMPOTENCY.name) == 0
    store.close()


def test_sqlite_writes_purge_once_per_interval(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "s.sqlite"
    store = SqliteDocumentStore(path, clock=clock, purge_interval_seconds=60)
    store.upsert(SHARDS.name, shard("t", "first"))  # the first write purges and arms the timer
    store.upsert(SHARDS.name, shard("t", "short", ttl=5))
    clock.advance(10)

    store.upsert(SHARDS.name, shard("t", "other"))
    assert raw_row_count(path, SHARDS.name) == 3

    clock.advance(60)
    store.upsert(SHARDS.name, shard("t", "another"))
    assert raw_row_count(path, SHARDS.name) == 3
    store.close()


def increment_in_a_process(path: Path, tenant: str, times: int) -> None:
    store = SqliteDocumentStore(path)
    increment(store, tenant, times, [])
    store.close()


def test_sqlite_processes_sharing_the_file_lose_no_increment(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = SqliteDocumentStore(path)
    store.create(SHARDS.name, shard("t", "counter", value=0))
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=increment_in_a_process, args=(path, "t", 50)) for _ in range(2)
    ]

    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert [worker.exitcode for worker in workers] == [0, 0]
    final = store.get(SHARDS.name, "t", "counter")
    assert final is not None
    assert final["value"] == 100
    store.close()

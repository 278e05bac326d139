"""The local `files` provider: formats, entity types, paging, incremental cursors, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import PermanentError
from core.integrations.repository import compile_entity_mapping
from core.models.integration import ConnectionConfig, SyncConfig, TenantIntegration
from core.providers.base import FetchedPage
from core.providers.files import DEFAULT_PAGE_SIZE, PROJECT_ROOT, FilesProvider
from core.providers.registry import (
    build_provider,
    default_custom_transforms,
    default_entity_mappings,
)
from core.providers.salesforce_defaults import parse_salesforce_datetime


def account(
    number: int, modified: str | None = "2024-05-01T10:00:00.000+0000", **fields: Any
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "attributes": {"type": "Account", "url": f"/services/data/v60.0/sobjects/Account/{number}"},
        "Id": f"0015g00000{number:08d}",
        "Name": f"Account {number}",
    }
    if modified is not None:
        record["LastModifiedDate"] = modified
    return record | fields


def write_json(path: Path, records: Any) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def write_ndjson(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def provider(directory: Path, **config: Any) -> FilesProvider:
    return FilesProvider({"path": str(directory), **config})


def pages(adapter: FilesProvider, entity_type: str, since: str | None = None) -> list[FetchedPage]:
    return list(adapter.fetch(entity_type, since=since))


def ids(page_list: list[FetchedPage]) -> list[list[str]]:
    return [[record["Id"] for record in page.records] for page in page_list]


# --- formats and entity types ----------------------------------------------------------


def test_reads_json_ndjson_and_csv_files(tmp_path: Path) -> None:
    write_json(tmp_path / "Account.json", [account(1), account(2)])
    write_ndjson(tmp_path / "Contact.ndjson", [{"Id": "0035g0000000000001", "Email": "a@x.com"}])
    (tmp_path / "Lead.csv").write_text("Id,Company\n00Q5g0000000000001,Globex\n", encoding="utf-8")
    adapter = provider(tmp_path)
    assert adapter.provider == "files"
    assert ids(pages(adapter, "Account")) == [["0015g0000000000001", "0015g0000000000002"]]
    assert pages(adapter, "Contact")[0].records == [
        {"Id": "0035g0000000000001", "Email": "a@x.com"}
    ]
    assert pages(adapter, "Lead")[0].records == [{"Id": "00Q5g0000000000001", "Company": "Globex"}]


def test_entity_types_are_those_with_a_file_in_sync_order_then_the_others(tmp_path: Path) -> None:
    for name in (
        "Opportunity.ndjson",
        "task.json",
        "contact.csv",
        "Account.json",
        "Campaign.ndjson",
    ):
        (tmp_path / name).write_text("[]" if name.endswith(".json") else "", encoding="utf-8")
    for name in ("README.md", ".Lead.json", "notes.txt"):
        (tmp_path / name).write_text("not records", encoding="utf-8")
    (tmp_path / "Lead.json").mkdir()
    assert provider(tmp_path).entity_types() == [
        "Account",
        "Contact",
        "Opportunity",
        "Campaign",
        "task",
    ]


def test_an_entity_type_without_a_file_has_no_records(tmp_path: Path) -> None:
    write_json(tmp_path / "Account.json", [account(1)])
    adapter = provider(tmp_path)
    assert pages(adapter, "Opportunity") == []
    assert pages(adapter, "account") == pages(adapter, "Account")


def test_two_files_for_one_entity_type_are_an_error_naming_both(tmp_path: Path) -> None:
    write_json(tmp_path / "Account.json", [account(1)])
    (tmp_path / "account.csv").write_text("Id\n1\n", encoding="utf-8")
    adapter = provider(tmp_path)
    with pytest.raises(PermanentError) as raised:
        adapter.entity_types()
    assert "Account.json" in str(raised.value)
    assert "account.csv" in str(raised.value)
    with pytest.raises(PermanentError, match="one file per entity type"):
        pages(adapter, "Contact")


def test_csv_values_are_text_empty_cells_null_and_dotted_columns_nested(tmp_path: Path) -> None:
    (tmp_path / "Opportunity.csv").write_text(
        "\ufeffId,Name,Amount,Account.Name,Account.Owner.Email,NextStep,LastModifiedDate\n"
        '0065g0000000000001,"Deal, big",1200.50,Acme,o@x.com,,2024-05-01T10:00:00.000+0000\n'
        '0065g0000000000002,"Two\nlines",,,,call,\n',
        encoding="utf-8",
    )
    first, second = pages(provider(tmp_path), "Opportunity")[0].records[::-1]
    assert first == {
        "Id": "0065g0000000000001",
        "Name": "Deal, big",
        "Amount": "1200.50",
        "Account": {"Name": "Acme", "Owner": {"Email": "o@x.com"}},
        "NextStep": None,
        "LastModifiedDate": "2024-05-01T10:00:00.000+0000",
    }
    assert second == {
        "Id": "0065g0000000000002",
        "Name": "Two\nlines",
        "Amount": None,
        "Account": None,
        "NextStep": "call",
        "LastModifiedDate": None,
    }


def test_a_csv_export_maps_cleanly_through_the_default_mappings(tmp_path: Path) -> None:
    (tmp_path / "Opportunity.csv").write_text(
        "Id,Name,AccountId,Account.Name,Account.Industry,OwnerId,Owner.Email,Owner.Name,StageName,"
        "Amount,CurrencyIsoCode,Probability,CloseDate,Type,LeadSource,ForecastCategoryName,"
        "NextStep,Description,CreatedDate,LastModifiedDate,LastStageChangeDate,LastActivityDate,"
        "OpportunityContactRoles\n"
        "0065g0000000000001,Acme - Pilot,0015g0000000000001,Acme,Retail,0055g0000000000001,"
        "o@seller.com,Olga,Closed Won,48000,USD,100,2025-03-31,New Customer,Web,Closed,,,"
        "2024-11-02T09:15:00.000+0000,2025-04-01T08:00:00.000+0000,2025-03-31T16:00:00.000+0000,"
        "2025-03-30,\n",
        encoding="utf-8",
    )
    integration = TenantIntegration(
        id="files-1",
        tenant_id="tenant-a",
        integration_type_id="files",
        name="CSV",
        connection=ConnectionConfig(auth_type="custom", settings={"path": str(tmp_path)}),
        sync_config=SyncConfig(entity_mappings=default_entity_mappings("files")),
        custom_transforms=default_custom_transforms("files"),
    )
    compiled = compile_entity_mapping(integration, integration.entity_mapping("Opportunity"))
    (record,) = pages(provider(tmp_path), "Opportunity")[0].records
    result = compiled.map(record)
    assert (result.errors, result.warnings) == ([], [])
    assert (result.data["status"], result.data["amount"], result.data["contactRoles"]) == (
        "won",
        48000,
        [],
    )
    assert result.data["accountName"] == "Acme"


# --- paging and incremental sync --------------------------------------------------------


def test_pages_hold_page_size_records_in_modification_order(tmp_path: Path) -> None:
    records = [
        account(number, f"2024-05-0{6 - number}T10:00:00.000+0000") for number in range(1, 6)
    ]
    write_json(tmp_path / "Account.json", records)
    result = pages(provider(tmp_path, pageSize=2), "Account")
    assert [len(page.records) for page in result] == [2, 2, 1]
    assert ids(result) == [
        ["0015g0000000000005", "0015g0000000000004"],
        ["0015g0000000000003", "0015g0000000000002"],
        ["0015g0000000000001"],
    ]
    assert [page.cursor for page in result] == [
        "2024-05-02T10:00:00.000Z",
        "2024-05-04T10:00:00.000Z",
        "2024-05-05T10:00:00.000Z",
    ]


def test_the_default_page_size_is_200(tmp_path: Path) -> None:
    write_ndjson(tmp_path / "Account.ndjson", [account(number) for number in range(450)])
    assert DEFAULT_PAGE_SIZE == 200
    assert [len(page.records) for page in pages(provider(tmp_path), "Account")] == [200, 200, 50]


def test_modification_times_compare_as_instants_across_offsets(tmp_path: Path) -> None:
    write_json(
        tmp_path / "Account.json",
        [
            account(1, "2024-05-01T11:00:00.000+0000"),
            account(2, "2024-05-01T12:30:00.000+0200"),
            account(3, "2024-05-01T10:59:59.999Z"),
        ],
    )
    adapter = provider(tmp_path)
    (page,) = pages(adapter, "Account")
    assert [record["Id"][-1] for record in page.records] == ["2", "3", "1"]
    assert page.cursor == "2024-05-01T11:00:00.000Z"
    (newer,) = pages(adapter, "Account", since="2024-05-01T12:45:00.000+0200")
    assert [record["Id"][-1] for record in newer.records] == ["3", "1"]


def test_since_keeps_records_modified_strictly_after_it(tmp_path: Path) -> None:
    write_ndjson(
        tmp_path / "Account.ndjson",
        [account(1, "2024-05-01T10:00:00.000+0000"), account(2, "2024-05-02T10:00:00.000+0000")],
    )
    adapter = provider(tmp_path)
    (page,) = pages(adapter, "Account", since="2024-05-01T10:00:00.000Z")
    assert [record["Id"] for record in page.records] == ["0015g0000000000002"]
    assert page.cursor == "2024-05-02T10:00:00.000Z"
    assert pages(adapter, "Account", since=page.cursor) == []


def test_records_without_a_modification_time_are_always_served_first(tmp_path: Path) -> None:
    write_json(
        tmp_path / "Account.json",
        [account(1, "2024-05-02T10:00:00.000+0000"), account(2, None), account(3, "")],
    )
    (page,) = pages(provider(tmp_path), "Account", since="2030-01-01T00:00:00Z")
    assert [record["Id"][-1] for record in page.records] == ["2", "3"]
    assert page.cursor == "2030-01-01T00:00:00.000Z"
    (full,) = pages(provider(tmp_path), "Account")
    assert full.cursor == "2024-05-02T10:00:00.000Z"


def test_a_page_ending_inside_a_run_of_equal_times_holds_its_cursor_back(tmp_path: Path) -> None:
    times = ["2024-05-01", "2024-05-02", "2024-05-02", "2024-05-02", "2024-05-03", "2024-05-04"]
    records = [account(number, f"{day}T10:00:00.000+0000") for number, day in enumerate(times)]
    write_json(tmp_path / "Account.json", records)
    result = pages(provider(tmp_path, pageSize=2), "Account")
    assert [page.cursor for page in result] == [
        "2024-05-01T10:00:00.000Z",
        "2024-05-02T10:00:00.000Z",
        "2024-05-04T10:00:00.000Z",
    ]


@pytest.mark.parametrize("page_size", [1, 2, 3, 4, 7])
def test_resuming_from_any_page_cursor_misses_nothing(tmp_path: Path, page_size: int) -> None:
    days = [3, 1, 2, 2, 2, 5, 4, 4, 1, 6, 6, 6, 6]
    records = [
        account(number, f"2024-05-0{day}T10:00:00.000+0000") for number, day in enumerate(days)
    ]
    write_json(tmp_path / "Account.json", records)
    adapter = provider(tmp_path, pageSize=page_size)
    result = pages(adapter, "Account")
    every_id = {record["Id"] for record in records}
    served: set[str] = set()
    for page in result:
        served |= {record["Id"] for record in page.records}
        resumed = {
            record["Id"]
            for later in pages(adapter, "Account", since=page.cursor)
            for record in later.records
        }
        assert served | resumed == every_id
    cursors = [
        parse_salesforce_datetime(page.cursor, field="cursor")
        for page in result
        if page.cursor is not None
    ]
    assert cursors == sorted(cursors)
    assert result[-1].cursor == "2024-05-06T10:00:00.000Z"


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("Account.ndjson", '{"Id": "1"}\n\n{"Id": 2,\n', r"Account\.ndjson line 3: not valid JSON"),
        ("Account.ndjson", '{"Id": "1"}\n["Id"]\n', r"Account\.ndjson line 2 is array, not a record object"),
        ("Account.json", '{"records": []}', r"Account\.json: expected a JSON array of records, found object"),
        ("Account.json", '[{"Id": "1"}, 7]', r"Account\.json index 1 is number, not a record object"),
        ("Account.json", '[{"Id": "1"},\n  {"Id": }]', r"Account\.json: not valid JSON at line 2 column"),
        ("Account.csv", "Id,Name\n1,a\n2,b,c\n", r"Account\.csv line 3: 3 cells, but the header has 2"),
        ("Account.csv", "Id,Name,Id\n1,a,b\n", r"Account\.csv line 1: header column 3 \('Id'\) appears twice"),
        ("Account.csv", "Id,Owner,Owner.Email\n1,a,b\n", r"column 'Owner' is both a value and the object of 'Owner\.Email'"),
        ("Account.csv", "Id,.Name\n1,a\n", r"header column 2 \('\.Name'\) has an empty name part"),
        ("Account.json", '[{"Id": "1", "LastModifiedDate": "last week"}]', r"Account\.json index 0: LastModifiedDate 'last week' is not a date-time"),
        ("Account.json", '[{"Id": "1", "LastModifiedDate": 1714557600}]', r"Account\.json index 0: LastModifiedDate is number, not a date-time text"),
    ],
)  # fmt: skip
def test_malformed_files_are_errors_naming_file_and_place(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(PermanentError, match=message):
        pages(provider(tmp_path), "Account")


def test_a_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "Account.csv").write_bytes(b"Id,Name\n1,Caf\xe9\n")
    with pytest.raises(PermanentError, match=r"Account\.csv: not UTF-8 text"):
        pages(provider(tmp_path), "Account")


def test_a_bad_cursor_is_an_error(tmp_path: Path) -> None:
    write_json(tmp_path / "Account.json", [account(1)])
    with pytest.raises(PermanentError, match="the cursor \\(since\\) 'page-3' is not a date-time"):
        pages(provider(tmp_path), "Account", since="page-3")


def test_external_id_is_the_records_id(tmp_path: Path) -> None:
    write_json(tmp_path / "Account.json", [account(1)])
    adapter = provider(tmp_path)
    (record,) = pages(adapter, "Account")[0].records
    assert adapter.external_id("Account", record) == "0015g0000000000001"


@pytest.mark.parametrize(
    ("name", "content", "where", "position"),
    [
        ("Account.json", '[{"Id": "1"}, {"Name": "no id"}]', "Account.json index 1", 1),
        ("Account.ndjson", '{"Id": "1"}\n\n{"Id": "  "}\n', "Account.ndjson line 3", 1),
        ("Account.csv", "Id,Name\n,a\n2,b\n", "Account.csv line 2", 0),
        ("Account.json", '[{"Id": 42}]', "Account.json index 0", 0),
    ],
)
def test_a_record_without_id_is_served_and_external_id_names_file_and_place(
    tmp_path: Path, name: str, content: str, where: str, position: int
) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    adapter = provider(tmp_path)
    (page,) = pages(adapter, "Account")
    with pytest.raises(PermanentError, match=f"Account record at {where} has no Id"):
        adapter.external_id("Account", page.records[position])
    others = [record for index, record in enumerate(page.records) if index != position]
    assert [adapter.external_id("Account", record) for record in others] == [
        record["Id"] for record in others
    ]


def test_external_id_of_a_record_it_did_not_serve_still_says_what_is_missing(
    tmp_path: Path,
) -> None:
    adapter = provider(tmp_path)
    with pytest.raises(PermanentError, match="Opportunity record has no Id \\(found null\\)"):
        adapter.external_id("Opportunity", {"Id": None})


# --- config and paths -------------------------------------------------------------------


def test_a_relative_path_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "crm").mkdir()
    write_json(tmp_path / "crm" / "Account.json", [account(1)])
    monkeypatch.chdir(tmp_path)
    adapter = FilesProvider({"path": "crm"})
    assert adapter.directory == tmp_path / "crm"
    assert adapter.entity_types() == ["Account"]


def test_a_relative_path_falls_back_to_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert FilesProvider({"path": "samples/demo"}).directory == PROJECT_ROOT / "samples" / "demo"


def test_a_missing_directory_is_an_error_naming_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PermanentError) as raised:
        FilesProvider({"path": "nowhere"})
    assert "config.path 'nowhere' is not a directory" in str(raised.value)
    assert str(tmp_path / "nowhere") in str(raised.value)
    assert str(PROJECT_ROOT / "nowhere") in str(raised.value)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"shape": "hubspot"}, "config.shape: Input should be 'salesforce'"),
        ({"pageSize": 0}, "config.pageSize: Input should be greater than or equal to 1"),
        ({"pagesize": 10}, "config.pagesize: Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_an_error_naming_the_field(
    tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(PermanentError, match=message):
        provider(tmp_path, **config)
    with pytest.raises(PermanentError, match=r"config\.path: Field required"):
        FilesProvider({})


def test_build_provider_makes_a_files_adapter(tmp_path: Path) -> None:
    write_json(tmp_path / "Account.json", [account(1)])
    adapter = build_provider("files", {"path": str(tmp_path), "shape": "salesforce"})
    assert adapter.provider == "files"
    assert adapter.entity_types() == ["Account"]
    assert [len(page.records) for page in adapter.fetch("Account")] == [1]

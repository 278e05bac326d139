"""The demo tenant's synthetic Salesforce data: deterministic, complete, consistent, and
mapping cleanly through the files provider and the default mappings (the acceptance)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.integrations.repository import compile_entity_mapping
from core.models.integration import ConnectionConfig, SyncConfig, TenantIntegration
from core.models.shards import structured_data_model
from core.providers.files import FilesProvider
from core.providers.registry import (
    build_provider,
    default_custom_transforms,
    default_entity_mappings,
)
from core.providers.salesforce_defaults import SALESFORCE_ENTITIES, parse_salesforce_datetime
from samples.demo import (
    DATA_DIR_PLACEHOLDER,
    DEMO_INTEGRATION_FILE,
    DEMO_TENANT_ID,
    demo_integration_body,
)
from samples.demo.generate import (
    PERSONAL_DOMAINS,
    REFERENCE_TIME,
    SELLER_DOMAIN,
    STAGES,
    generate,
    main,
    salesforce_id,
    salesforce_id_checksum,
)

DEFAULT_COUNTS = {"Account": 500, "Contact": 3000, "Opportunity": 2000, "Lead": 300}
NINE_MONTHS = timedelta(days=276)


def digests(directory: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
    }


def load(directory: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        entity_type: [json.loads(line) for line in (directory / f"{entity_type}.ndjson").read_text(encoding="utf-8").splitlines()]
        for entity_type in DEFAULT_COUNTS
    }  # fmt: skip


def instant(text: str) -> datetime:
    return parse_salesforce_datetime(text, field="test")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo")
    generate(directory)
    return directory


@pytest.fixture(scope="module")
def records(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    return load(data_dir)


# --- determinism and counts -------------------------------------------------------------


def test_generation_is_byte_identical_across_runs(data_dir: Path, tmp_path: Path) -> None:
    written = generate(tmp_path / "again")
    assert sorted(written) == sorted(DEFAULT_COUNTS)
    assert digests(tmp_path / "again") == digests(data_dir)


def test_a_different_seed_gives_different_data(tmp_path: Path) -> None:
    small = {"accounts": 20, "contacts": 60, "opportunities": 40, "leads": 10}
    generate(tmp_path / "a", seed=1, **small)
    generate(tmp_path / "b", seed=1, **small)
    generate(tmp_path / "c", seed=2, **small)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    assert digests(tmp_path / "a") != digests(tmp_path / "c")


def test_default_counts(records: dict[str, list[dict[str, Any]]]) -> None:
    assert {entity_type: len(items) for entity_type, items in records.items()} == DEFAULT_COUNTS


def test_the_cli_writes_the_requested_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            str(tmp_path),
            "--seed",
            "7",
            "--accounts",
            "3",
            "--contacts",
            "5",
            "--opportunities",
            "4",
            "--leads",
            "2",
        ]
    )
    assert code == 0
    counts = {
        path.stem: len(path.read_text(encoding="utf-8").splitlines()) for path in tmp_path.iterdir()
    }
    assert counts == {"Account": 3, "Contact": 5, "Opportunity": 4, "Lead": 2}
    assert "Opportunity: 4 records" in capsys.readouterr().out


def test_the_cli_refuses_negative_counts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--accounts", "-1"])
    assert "-1 is negative" in capsys.readouterr().err


def test_generation_refuses_a_directory_with_another_file_for_an_entity_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Contact.csv").write_text("Id\n", encoding="utf-8")
    assert (
        main(
            [
                str(tmp_path),
                "--accounts",
                "1",
                "--contacts",
                "1",
                "--opportunities",
                "1",
                "--leads",
                "1",
            ]
        )
        == 2
    )
    assert "Contact.csv already holds Contact records" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["Contact.csv"]


def test_empty_and_tiny_datasets_are_consistent(tmp_path: Path) -> None:
    generate(tmp_path / "empty", accounts=0, contacts=0, opportunities=0, leads=0)
    assert all(path.read_bytes() == b"" for path in (tmp_path / "empty").iterdir())
    generate(tmp_path / "tiny", accounts=2, contacts=1, opportunities=5, leads=5)
    tiny = load(tmp_path / "tiny")
    assert {record["AccountId"] for record in tiny["Contact"]} <= {
        record["Id"] for record in tiny["Account"]
    }
    with pytest.raises(ValueError, match="need at least one account"):
        generate(tmp_path / "bad", accounts=0, contacts=1, opportunities=0, leads=0)


# --- ids --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("short", "full"),
    [
        ("a01M00000062mPg", "a01M00000062mPgIAI"),
        ("001M000000qfPyS", "001M000000qfPySIAU"),
        ("a0FE000000D6r3F", "a0FE000000D6r3FMAR"),
        ("0F9E000000092w2", "0F9E000000092w2KAA"),
        ("a0D30000001n7Pi", "a0D30000001n7PiEAI"),
    ],
)
def test_the_id_checksum_matches_salesforces_published_examples(short: str, full: str) -> None:
    assert short + salesforce_id_checksum(short) == full


def test_generated_ids_are_18_characters_with_the_right_prefix_and_checksum(
    records: dict[str, list[dict[str, Any]]],
) -> None:
    seen: set[str] = set()
    roles = [
        role
        for record in records["Opportunity"]
        for role in (record["OpportunityContactRoles"] or {"records": []})["records"]
    ]
    owners = {record["OwnerId"] for items in records.values() for record in items}
    for prefix, items in [
        *(
            (SALESFORCE_ENTITIES[entity_type].id_prefix, items)
            for entity_type, items in records.items()
        ),
        ("00K", roles),
        ("005", [{"Id": owner} for owner in owners]),
    ]:
        for record in items:
            record_id = record["Id"]
            assert len(record_id) == 18
            assert record_id.isalnum()
            assert record_id.startswith(prefix)
            assert salesforce_id_checksum(record_id[:15]) == record_id[15:]
            if prefix != "005":
                assert record_id not in seen
                seen.add(record_id)
    assert len(owners) == 20
    assert salesforce_id("006", 1) != salesforce_id("006", 2)


# --- referential integrity --------------------------------------------------------------


def test_every_reference_points_at_an_existing_record(
    records: dict[str, list[dict[str, Any]]],
) -> None:
    accounts = {record["Id"]: record for record in records["Account"]}
    contacts = {record["Id"]: record for record in records["Contact"]}
    opportunities = {record["Id"]: record for record in records["Opportunity"]}
    account_order = list(accounts)
    for record in records["Account"]:
        if record["ParentId"] is not None:
            assert account_order.index(record["ParentId"]) < account_order.index(record["Id"])
    assert all(record["AccountId"] in accounts for record in records["Contact"])
    assert {record["AccountId"] for record in records["Contact"]} == set(accounts)
    for record in records["Opportunity"]:
        account = accounts[record["AccountId"]]
        assert (record["Account"]["Name"], record["Account"]["Industry"]) == (
            account["Name"],
            account["Industry"],
        )
    converted = [record for record in records["Lead"] if record["IsConverted"]]
    assert converted
    for lead in converted:
        opportunity = opportunities[lead["ConvertedOpportunityId"]]
        contact = contacts[lead["ConvertedContactId"]]
        assert lead["ConvertedAccountId"] == opportunity["AccountId"] == contact["AccountId"]
        assert lead["Email"] == contact["Email"]
        assert lead["Status"] == "Closed - Converted"
    assert len({lead["ConvertedOpportunityId"] for lead in converted}) == len(converted)
    for lead in records["Lead"]:
        if not lead["IsConverted"]:
            assert (
                lead["ConvertedAccountId"]
                is lead["ConvertedOpportunityId"]
                is lead["ConvertedDate"]
                is None
            )


def test_contact_roles_are_contacts_of_the_opportunitys_account(
    records: dict[str, list[dict[str, Any]]],
) -> None:
    contacts = {record["Id"]: record for record in records["Contact"]}
    role_counts: Counter[int] = Counter()
    for opportunity in records["Opportunity"]:
        subquery = opportunity["OpportunityContactRoles"]
        roles = [] if subquery is None else subquery["records"]
        assert subquery is None or (subquery["totalSize"] == len(roles) > 0 and subquery["done"])
        role_counts[len(roles)] += 1
        for role in roles:
            contact = contacts[role["ContactId"]]
            assert contact["AccountId"] == opportunity["AccountId"]
            assert role["Contact"]["Email"] == contact["Email"]
            assert role["OpportunityId"] == opportunity["Id"]
        assert len({role["ContactId"] for role in roles}) == len(roles)
        assert [role["IsPrimary"] for role in roles].count(True) == (1 if roles else 0)
    assert set(role_counts) == {0, 1, 2, 3, 4}


def test_emails_are_unique_and_at_the_accounts_domain_except_a_few_personal_ones(
    records: dict[str, list[dict[str, Any]]],
) -> None:
    domains = {
        record["Id"]: record["Website"].split("//")[-1].removeprefix("www.").strip("/")
        for record in records["Account"]
    }
    assert len(set(domains.values())) == len(domains)
    emails = [record["Email"] for record in records["Contact"]]
    assert len(set(emails)) == len(emails)
    personal = 0
    for contact in records["Contact"]:
        domain = contact["Email"].rpartition("@")[2]
        if domain in PERSONAL_DOMAINS:
            personal += 1
        else:
            assert domain == domains[contact["AccountId"]]
    assert 0.03 <= personal / len(emails) <= 0.07
    assert all(
        record["Owner"]["Email"].endswith("@" + SELLER_DOMAIN) for record in records["Opportunity"]
    )


# --- stages and dates -------------------------------------------------------------------


def test_stages_carry_salesforce_probabilities(records: dict[str, list[dict[str, Any]]]) -> None:
    probabilities = {stage: probability for stage, probability, _, _ in STAGES}
    assert probabilities == {
        "Prospecting": 10, "Qualification": 20, "Needs Analysis": 30, "Value Proposition": 40,
        "Id. Decision Makers": 50, "Perception Analysis": 60, "Proposal/Price Quote": 75,
        "Negotiation/Review": 90, "Closed Won": 100, "Closed Lost": 0,
    }  # fmt: skip
    stages = Counter(record["StageName"] for record in records["Opportunity"])
    assert set(stages) == set(probabilities)
    for record in records["Opportunity"]:
        assert record["Probability"] == probabilities[record["StageName"]]
        assert record["IsClosed"] == record["StageName"].startswith("Closed")
        assert record["IsWon"] == (record["StageName"] == "Closed Won")
        assert (record["NextStep"] is None) == record["IsClosed"]
        assert record["Amount"] > 0


def test_dates_are_in_order_and_never_after_the_reference_time(
    records: dict[str, list[dict[str, Any]]],
) -> None:
    reference_day = REFERENCE_TIME.date()
    for entity_type, items in records.items():
        for record in items:
            created, modified = instant(record["CreatedDate"]), instant(record["LastModifiedDate"])
            assert created <= modified <= REFERENCE_TIME, (entity_type, record["Id"])
            if record["LastActivityDate"] is not None:
                activity = date.fromisoformat(record["LastActivityDate"])
                assert created.date() <= activity <= reference_day, (entity_type, record["Id"])
    for record in records["Opportunity"]:
        stage_changed = instant(record["LastStageChangeDate"])
        assert (
            instant(record["CreatedDate"]) <= stage_changed <= instant(record["LastModifiedDate"])
        )
        close = date.fromisoformat(record["CloseDate"])
        assert abs(close - reference_day) <= NINE_MONTHS
        assert close > instant(record["CreatedDate"]).date()
        if record["IsClosed"]:
            assert close <= reference_day
            assert stage_changed.date() == close
    closes = [date.fromisoformat(record["CloseDate"]) for record in records["Opportunity"]]
    assert min(closes) < reference_day - timedelta(days=240)
    assert max(closes) > reference_day + timedelta(days=240)
    for lead in records["Lead"]:
        if lead["IsConverted"]:
            assert instant(lead["CreatedDate"]).date() < date.fromisoformat(lead["ConvertedDate"])
    assert records["Account"][0]["CreatedDate"].endswith("+0000")
    assert instant(records["Account"][0]["CreatedDate"]).tzinfo is UTC


# --- the acceptance: everything maps cleanly --------------------------------------------


def test_every_generated_record_maps_cleanly_through_the_files_provider(data_dir: Path) -> None:
    integration = TenantIntegration(
        id="demo-crm",
        tenant_id=DEMO_TENANT_ID,
        integration_type_id="files",
        name="Demo CRM",
        connection=ConnectionConfig(auth_type="custom", settings={"path": str(data_dir)}),
        sync_config=SyncConfig(entity_mappings=default_entity_mappings("files")),
        custom_transforms=default_custom_transforms("files"),
    )
    adapter = build_provider("files", {"path": str(data_dir)})
    assert adapter.entity_types() == ["Account", "Contact", "Opportunity", "Lead"]
    mapped: dict[str, int] = {}
    statuses: Counter[str] = Counter()
    problems: list[tuple[str, str, Any]] = []
    for entity_type in adapter.entity_types():
        mapping = integration.entity_mapping(entity_type)
        compiled = compile_entity_mapping(integration, mapping)
        model = structured_data_model(mapping.shard_type_name)
        external_ids: set[str] = set()
        for page in adapter.fetch(entity_type):
            assert len(page.records) <= 200
            for record in page.records:
                external_ids.add(adapter.external_id(entity_type, record))
                result = compiled.map(record)
                problems += [
                    (entity_type, record["Id"], error)
                    for error in [*result.errors, *result.warnings]
                ]
                data = model.model_validate(result.data).to_data()
                if entity_type == "Opportunity":
                    statuses[data["status"]] += 1
                    assert len(data["contactRoles"]) == len(
                        (record["OpportunityContactRoles"] or {"records": []})["records"]
                    )
                if entity_type == "Account":
                    assert data["domain"] in data["website"]
        mapped[entity_type] = len(external_ids)
    assert problems == []
    assert mapped == DEFAULT_COUNTS
    assert set(statuses) == {"open", "won", "lost"}


def test_an_incremental_sync_of_the_demo_data_serves_only_newer_records(data_dir: Path) -> None:
    adapter = FilesProvider({"path": str(data_dir)})
    full = list(adapter.fetch("Opportunity"))
    cutoff = "2025-06-01T00:00:00.000Z"
    newer = [
        record for page in adapter.fetch("Opportunity", since=cutoff) for record in page.records
    ]
    expected = [
        record
        for page in full
        for record in page.records
        if instant(record["LastModifiedDate"]) > instant(cutoff)
    ]
    assert 0 < len(newer) < DEFAULT_COUNTS["Opportunity"]
    assert sorted(record["Id"] for record in newer) == sorted(record["Id"] for record in expected)
    assert full[-1].cursor == max(
        instant(record["LastModifiedDate"]) for page in full for record in page.records
    ).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the demo integration ---------------------------------------------------------------


def test_the_demo_integration_body_is_the_tenant_api_create_body(data_dir: Path) -> None:
    assert DEMO_TENANT_ID == "demo"
    raw = json.loads(DEMO_INTEGRATION_FILE.read_text(encoding="utf-8"))
    assert raw["config"]["path"] == DATA_DIR_PLACEHOLDER
    body = demo_integration_body(data_dir)
    assert body == {
        "provider": "files",
        "name": "Demo CRM (Salesforce-shaped files)",
        "config": {"path": str(data_dir.resolve()), "shape": "salesforce"},
        "syncConfig": {"frequency": {"type": "manual"}},
    }
    assert SyncConfig.model_validate(body["syncConfig"]).entity_mappings == []
    adapter = build_provider(body["provider"], body["config"])
    assert adapter.entity_types() == ["Account", "Contact", "Opportunity", "Lead"]

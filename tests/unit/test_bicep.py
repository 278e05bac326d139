"""The Bicep under infra/bicep parses, and declares exactly what the code uses.

No Bicep compiler is available offline, so the files are parsed with the tree-sitter
Bicep grammar (syntax only) and the literal lists in them (queues, topics,
subscriptions, containers, app settings, role ids) are read from the syntax tree and
compared with core/messaging/topology.py, core/containers.py, the function app's
trigger bindings and local.settings.json.example.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import tree_sitter_bicep
from pydantic import TypeAdapter
from tree_sitter import Language, Node, Parser

from core.containers import CONTAINERS
from core.messaging.topology import SERVICE_BUS_CONNECTION, TOPOLOGY, EntitySettings

ROOT = Path(__file__).resolve().parents[2]
BICEP_DIR = ROOT / "infra" / "bicep"
MAIN = BICEP_DIR / "main.bicep"
MODULES = BICEP_DIR / "modules"
PARAMETER_FILES = sorted((BICEP_DIR / "parameters").glob("*.parameters.json"))
LOCAL_SETTINGS_EXAMPLE = ROOT / "local.settings.json.example"
FUNCTION_APP = ROOT / "function_app.py"

PARSER = Parser(Language(tree_sitter_bicep.language()))
DURATION = TypeAdapter(timedelta)

# Set in Azure only: identity-based connections of the host and its bindings. Locally
# the host uses AzureWebJobsStorage (Azurite) and the app uses the developer's login.
AZURE_ONLY_SETTINGS: dict[str, str] = {
    "AzureWebJobsStorage__accountName": "host storage by identity; locally AzureWebJobsStorage",
    "AzureWebJobsStorage__credential": "host storage by identity; locally AzureWebJobsStorage",
    "AzureWebJobsStorage__clientId": "host storage by identity; locally AzureWebJobsStorage",
    "ServiceBusConnection__credential": "trigger connection by identity; locally the local bus",
    "ServiceBusConnection__clientId": "trigger connection by identity; locally the local bus",
    "AZURE_CLIENT_ID": "picks the user-assigned identity; locally it would hide az login",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Entra ID telemetry ingestion (keys are off)",
}

# Local only: emulator keys and connection strings, the local runtime's own knobs, and
# what Flex Consumption forbids. Azure gets the identity-based equivalents above.
LOCAL_ONLY_SETTINGS: dict[str, str] = {
    "AzureWebJobsStorage": "Azurite; in Azure the AzureWebJobsStorage__* identity settings",
    "FUNCTIONS_WORKER_RUNTIME": "func start needs it; Flex Consumption rejects it",
    "AzureWebJobsFeatureFlags": "worker indexing is the default in Azure for the v2 model",
    "STORE": "adapter override for mixed local setups; RUNTIME=azure picks Cosmos",
    "BUS": "adapter override for mixed local setups; RUNTIME=azure picks Service Bus",
    "BLOBS": "adapter override for mixed local setups; RUNTIME=azure picks Blob Storage",
    "SECRETS": "adapter override for mixed local setups; RUNTIME=azure picks Key Vault",
    "DATA_DIR": "SQLite files and blob folder of the local runtime",
    "COSMOS_KEY": "emulator key; Azure Cosmos has keys disabled",
    "COSMOS_VERIFY_TLS": "the emulator's self-signed certificate",
    "SERVICEBUS_CONNECTION_STRING": "emulator; Azure Service Bus has keys disabled",
    "BLOB_CONNECTION_STRING": "Azurite; Azure Storage has shared keys disabled",
    "LOCAL_JWT_SIGNING_KEY": "signs local bearer tokens; Azure checks Entra ID tokens by JWKS",
    "LOCAL_CONCURRENCY": "local host only",
    "WEBHOOK_RECEIPT_PROCESS": "applies to the local SQLite bus only; Azure uses Service Bus",
    "LOCAL_SHUTDOWN_GRACE_SECONDS": "local host only",
    "BUS_LOCK_DURATION_SECONDS": "local bus; Service Bus entities carry it (servicebus.bicep)",
    "BUS_MAX_DELIVERY_COUNT": "local bus; Service Bus entities carry it (servicebus.bicep)",
    "BUS_DUPLICATE_WINDOW_SECONDS": "local bus; Service Bus entities carry it (servicebus.bicep)",
}

# Settings the Flex Consumption plan rejects or ignores: runtime, scale and deployment
# live in the site's functionAppConfig instead.
FLEX_UNSUPPORTED_SETTINGS = frozenset(
    {
        "FUNCTIONS_EXTENSION_VERSION",
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_WORKER_RUNTIME_VERSION",
        "FUNCTIONS_MAX_HTTP_CONCURRENCY",
        "FUNCTIONS_WORKER_PROCESS_COUNT",
        "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
        "SCM_DO_BUILD_DURING_DEPLOYMENT",
        "ENABLE_ORYX_BUILD",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_NODE_DEFAULT_VERSION",
        "AzureWebJobsStorage",
    }
)

# Built-in role definition ids as documented in "Azure built-in roles".
DOCUMENTED_ROLE_IDS = {
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "serviceBusDataOwner": "090c5cfd-751d-490a-894a-3ce6f1109419",
    "keyVaultSecretsOfficer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "cognitiveServicesUser": "a97b65f3-24c7-4388-baec-2e87135dc908",
}
COSMOS_BUILT_IN_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"

_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}


@dataclass(frozen=True, slots=True)
class Expression:
    """A value known only at deployment: a reference, a function call, an interpolation."""

    text: str


@dataclass(frozen=True, slots=True)
class Parameter:
    type: str
    has_default: bool
    allowed: list[Any] | None
    min_value: int | None
    max_value: int | None


@dataclass(frozen=True, slots=True)
class Resource:
    type: str
    existing: bool
    loop_source: str | None
    body: dict[str, Any]


class BicepFile:
    """One parsed .bicep file, with the literal parts of it evaluated to Python values."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.source = path.read_bytes()
        self.root = PARSER.parse(self.source).root_node

    def text(self, node: Node) -> str:
        return self.source[node.start_byte : node.end_byte].decode()

    def syntax_errors(self) -> list[str]:
        return [
            f"{self.path}:{node.start_point.row + 1}:{node.start_point.column + 1}: "
            + (
                f"missing {node.type}"
                if node.is_missing
                else f"unexpected {self.text(node)[:60]!r}"
            )
            for node in _walk(self.root)
            if node.is_error or node.is_missing
        ]

    def _declarations(self, node_type: str) -> Iterator[tuple[Node, Node | None]]:
        decorators: Node | None = None
        for child in self.root.named_children:
            if child.type == "decorators":
                decorators = child
                continue
            if child.type == node_type:
                yield child, decorators
            if child.type != "comment":
                decorators = None

    def _name(self, declaration: Node) -> str:
        return self.text(_first(declaration, "identifier"))

    @cached_property
    def variables(self) -> dict[str, Node]:
        return {
            self._name(node): _value_node(node)
            for node, _ in self._declarations("variable_declaration")
        }

    def variable(self, name: str) -> Any:
        assert name in self.variables, f"{self.path.name}: no `var {name}`"
        return self.value(self.variables[name])

    def parameters(self) -> dict[str, Parameter]:
        parameters = {}
        for node, decorators in self._declarations("parameter_declaration"):
            calls = self._decorator_arguments(decorators)
            parameters[self._name(node)] = Parameter(
                type=self.text(_first(node, "type")),
                has_default=any(child.type == "=" for child in node.children),
                allowed=calls.get("allowed"),
                min_value=calls.get("minValue"),
                max_value=calls.get("maxValue"),
            )
        return parameters

    def _decorator_arguments(self, decorators: Node | None) -> dict[str, Any]:
        if decorators is None:
            return {}
        arguments = {}
        for call in (d.named_children[0] for d in decorators.named_children):
            function = call.child_by_field_name("function")
            argument_list = call.child_by_field_name("arguments")
            if function is not None and argument_list is not None and argument_list.named_children:
                arguments[self.text(function)] = self.value(argument_list.named_children[0])
        return arguments

    def resources(self, type_name: str = "") -> list[Resource]:
        """Resource declarations, all or those of one type (without API version)."""
        resources = []
        for node, _ in self._declarations("resource_declaration"):
            resource_type = self.value(_first(node, "string"))
            if type_name and resource_type.split("@")[0] != type_name:
                continue
            loop = _first_or_none(node, "for_statement")
            resources.append(
                Resource(
                    type=resource_type,
                    existing=any(child.type == "existing" for child in node.children),
                    loop_source=self._loop_source(loop) if loop is not None else None,
                    body=self.value(_body(node)),
                )
            )
        return resources

    def resource(self, type_name: str) -> Resource:
        matches = [r for r in self.resources(type_name) if not r.existing]
        assert len(matches) == 1, (
            f"{self.path.name}: expected one {type_name}, found {len(matches)}"
        )
        return matches[0]

    def _loop_source(self, loop: Node) -> str:
        children = list(loop.children)
        index = next(i for i, child in enumerate(children) if child.type == "in")
        return self.text(children[index + 1])

    def modules(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Module symbol -> (module path, its params)."""
        return {
            self._name(node): (
                self.value(_first(node, "string")),
                self.value(_body(node))["params"],
            )
            for node, _ in self._declarations("module_declaration")
        }

    def value(self, node: Node) -> Any:
        """Python value of a literal; an identifier naming a `var` of this file resolves to
        that var; anything else is an Expression."""
        match node.type:
            case "string":
                return self._string(node)
            case "number":
                return int(self.text(node))
            case "boolean":
                return self.text(node) == "true"
            case "null":
                return None
            case "array":
                return [self.value(item) for item in node.named_children if item.type != "comment"]
            case "object":
                return {
                    self._key(prop.named_children[0]): self.value(prop.named_children[-1])
                    for prop in node.named_children
                    if prop.type == "object_property"
                }
            case "identifier" if self.text(node) in self.variables:
                return self.value(self.variables[self.text(node)])
            case _:
                return Expression(self.text(node))

    def _key(self, node: Node) -> str:
        return self._string(node) if node.type == "string" else self.text(node)

    def _string(self, node: Node) -> Any:
        if any(part.type == "interpolation" for part in node.named_children):
            return Expression(self.text(node))
        parts = []
        for part in node.named_children:
            text = self.text(part)
            if part.type == "escape_sequence":
                parts.append(_ESCAPES.get(text) or chr(int(text[3:-1], 16)))
            else:
                parts.append(text)
        value = "".join(parts)
        if self.text(node).startswith("'''"):
            value = value.removeprefix("\r\n").removeprefix("\n")
        return value


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _first_or_none(node: Node, node_type: str) -> Node | None:
    return next((child for child in node.children if child.type == node_type), None)


def _first(node: Node, node_type: str) -> Node:
    found = _first_or_none(node, node_type)
    assert found is not None, f"no {node_type} in {node.type} at line {node.start_point.row + 1}"
    return found


def _value_node(declaration: Node) -> Node:
    children = list(declaration.children)
    return children[[child.type for child in children].index("=") + 1]


def _body(node: Node) -> Node:
    for child in node.children:
        if child.type == "object":
            return child
        if child.type in ("for_statement", "if_statement"):
            return _body(child)
    raise AssertionError(f"no body in {node.type} at line {node.start_point.row + 1}")


@cache
def bicep(name: str) -> BicepFile:
    return BicepFile(BICEP_DIR / name)


def bicep_files() -> list[Path]:
    return sorted([*BICEP_DIR.rglob("*.bicep"), *BICEP_DIR.rglob("*.bicepparam")])


def function_app_settings() -> dict[str, Any]:
    settings: dict[str, Any] = bicep("main.bicep").variable("functionAppSettings")
    return settings


def duration(value: str) -> timedelta:
    return DURATION.validate_python(value)


def entity_problems(where: str, properties: dict[str, Any], settings: EntitySettings) -> list[str]:
    expected = {
        "lockDuration": settings.lock_duration,
        "maxDeliveryCount": settings.max_delivery_count,
        "defaultMessageTimeToLive": settings.default_ttl,
        "deadLetteringOnMessageExpiration": settings.dead_letter_on_expiry,
    }
    problems = []
    for key, want in expected.items():
        got = properties.get(key)
        if isinstance(want, timedelta) and isinstance(got, str):
            got = duration(got)
        if got != want:
            problems.append(f"{where}: {key} is {got!r}, topology.py says {want!r}")
    return problems


def duplicate_detection_problems(
    where: str, properties: dict[str, Any], window: timedelta
) -> list[str]:
    problems = []
    if properties.get("requiresDuplicateDetection") is not True:
        problems.append(f"{where}: requiresDuplicateDetection must be true")
    got = properties.get("duplicateDetectionHistoryTimeWindow")
    if not isinstance(got, str) or duration(got) != window:
        problems.append(f"{where}: duplicate window is {got!r}, topology.py says {window}")
    return problems


def name_diff(
    kind: str, code: set[Any], infra: set[Any], code_file: str, infra_file: str
) -> list[str]:
    return [
        f"{kind} {name!r} is in {code_file} but not in {infra_file}"
        for name in sorted(code - infra)
    ] + [
        f"{kind} {name!r} is in {infra_file} but not in {code_file}"
        for name in sorted(infra - code)
    ]


# --- syntax --------------------------------------------------------------------------


def test_bicep_files_exist() -> None:
    names = {path.relative_to(BICEP_DIR).as_posix() for path in bicep_files()}
    assert {"main.bicep", "modules/rbac.bicep", "modules/servicebus.bicep"} <= names


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(BICEP_DIR).as_posix())
def test_bicep_file_parses_without_errors(path: Path) -> None:
    errors = BicepFile(path).syntax_errors()
    assert not errors, "\n".join(errors)


def test_syntax_check_reports_file_and_line_of_an_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.bicep"
    broken.write_text("param ok string\nvar settings = {\n  name: \n}\nresource = \n")
    errors = BicepFile(broken).syntax_errors()
    assert errors
    assert all(error.startswith(f"{broken}:") for error in errors)
    assert {int(error.split(":")[1]) for error in errors} & {3, 4, 5}


def test_every_module_path_in_main_exists() -> None:
    paths = {path for path, _ in bicep("main.bicep").modules().values()}
    assert paths
    missing = sorted(path for path in paths if not (BICEP_DIR / path).is_file())
    assert not missing, f"main.bicep references missing modules: {missing}"
    unused = {p.relative_to(BICEP_DIR).as_posix() for p in MODULES.glob("*.bicep")} - paths
    assert not unused, f"modules never used by main.bicep: {sorted(unused)}"


# --- parameter files -----------------------------------------------------------------


def test_parameter_files_cover_dev_and_prod() -> None:
    assert [p.name for p in PARAMETER_FILES] == ["dev.parameters.json", "prod.parameters.json"]


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda p: p.name)
def test_parameter_file_matches_main_parameters(path: Path) -> None:
    document = json.loads(path.read_text())
    assert document["$schema"].endswith("/deploymentParameters.json#")
    values = {name: entry["value"] for name, entry in document["parameters"].items()}
    declared = bicep("main.bicep").parameters()

    problems = [f"{name}: not a parameter of main.bicep" for name in values if name not in declared]
    problems += [
        f"{name}: required by main.bicep but not set"
        for name, parameter in declared.items()
        if not parameter.has_default and name not in values
    ]
    for name, value in values.items():
        parameter = declared.get(name)
        if parameter is None:
            continue
        if parameter.allowed is not None and value not in parameter.allowed:
            problems.append(f"{name}: {value!r} not in {parameter.allowed}")
        if parameter.min_value is not None and value < parameter.min_value:
            problems.append(f"{name}: {value!r} below {parameter.min_value}")
        if parameter.max_value is not None and value > parameter.max_value:
            problems.append(f"{name}: {value!r} above {parameter.max_value}")
        if parameter.type == "int" and not isinstance(value, int):
            problems.append(f"{name}: {value!r} is not an int")
        if parameter.type == "string" and not isinstance(value, str):
            problems.append(f"{name}: {value!r} is not a string")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


# --- Service Bus ---------------------------------------------------------------------


def test_queues_match_topology() -> None:
    queues = {
        queue["name"]: queue["properties"]
        for queue in bicep("modules/servicebus.bicep").variable("queues")
    }
    specs = {spec.name: spec for spec in TOPOLOGY.queues}
    problems = name_diff("queue", set(specs), set(queues), "topology.py", "servicebus.bicep")
    for name in set(specs) & set(queues):
        spec, where = specs[name], f"queue {name!r}"
        problems += entity_problems(where, queues[name], spec.settings)
        problems += duplicate_detection_problems(
            where, queues[name], spec.duplicate_detection_window
        )
    assert not problems, "\n".join(problems)


def test_topics_match_topology() -> None:
    topics = {
        topic["name"]: topic["properties"]
        for topic in bicep("modules/servicebus.bicep").variable("topics")
    }
    specs = {spec.name: spec for spec in TOPOLOGY.topics}
    problems = name_diff("topic", set(specs), set(topics), "topology.py", "servicebus.bicep")
    for name in set(specs) & set(topics):
        problems += duplicate_detection_problems(
            f"topic {name!r}", topics[name], specs[name].duplicate_detection_window
        )
    assert not problems, "\n".join(problems)


def test_subscriptions_and_filters_match_topology() -> None:
    declared = {
        (s["topic"], s["name"]): s
        for s in bicep("modules/servicebus.bicep").variable("subscriptions")
    }
    specs = {
        (topic.name, sub.name): sub for topic in TOPOLOGY.topics for sub in topic.subscriptions
    }
    problems = name_diff(
        "subscription", set(specs), set(declared), "topology.py", "servicebus.bicep"
    )
    for key in set(specs) & set(declared):
        where = f"subscription {key[0]}/{key[1]}"
        if declared[key]["sqlFilter"] != specs[key].sql_filter():
            problems.append(
                f"{where}: sqlFilter {declared[key]['sqlFilter']!r} != sql_filter() "
                f"{specs[key].sql_filter()!r}"
            )
        problems += entity_problems(where, declared[key]["properties"], specs[key].settings)
    assert not problems, "\n".join(problems)


def test_cross_checks_report_drift() -> None:
    drifted = {
        "lockDuration": "PT5M",
        "maxDeliveryCount": 10,
        "defaultMessageTimeToLive": "P2D",
        "deadLetteringOnMessageExpiration": False,
    }
    assert len(entity_problems("queue 'q'", drifted, EntitySettings())) == 4
    assert duplicate_detection_problems("queue 'q'", {}, timedelta(minutes=10))
    assert name_diff("queue", {"a", "b"}, {"b", "c"}, "code", "infra") == [
        "queue 'a' is in code but not in infra",
        "queue 'c' is in infra but not in code",
    ]


def test_service_bus_resources_are_built_from_the_checked_lists() -> None:
    servicebus = bicep("modules/servicebus.bicep")
    loops = {
        resource.type.split("@")[0]: resource
        for resource in servicebus.resources()
        if resource.loop_source is not None
    }
    assert loops["Microsoft.ServiceBus/namespaces/queues"].loop_source == "queues"
    assert loops["Microsoft.ServiceBus/namespaces/topics"].loop_source == "topics"
    assert (
        loops["Microsoft.ServiceBus/namespaces/topics/subscriptions"].loop_source == "subscriptions"
    )
    rules = loops["Microsoft.ServiceBus/namespaces/topics/subscriptions/rules"]
    assert rules.loop_source == "subscriptions"
    # '$Default' replaces the accept-all rule; any other name would be OR-ed with it.
    assert rules.body["name"] == "$Default"
    assert rules.body["properties"]["filterType"] == "SqlFilter"
    assert rules.body["properties"]["sqlFilter"]["sqlExpression"] == Expression(
        "subscription.sqlFilter"
    )
    namespace = servicebus.resource("Microsoft.ServiceBus/namespaces")
    assert namespace.body["sku"]["name"] == "Standard"
    assert namespace.body["properties"]["disableLocalAuth"] is True


# --- Cosmos DB -----------------------------------------------------------------------


def test_cosmos_containers_match_store_containers() -> None:
    cosmos = bicep("modules/cosmos.bicep")
    declared = {container["name"]: container for container in cosmos.variable("containers")}
    specs = {spec.name: spec for spec in CONTAINERS}
    problems = name_diff("container", set(specs), set(declared), "containers.py", "cosmos.bicep")
    for name in set(specs) & set(declared):
        spec, container = specs[name], declared[name]
        if container["partitionKeyPath"] != spec.partition_key:
            problems.append(
                f"{name}: partition key {container['partitionKeyPath']!r} != {spec.partition_key!r}"
            )
        ttl = None if container["defaultTtl"] == -1 else container["defaultTtl"]
        if ttl != spec.default_ttl_seconds:
            problems.append(
                f"{name}: defaultTtl {container['defaultTtl']!r} != {spec.default_ttl_seconds!r}"
            )
    assert not problems, "\n".join(problems)
    loop = cosmos.resource("Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers")
    assert loop.loop_source == "containers"
    assert loop.body["properties"]["resource"]["indexingPolicy"].text == (
        "indexingPolicies[container.name]"
    ), "each container takes its generated indexing policy"


# --- security posture ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "resource_type", "setting", "expected"),
    [
        ("storage", "Microsoft.Storage/storageAccounts", "allowSharedKeyAccess", False),
        ("storage", "Microsoft.Storage/storageAccounts", "allowBlobPublicAccess", False),
        ("servicebus", "Microsoft.ServiceBus/namespaces", "disableLocalAuth", True),
        ("cosmos", "Microsoft.DocumentDB/databaseAccounts", "disableLocalAuth", True),
        ("cognitive", "Microsoft.CognitiveServices/accounts", "disableLocalAuth", True),
        ("monitoring", "Microsoft.Insights/components", "DisableLocalAuth", True),
        ("keyvault", "Microsoft.KeyVault/vaults", "enableRbacAuthorization", True),
        ("keyvault", "Microsoft.KeyVault/vaults", "enableSoftDelete", True),
        ("keyvault", "Microsoft.KeyVault/vaults", "enablePurgeProtection", True),
    ],
)
def test_keys_are_off_and_vault_is_protected(
    module: str, resource_type: str, setting: str, expected: bool
) -> None:
    resource = bicep(f"modules/{module}.bicep").resource(resource_type)
    assert resource.body["properties"][setting] is expected


def test_key_vault_audit_log_goes_to_log_analytics() -> None:
    audit = bicep("modules/keyvault.bicep").resource("Microsoft.Insights/diagnosticSettings")
    assert audit.body["scope"] == Expression("vault")
    assert {"categoryGroup": "audit", "enabled": True} in audit.body["properties"]["logs"]
    assert audit.body["properties"]["workspaceId"] == Expression("logAnalyticsWorkspaceId")


def test_cognitive_accounts_have_a_custom_subdomain_for_entra_tokens() -> None:
    account = bicep("modules/cognitive.bicep").resource("Microsoft.CognitiveServices/accounts")
    assert account.body["properties"]["customSubDomainName"] == Expression("name")
    kinds = sorted(
        params["kind"]
        for path, params in bicep("main.bicep").modules().values()
        if path == "modules/cognitive.bicep"
    )
    assert kinds == ["FormRecognizer", "SpeechServices"]


def test_role_ids_are_the_documented_built_in_roles_and_all_used() -> None:
    rbac = bicep("modules/rbac.bicep")
    assert rbac.variable("roleDefinitionIds") == DOCUMENTED_ROLE_IDS
    assert rbac.variable("cosmosBuiltInDataContributorId") == COSMOS_BUILT_IN_DATA_CONTRIBUTOR
    source = rbac.source.decode()
    unused = [key for key in DOCUMENTED_ROLE_IDS if f"roleDefinitionIds.{key}" not in source]
    assert not unused, f"roles declared but never assigned: {unused}"
    assert rbac.resources("Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments")


# --- Function App --------------------------------------------------------------------


def test_function_app_runs_python_311_on_flex_consumption_as_its_identity() -> None:
    app = bicep("modules/functionapp.bicep")
    plan = app.resource("Microsoft.Web/serverfarms")
    assert plan.body["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    site = app.resource("Microsoft.Web/sites")
    config = site.body["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert site.body["identity"]["type"] == "UserAssigned"
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"


def test_app_settings_use_identity_connections_only() -> None:
    settings = function_app_settings()
    assert settings["RUNTIME"] == "azure"
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert f"{SERVICE_BUS_CONNECTION}__fullyQualifiedNamespace" in settings
    for name in [n for n in settings if n.endswith("__credential")]:
        prefix = name.removesuffix("__credential")
        assert settings[name] == "managedidentity", name
        assert f"{prefix}__clientId" in settings, (
            f"{prefix}: a user-assigned identity needs __clientId"
        )
    literal_values = [value for value in settings.values() if isinstance(value, str)]
    assert not [v for v in literal_values if "AccountKey=" in v or "SharedAccessKey=" in v]
    unsupported = sorted(FLEX_UNSUPPORTED_SETTINGS & set(settings))
    assert not unsupported, f"not allowed on Flex Consumption: {unsupported}"


def test_setting_allow_lists_agree_with_the_bicep() -> None:
    settings = set(function_app_settings())
    stale = sorted(set(AZURE_ONLY_SETTINGS) - settings)
    assert not stale, f"AZURE_ONLY_SETTINGS names not set in main.bicep: {stale}"
    both = sorted(set(LOCAL_ONLY_SETTINGS) & settings)
    assert not both, f"LOCAL_ONLY_SETTINGS names that main.bicep sets in Azure: {both}"


def test_app_settings_match_local_settings_example() -> None:
    if not LOCAL_SETTINGS_EXAMPLE.exists():
        pytest.skip(
            "local.settings.json.example does not exist yet: app settings not cross-checked"
        )
    local = set(json.loads(LOCAL_SETTINGS_EXAMPLE.read_text())["Values"])
    azure = set(function_app_settings())
    missing_locally = sorted(azure - local - set(AZURE_ONLY_SETTINGS))
    missing_in_azure = sorted(local - azure - set(LOCAL_ONLY_SETTINGS))
    assert not missing_locally, (
        f"set in main.bicep but not in local.settings.json.example: {missing_locally} "
        "(add them there, or to AZURE_ONLY_SETTINGS with the reason)"
    )
    assert not missing_in_azure, (
        f"in local.settings.json.example but not set in main.bicep: {missing_in_azure} "
        "(set them in functionAppSettings, or add them to LOCAL_ONLY_SETTINGS with the reason)"
    )


# Run in a child process: FunctionApp.get_functions() refuses to run twice on one app
# (it remembers the names it has seen), and other tests may already have called it.
_LIST_BINDINGS = """
import json
from function_app import app
print(json.dumps([
    [function.get_function_name(), binding.get_dict_repr()]
    for function in app.get_functions()
    for binding in function.get_bindings()
], default=str))
"""


@cache
def _function_bindings() -> tuple[tuple[str, dict[str, Any]], ...]:
    result = subprocess.run(
        [sys.executable, "-c", _LIST_BINDINGS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"importing function_app failed:\n{result.stderr}"
    return tuple((name, binding) for name, binding in json.loads(result.stdout.splitlines()[-1]))


def function_bindings() -> tuple[tuple[str, dict[str, Any]], ...]:
    if not FUNCTION_APP.exists():
        pytest.skip("function_app.py does not exist yet: trigger bindings not cross-checked")
    return _function_bindings()


Bindings = Iterable[tuple[str, dict[str, Any]]]


def service_bus_binding_problems(bindings: Bindings) -> list[str]:
    """Every Service Bus trigger/output names a declared queue, topic or subscription and
    uses the identity-based ServiceBusConnection."""
    servicebus = bicep("modules/servicebus.bicep")
    queues = {queue["name"] for queue in servicebus.variable("queues")}
    topics = {topic["name"] for topic in servicebus.variable("topics")}
    subscriptions = {(s["topic"], s["name"]) for s in servicebus.variable("subscriptions")}
    problems = []
    for function, binding in bindings:
        if binding["type"] not in ("serviceBusTrigger", "serviceBus"):
            continue
        where = f"{function} ({binding['type']} {binding['name']})"
        if binding.get("queueName") is not None:
            if binding["queueName"] not in queues:
                problems.append(f"{where}: queue {binding['queueName']!r} not in servicebus.bicep")
        elif binding.get("topicName") not in topics:
            problems.append(f"{where}: topic {binding.get('topicName')!r} not in servicebus.bicep")
        elif binding["type"] == "serviceBusTrigger":
            key = (binding["topicName"], binding.get("subscriptionName"))
            if key not in subscriptions:
                problems.append(f"{where}: subscription {key[0]}/{key[1]} not in servicebus.bicep")
        if binding.get("connection") != SERVICE_BUS_CONNECTION:
            problems.append(
                f"{where}: connection {binding.get('connection')!r}, "
                f"expected {SERVICE_BUS_CONNECTION!r}"
            )
    return problems


def connection_problems(bindings: Bindings) -> list[str]:
    """Every binding connection has an app setting (plain or `__` identity form) in the
    Bicep, and every blob binding's container is declared."""
    settings = set(function_app_settings())
    containers = {c["name"] for c in bicep("modules/storage.bicep").variable("dataContainers")}
    problems = []
    for function, binding in bindings:
        where = f"{function} ({binding['type']} {binding['name']})"
        is_blob = binding["type"] in ("blobTrigger", "blob")
        connection = binding.get("connection") or ("AzureWebJobsStorage" if is_blob else None)
        if connection is not None and not any(
            name == connection or name.startswith(f"{connection}__") for name in settings
        ):
            problems.append(f"{where}: connection {connection!r} has no app setting in main.bicep")
        if is_blob and binding["path"].split("/")[0] not in containers:
            problems.append(f"{where}: blob container of {binding['path']!r} not in storage.bicep")
    return problems


def test_service_bus_bindings_name_entities_the_bicep_declares() -> None:
    bindings = function_bindings()
    assert any(b["type"] == "serviceBusTrigger" for _, b in bindings), (
        "function_app registers no Service Bus trigger"
    )
    problems = service_bus_binding_problems(bindings)
    assert not problems, "\n".join(problems)


def test_every_binding_connection_and_blob_container_exists_in_azure() -> None:
    problems = connection_problems(function_bindings())
    assert not problems, "\n".join(problems)


def test_binding_checks_report_undeclared_entities_and_connections() -> None:
    app = func.FunctionApp()

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="sync_tasks", connection="SB")
    def misnamed_queue(msg: func.ServiceBusMessage) -> None:
        """A queue name with the wrong separator, on an unknown connection."""

    @app.service_bus_topic_trigger(
        arg_name="msg",
        topic_name="shard-events",
        subscription_name="entity-link",
        connection=SERVICE_BUS_CONNECTION,
    )
    def unknown_subscription(msg: func.ServiceBusMessage) -> None:
        """A subscription the topology does not have."""

    @app.blob_trigger(arg_name="blob", path="uploads/{name}", connection="UploadStorage")
    def unknown_container(blob: func.InputStream) -> None:
        """A container and a connection the Bicep does not declare."""

    bindings = [
        (function.get_function_name(), binding.get_dict_repr())
        for function in app.get_functions()
        for binding in function.get_bindings()
    ]
    assert service_bus_binding_problems(bindings) == [
        "misnamed_queue (serviceBusTrigger msg): queue 'sync_tasks' not in servicebus.bicep",
        "misnamed_queue (serviceBusTrigger msg): connection 'SB', expected 'ServiceBusConnection'",
        "unknown_subscription (serviceBusTrigger msg): "
        "subscription shard-events/entity-link not in servicebus.bicep",
    ]
    assert connection_problems(bindings) == [
        "misnamed_queue (serviceBusTrigger msg): connection 'SB' has no app setting in main.bicep",
        "unknown_container (blobTrigger blob): "
        "connection 'UploadStorage' has no app setting in main.bicep",
        "unknown_container (blobTrigger blob): "
        "blob container of 'uploads/{name}' not in storage.bicep",
    ]


def test_cosmos_indexing_policies_are_the_stores_own() -> None:
    """The composite indexes the Cosmos store's ORDER BY paging needs exist in Azure too."""
    from core.adapters.azure.cosmos_store import indexing_policies

    generated = json.loads((BICEP_DIR / "modules" / "cosmos-indexing.json").read_text())
    assert generated == indexing_policies(), (
        "run `python -m core.adapters.azure.cosmos_store` to regenerate cosmos-indexing.json"
    )
    assert (
        "loadJsonContent('cosmos-indexing.json')"
        in (BICEP_DIR / "modules" / "cosmos.bicep").read_text()
    )

import contextlib
import threading
import time
from typing import Any

import pytest
from simpleeval import InvalidExpression

from core.mapping.custom import (
    EXPRESSION_FUNCTIONS,
    ExpressionError,
    InvalidCustomTransformError,
    SafeExpression,
    _Sandbox,
    registry_for_integration,
    validate_custom_transforms,
)
from core.mapping.errors import MappingConfigError
from core.mapping.transforms import BUILTIN_TRANSFORMS, TransformError, TransformFunction

INTEGRATION = "int-sf-1"

STAGE_TABLE = {
    "kind": "lookup",
    "name": "salesforceStageToInternal",
    "description": "Salesforce stages to ours",
    "table": {"Closed Won": "won", "Closed Lost": "lost", "Prospecting": "open"},
}


def custom(config: dict[str, Any]) -> TransformFunction:
    registry = registry_for_integration(INTEGRATION, [config])
    definition = registry.resolve(config["name"])
    assert definition is not None
    return definition.build()


# --- registration ------------------------------------------------------------------------


def test_custom_transforms_register_under_the_integration_prefix() -> None:
    registry = registry_for_integration(INTEGRATION, [STAGE_TABLE])
    by_short_name = registry.resolve("salesforceStageToInternal")
    by_full_name = registry.resolve(f"{INTEGRATION}:salesforceStageToInternal")
    assert by_short_name is not None
    assert by_short_name is by_full_name
    assert by_short_name.name == f"{INTEGRATION}:salesforceStageToInternal"
    assert registry.resolve("trim") is BUILTIN_TRANSFORMS.resolve("trim")


def test_another_integrations_prefix_does_not_resolve() -> None:
    registry = registry_for_integration(INTEGRATION, [STAGE_TABLE])
    assert registry.resolve("other-integration:salesforceStageToInternal") is None
    assert BUILTIN_TRANSFORMS.resolve("salesforceStageToInternal") is None


def test_custom_transforms_are_described_for_the_api() -> None:
    registry = registry_for_integration(INTEGRATION, [STAGE_TABLE])
    described = {item.name: item for item in registry.describe()}
    entry = described[f"{INTEGRATION}:salesforceStageToInternal"]
    assert entry.custom
    assert entry.category == "custom"
    assert entry.description == "Salesforce stages to ours"
    assert not described["trim"].custom


def test_custom_transforms_take_no_per_mapping_options() -> None:
    registry = registry_for_integration(INTEGRATION, [STAGE_TABLE])
    definition = registry.resolve("salesforceStageToInternal")
    assert definition is not None
    with pytest.raises(ValueError, match="Extra inputs"):
        definition.build({"table": {}})


@pytest.mark.parametrize(
    ("configs", "reason"),
    [
        ([STAGE_TABLE, STAGE_TABLE], "duplicate name"),
        ([{**STAGE_TABLE, "name": "trim"}], "taken by a built-in"),
        ([{**STAGE_TABLE, "name": "has space"}], "name"),
        ([{**STAGE_TABLE, "kind": "javascript"}], "kind"),
        ([{"kind": "lookup", "name": "x", "table": {}}], "table"),
        ([{**STAGE_TABLE, "code": "return 1"}], "Extra inputs"),
        ([{"kind": "regexReplace", "name": "x", "pattern": "("}], "invalid pattern"),
        (
            [{"kind": "regexReplace", "name": "x", "pattern": "(a)", "replacement": r"\2"}],
            "refers to group '2'",
        ),
        (
            [{"kind": "regexReplace", "name": "x", "pattern": "(a)", "replacement": r"\g<b>"}],
            "refers to group 'b'",
        ),
        ([{"kind": "template", "name": "x", "template": "${other}"}], "unknown names ['other']"),
        ([{"kind": "template", "name": "x", "template": "$"}], "invalid template"),
        ([{"kind": "expression", "name": "x", "expression": "value +"}], "not a single valid"),
        (
            [{"kind": "expression", "name": "x", "expression": "v", "params": {"value": 1}}],
            "reserved",
        ),
    ],
)
def test_bad_custom_transforms_are_reported_by_name(
    configs: list[dict[str, Any]], reason: str
) -> None:
    problems = validate_custom_transforms(INTEGRATION, configs)
    assert problems
    assert any(reason in problem.reason for problem in problems), problems
    with pytest.raises(MappingConfigError) as caught:
        registry_for_integration(INTEGRATION, configs)
    assert caught.value.errors == problems


def test_valid_custom_transforms_have_no_problems() -> None:
    assert validate_custom_transforms(INTEGRATION, [STAGE_TABLE]) == []


# --- lookup ------------------------------------------------------------------------------


def test_lookup_maps_known_values_and_refuses_unknown_ones_by_default() -> None:
    lookup = custom(STAGE_TABLE)
    assert lookup("Closed Won") == "won"
    assert lookup(None) is None
    with pytest.raises(TransformError, match="not in lookup table 'salesforceStageToInternal'"):
        lookup("Negotiation")


def test_lookup_unmatched_keep_and_default() -> None:
    assert custom({**STAGE_TABLE, "unmatched": "keep"})("Negotiation") == "Negotiation"
    with_default = custom({**STAGE_TABLE, "unmatched": "default", "default": "open"})
    assert with_default("Negotiation") == "open"


def test_lookup_case_insensitive_and_non_text_keys() -> None:
    folded = custom({**STAGE_TABLE, "caseInsensitive": True})
    assert folded("closed won") == "won"
    flags = custom({"kind": "lookup", "name": "flag", "table": {"true": "Y", "1": "one"}})
    assert flags(True) == "Y"
    assert flags(1) == "one"


# --- regex replace -----------------------------------------------------------------------


def test_regex_replace_with_groups_count_and_case() -> None:
    phone = custom(
        {
            "kind": "regexReplace",
            "name": "phone",
            "pattern": r"^\+?1?\D*(\d{3})\D*(\d{3})\D*(\d{4})$",
            "replacement": r"+1-\1-\2-\3",
        }
    )
    assert phone("(415) 555 0100") == "+1-415-555-0100"
    first_only = custom(
        {"kind": "regexReplace", "name": "x", "pattern": "a", "replacement": "b", "count": 1}
    )
    assert first_only("aaa") == "baa"
    ignore_case = custom(
        {"kind": "regexReplace", "name": "x", "pattern": "inc\\.?$", "ignoreCase": True}
    )
    assert ignore_case("Acme INC.") == "Acme "


def test_regex_replace_refuses_non_text() -> None:
    strip = custom({"kind": "regexReplace", "name": "x", "pattern": "a"})
    with pytest.raises(TransformError, match="expects text"):
        strip(12)


def test_regex_replace_stops_a_catastrophic_pattern() -> None:
    slow = custom({"kind": "regexReplace", "name": "x", "pattern": r"(a|aa)+$"})
    started = time.perf_counter()
    with pytest.raises(TransformError, match="took longer than"):
        slow("a" * 60 + "b")
    assert time.perf_counter() - started < 2


# --- template ----------------------------------------------------------------------------


def test_template_renders_value_and_params() -> None:
    render = custom(
        {
            "kind": "template",
            "name": "dealUrl",
            "template": "https://$host/deals/${value}?src=$$crm",
            "params": {"host": "crm.example.com"},
        }
    )
    assert render("006A") == "https://crm.example.com/deals/006A?src=$crm"
    assert render(42) == "https://crm.example.com/deals/42?src=$crm"
    assert render(True) == "https://crm.example.com/deals/true?src=$crm"
    assert render(None) is None
    with pytest.raises(TransformError, match="cannot turn object into text"):
        render({"id": 1})


def test_template_syntax_has_no_attribute_or_index_access() -> None:
    problems = validate_custom_transforms(
        INTEGRATION,
        [{"kind": "template", "name": "x", "template": "${value.__class__}"}],
    )
    assert problems
    problems = validate_custom_transforms(
        INTEGRATION, [{"kind": "template", "name": "x", "template": "{value.__class__}"}]
    )
    assert problems == []
    assert custom({"kind": "template", "name": "x", "template": "{value.__class__}"})("a") == (
        "{value.__class__}"
    )


# --- expressions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value", "expected"),
    [
        ("value * 100 if value <= 1 else value", 0.25, 25.0),
        ("value * 100 if value <= 1 else value", 40, 40),
        ("round(value / rate, 2)", 100, 90.91),
        ("'high' if value >= threshold else 'low'", 75, "high"),
        ("value in ('Closed Won', 'Won')", "Won", True),
        ("value is None", None, True),
        ("upper(trim(value))", " eur ", "EUR"),
        ("max(value, 0) + abs(-2)", -5, 2),
        ("len(value)", [1, 2, 3], 3),
        ("value[0]", ["a", "b"], "a"),
        ("value['amount'] * 2", {"amount": 5}, 10),
        ("value[:3]", "abcdef", "abc"),
        ("str(value) + '%'", 50, "50%"),
        ("int(value) // 2", "9", 4),
        ("not value and True", 0, True),
        ("2 ** 10", None, 1024),
        ("value % 7", 23, 2),
    ],
)
def test_expressions_compute(expression: str, value: Any, expected: Any) -> None:
    transform = custom(
        {
            "kind": "expression",
            "name": "calc",
            "expression": expression,
            "params": {"rate": 1.1, "threshold": 50},
        }
    )
    assert transform(value) == expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("value.__class__", "attribute access is not allowed"),
        ("value.upper()", "attribute access is not allowed"),
        ("().__class__.__bases__[0]", "attribute access is not allowed"),
        ("__import__('os')", "names starting with '_' are not allowed"),
        ("import os", "not a single valid expression"),
        ("open('/etc/passwd')", "function 'open' is not allowed"),
        ("eval('1')", "function 'eval' is not allowed"),
        ("getattr(value, 'x')", "function 'getattr' is not allowed"),
        ("__builtins__", "names starting with '_' are not allowed"),
        ("unknown + 1", "unknown name 'unknown'"),
        ("max", "unknown name 'max'"),
        ("lambda: 1", "lambda is not allowed"),
        ("[x for x in value]", "comprehensions are not allowed"),
        ("f'{value}'", "f-strings are not allowed"),
        ("(x := 1)", "assignment is not allowed"),
        ("{'a': 1}", "dict literals are not allowed"),
        ("round(value, ndigits=2)", "keyword arguments are not allowed"),
        ("max(*value)", "unpacking is not allowed"),
        ("(lambda: 1)()", "lambda is not allowed"),
        ("b'x'", "bytes literals are not allowed"),
        ("value << 2", "LShift is not allowed"),
        ("value & 1", "BitAnd is not allowed"),
        ("1 + " * 300 + "1", "longer than 1000"),
        ("+".join(["value"] * 150), "more than 200 parts"),
    ],
)
def test_expressions_refuse_anything_outside_the_whitelist(expression: str, reason: str) -> None:
    with pytest.raises(InvalidCustomTransformError) as caught:
        SafeExpression(expression, frozenset({"value"}))
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("expression", "value", "reason"),
    [
        ("9 ** 9 ** 9", None, "exponent"),
        ("value ** 1000", 10, "exponent 1000 is larger than 100"),
        ("value ** 99", 10**40, "larger than 4096 bits"),
        ("'x' * 100000", None, "longer than 10000"),
        ("value * value", "ab", "expression failed"),
        ("value * 20000", [1], "longer than 10000"),
        ("value + value", "x" * 6000, "longer than 10000"),
        ("'%999999999d' % value", 1, "only allowed on numbers"),
        ("round(value, 10000)", 5, "between -15 and 15"),
        ("value / 0", 1, "expression failed"),
        ("value - 1", "text", "expression failed"),
        ("value['missing']", {}, "expression failed"),
        ("int(value)", "abc", "expression failed"),
        ("(-8) ** 0.5", None, "not a real number"),
        ("upper(value)", 5, "expected text, got number"),
    ],
)
def test_expressions_fail_safely_on_values(expression: str, value: Any, reason: str) -> None:
    expression_object = SafeExpression(expression, frozenset({"value"}))
    started = time.perf_counter()
    with pytest.raises(ExpressionError) as caught:
        expression_object.evaluate({"value": value})
    assert reason in caught.value.reason
    assert time.perf_counter() - started < 1


def test_expression_errors_are_transform_errors_for_the_mapper() -> None:
    transform = custom({"kind": "expression", "name": "x", "expression": "value / 0"})
    with pytest.raises(TransformError, match="division by zero"):
        transform(1)


def test_the_whitelisted_functions_are_only_harmless_ones() -> None:
    assert set(EXPRESSION_FUNCTIONS) == {
        "abs",
        "round",
        "min",
        "max",
        "len",
        "int",
        "float",
        "str",
        "bool",
        "lower",
        "upper",
        "trim",
    }


def test_expressions_evaluate_correctly_from_many_threads_at_once() -> None:
    expression = SafeExpression("value * factor", frozenset({"value", "factor"}))
    failures: list[str] = []

    def work(factor: int) -> None:
        for value in range(300):
            result = expression.evaluate({"value": value, "factor": factor})
            if result != value * factor:
                failures.append(f"{value} * {factor} gave {result}")

    threads = [threading.Thread(target=work, args=(factor,)) for factor in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.parametrize(
    "expression", ["value.real", "f'{value:>99999999}'", "[v for v in value]", "{1: 2}"]
)
def test_the_runtime_evaluator_refuses_what_the_checker_refuses(expression: str) -> None:
    """Defence in depth: the sandbox itself lacks the node handlers, so an expression that
    somehow skipped the tree check still cannot use them."""
    sandbox = _Sandbox()
    sandbox.names = {"value": 1}
    with pytest.raises(InvalidExpression):
        sandbox.eval(expression)


def test_an_escaped_backslash_in_the_replacement_is_not_a_group_reference() -> None:
    literal = custom({"kind": "regexReplace", "name": "x", "pattern": "-", "replacement": "\\\\1"})
    assert literal("a-b") == "a\\1b"


ODD_VALUES: list[Any] = [
    None,
    "",
    "1" * 5000,
    10**400,
    1e308,
    float("nan"),
    b"bytes",
    {"a": 1},
    [1, {"a": 1}],
    object(),
    True,
]
ONE_OF_EACH_KIND: list[dict[str, Any]] = [
    STAGE_TABLE,
    {"kind": "regexReplace", "name": "digits", "pattern": "[0-9]", "replacement": "#"},
    {"kind": "template", "name": "label", "template": "<$value>"},
    {"kind": "expression", "name": "calc", "expression": "str(value) + str(value * 2)"},
    {"kind": "expression", "name": "big", "expression": "value ** 3 if value else value"},
]


@pytest.mark.parametrize("config", ONE_OF_EACH_KIND, ids=lambda config: config["name"])
def test_custom_transforms_only_ever_raise_transform_errors(config: dict[str, Any]) -> None:
    transform = custom(config)
    for value in ODD_VALUES:
        with contextlib.suppress(TransformError):
            transform(value)

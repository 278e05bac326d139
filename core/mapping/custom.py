"""Per-integration custom transforms, declared in the integration's config.

Four declarative kinds, none of which runs config-supplied code:

* `lookup`: a table from source values to target values (`salesforceStageToInternal`).
* `regexReplace`: a regular-expression substitution, run by the `regex` engine with a time
  limit so that a catastrophic pattern cannot stall a worker.
* `template`: text built with `string.Template` (`${value}`, `$value`, and named params);
  no attribute or index access is possible in that syntax.
* `expression`: a small arithmetic/conditional expression (`value * 100 if value <= 1 else
  value`) evaluated by `simpleeval` over the parsed tree, with attribute access,
  comprehensions, f-strings and assignment removed, a whitelist of functions, and bounds on
  powers, string and list sizes. The tree is checked once when the config is loaded so that
  a bad expression is a 422 at save time, not an error per record.

Each is registered as `{integrationId}:{name}` and a field mapping refers to it by `name`.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from string import Template
from typing import Annotated, Any, Final, Literal

import regex
from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel
from simpleeval import EvalWithCompoundTypes, InvalidExpression

from core.mapping.coercion import describe_value
from core.mapping.errors import FieldError, MappingConfigError
from core.mapping.transforms import (
    BUILTIN_TRANSFORMS,
    NoOptions,
    TransformDefinition,
    TransformError,
    TransformFunction,
    TransformRegistry,
    lookup_key,
)

MAX_EXPRESSION_LENGTH: Final = 1000
MAX_EXPRESSION_NODES: Final = 200
MAX_SEQUENCE_LENGTH: Final = 10_000
MAX_EXPONENT: Final = 100
MAX_INTEGER_BITS: Final = 4096
REGEX_TIMEOUT_SECONDS: Final = 0.1

Scalar = str | int | float | bool | None
_IDENTIFIER = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"


# --- config ------------------------------------------------------------------------------


class _CustomTransformBase(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    name: str = Field(pattern=_IDENTIFIER)
    description: str = Field("", max_length=500)


class LookupTransformConfig(_CustomTransformBase):
    kind: Literal["lookup"]
    table: dict[str, JsonValue] = Field(min_length=1, max_length=10_000)
    case_insensitive: bool = False
    unmatched: Literal["error", "keep", "default"] = "error"
    default: JsonValue = None


class RegexReplaceTransformConfig(_CustomTransformBase):
    kind: Literal["regexReplace"]
    pattern: str = Field(min_length=1, max_length=500)
    replacement: str = Field("", max_length=500)
    ignore_case: bool = False
    count: int = Field(0, ge=0, description="Replacements to make; 0 means all.")


class TemplateTransformConfig(_CustomTransformBase):
    kind: Literal["template"]
    template: str = Field(min_length=1, max_length=2000)
    params: dict[str, Scalar] = Field(default_factory=dict, max_length=50)


class ExpressionTransformConfig(_CustomTransformBase):
    kind: Literal["expression"]
    expression: str = Field(min_length=1, max_length=MAX_EXPRESSION_LENGTH)
    params: dict[str, Scalar] = Field(default_factory=dict, max_length=50)


CustomTransformConfig = Annotated[
    LookupTransformConfig
    | RegexReplaceTransformConfig
    | TemplateTransformConfig
    | ExpressionTransformConfig,
    Field(discriminator="kind"),
]
_CONFIG_ADAPTER: TypeAdapter[CustomTransformConfig] = TypeAdapter(CustomTransformConfig)


class InvalidCustomTransformError(ValueError):
    """A custom transform's definition is unusable; `reason` says what to fix."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- the expression sandbox --------------------------------------------------------------


class ExpressionError(TransformError):
    """An expression failed on a value (division by zero, a type mismatch, a size limit)."""


def _check_size(result: Any) -> Any:
    if isinstance(result, str | list | tuple) and len(result) > MAX_SEQUENCE_LENGTH:
        raise ExpressionError(f"the result is longer than {MAX_SEQUENCE_LENGTH}")
    if isinstance(result, int) and result.bit_length() > MAX_INTEGER_BITS:
        raise ExpressionError(f"the result is larger than {MAX_INTEGER_BITS} bits")
    if isinstance(result, complex):
        raise ExpressionError("the result is not a real number")
    return result


def _bounded_power(base: Any, exponent: Any) -> Any:
    """Powers are checked before they are computed: `9 ** 9 ** 9` must never start."""
    if isinstance(exponent, int | float) and abs(exponent) > MAX_EXPONENT:
        raise ExpressionError(f"exponent {exponent} is larger than {MAX_EXPONENT}")
    numeric = isinstance(base, int | float) and isinstance(exponent, int | float)
    if numeric and abs(base) > 1 and exponent * math.log2(abs(base)) > MAX_INTEGER_BITS:
        raise ExpressionError(f"{base} ** {exponent} is larger than {MAX_INTEGER_BITS} bits")
    return _check_size(operator.pow(base, exponent))


def _bounded_multiply(left: Any, right: Any) -> Any:
    for sequence, times in ((left, right), (right, left)):
        repeated = isinstance(sequence, str | list | tuple) and isinstance(times, int)
        if repeated and len(sequence) * times > MAX_SEQUENCE_LENGTH:
            raise ExpressionError(f"the result would be longer than {MAX_SEQUENCE_LENGTH}")
    return _check_size(operator.mul(left, right))


def _bounded_add(left: Any, right: Any) -> Any:
    return _check_size(operator.add(left, right))


def _numeric_modulo(left: Any, right: Any) -> Any:
    """`%` on numbers only: on text it is printf formatting, which can allocate at will."""
    if isinstance(left, str | bytes):
        raise ExpressionError("'%' is only allowed on numbers")
    return operator.mod(left, right)


def _bounded_round(number: Any, digits: int = 0) -> Any:
    if not isinstance(digits, int) or not -15 <= digits <= 15:
        raise ExpressionError("round() takes between -15 and 15 digits")
    return round(number, digits)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ExpressionError(f"expected text, got {describe_value(value)}")
    return value


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, str | int | float | Decimal):
        try:
            return str(value)
        except ValueError as exc:  # an int with more digits than Python converts
            raise ExpressionError("the number has too many digits for text") from exc
    raise ExpressionError(f"cannot turn {describe_value(value)} into text")


EXPRESSION_FUNCTIONS: Final[Mapping[str, Callable[..., Any]]] = {
    "abs": abs,
    "round": _bounded_round,
    "min": min,
    "max": max,
    "len": len,
    "int": int,
    "float": float,
    "str": _to_text,
    "bool": bool,
    "lower": lambda text: _text(text).lower(),
    "upper": lambda text: _text(text).upper(),
    "trim": lambda text: _text(text).strip(),
}

_OPERATORS: Final[Mapping[type[ast.AST], Callable[..., Any]]] = {
    ast.Add: _bounded_add,
    ast.Sub: operator.sub,
    ast.Mult: _bounded_multiply,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: _numeric_modulo,
    ast.Pow: _bounded_power,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: operator.not_,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda item, container: item in container,
    ast.NotIn: lambda item, container: item not in container,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}

_ALLOWED_NODES: Final = (
    ast.Expression,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.Compare,
    ast.IfExp,
    ast.Call,
    ast.Subscript,
    ast.Slice,
    ast.Tuple,
    ast.List,
    *_OPERATORS,
)

_REFUSALS: Final[Mapping[type[ast.AST], str]] = {
    ast.Attribute: "attribute access is not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.NamedExpr: "assignment is not allowed",
    ast.Starred: "unpacking is not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Set: "set literals are not allowed",
    ast.Await: "await is not allowed",
    ast.keyword: "keyword arguments are not allowed",
}


class _Sandbox(EvalWithCompoundTypes):
    """simpleeval with everything an expression here does not need taken out."""

    def __init__(self) -> None:
        super().__init__(operators=dict(_OPERATORS), functions=dict(EXPRESSION_FUNCTIONS))
        for name in ("list", "tuple", "dict", "set"):
            self.functions.pop(name, None)
        for node in (
            ast.Attribute,
            ast.Assign,
            ast.AugAssign,
            ast.Import,
            ast.JoinedStr,
            ast.FormattedValue,
            ast.ListComp,
            ast.GeneratorExp,
            ast.DictComp,
            ast.Dict,
            ast.Set,
            ast.keyword,
        ):
            self.nodes.pop(node, None)


_sandboxes = threading.local()


def _sandbox() -> _Sandbox:
    """One evaluator per thread: simpleeval keeps the current names on the instance."""
    sandbox: _Sandbox | None = getattr(_sandboxes, "sandbox", None)
    if sandbox is None:
        sandbox = _Sandbox()
        _sandboxes.sandbox = sandbox
    return sandbox


class SafeExpression:
    """An expression checked once against the whitelist, then evaluated per value."""

    def __init__(self, source: str, names: frozenset[str]) -> None:
        if len(source) > MAX_EXPRESSION_LENGTH:
            raise InvalidCustomTransformError(
                f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters"
            )
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except SyntaxError as exc:
            raise InvalidCustomTransformError(f"not a single valid expression: {exc.msg}") from exc
        _check_tree(tree, names)
        self.source = source
        self._body = tree.body

    def evaluate(self, names: dict[str, Any]) -> Any:
        sandbox = _sandbox()
        sandbox.names = names
        try:
            return sandbox.eval(self.source, previously_parsed=self._body)
        except TransformError:
            raise
        except (
            InvalidExpression,
            ArithmeticError,
            TypeError,
            ValueError,
            LookupError,
            RecursionError,
        ) as exc:
            raise ExpressionError(f"expression failed: {exc}") from exc
        finally:
            sandbox.names = {}


def _check_tree(tree: ast.Expression, names: frozenset[str]) -> None:
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_EXPRESSION_NODES:
        raise InvalidCustomTransformError(
            f"the expression has more than {MAX_EXPRESSION_NODES} parts"
        )
    call_targets = {id(node.func) for node in nodes if isinstance(node, ast.Call)}
    for node in nodes:
        refusal = _REFUSALS.get(type(node))
        if refusal is not None:
            raise InvalidCustomTransformError(refusal)
        if not isinstance(node, _ALLOWED_NODES):
            raise InvalidCustomTransformError(f"{type(node).__name__} is not allowed")
    for node in nodes:
        if isinstance(node, ast.Name):
            _check_name(node, names, is_call_target=id(node) in call_targets)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise InvalidCustomTransformError("only the listed functions can be called")
        elif isinstance(node, ast.Constant) and isinstance(node.value, bytes):
            raise InvalidCustomTransformError("bytes literals are not allowed")


def _check_name(node: ast.Name, names: frozenset[str], *, is_call_target: bool) -> None:
    if node.id.startswith("_"):
        raise InvalidCustomTransformError(f"names starting with '_' are not allowed ({node.id})")
    if is_call_target:
        if node.id not in EXPRESSION_FUNCTIONS:
            allowed = ", ".join(sorted(EXPRESSION_FUNCTIONS))
            raise InvalidCustomTransformError(
                f"function {node.id!r} is not allowed (allowed: {allowed})"
            )
    elif node.id not in names and node.id not in ("True", "False", "None"):
        raise InvalidCustomTransformError(
            f"unknown name {node.id!r} (available: {', '.join(sorted(names))})"
        )


# --- building each kind ------------------------------------------------------------------


def _check_params(params: Mapping[str, Any]) -> None:
    for name in params:
        if not re.fullmatch(_IDENTIFIER, name):
            raise InvalidCustomTransformError(f"param name {name!r} is not an identifier")
        if name == "value" or name in EXPRESSION_FUNCTIONS:
            raise InvalidCustomTransformError(f"param name {name!r} is reserved")


def _build_lookup(config: LookupTransformConfig) -> TransformFunction:
    fold = config.case_insensitive
    table = {(key.casefold() if fold else key): target for key, target in config.table.items()}
    unmatched = config.unmatched
    default = config.default
    name = config.name

    def lookup(value: Any) -> Any:
        if value is None:
            return None
        key = lookup_key(value)
        if key is not None:
            if fold:
                key = key.casefold()
            if key in table:
                return table[key]
        if unmatched == "keep":
            return value
        if unmatched == "default":
            return default
        raise TransformError(f"{value!r} is not in lookup table {name!r}")

    return lookup


# A group reference (`\1`, `\g<name>`) that is not itself escaped (`\\1` is a backslash and 1).
_GROUP_REFERENCE = re.compile(r"(?<!\\)(?:\\\\)*\\(?:(\d+)|g<([^>]*)>)")


def _build_regex_replace(config: RegexReplaceTransformConfig) -> TransformFunction:
    try:
        pattern = regex.compile(config.pattern, regex.IGNORECASE if config.ignore_case else 0)
    except regex.error as exc:
        raise InvalidCustomTransformError(f"invalid pattern: {exc}") from exc
    for number, group_name in _GROUP_REFERENCE.findall(config.replacement):
        reference = number or group_name
        known = (
            int(reference) <= pattern.groups
            if reference.isdigit()
            else reference in pattern.groupindex
        )
        if not known:
            raise InvalidCustomTransformError(
                f"the replacement refers to group {reference!r}, which the pattern lacks"
            )
    replacement = config.replacement
    count = config.count

    def regex_replace(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise TransformError(f"regexReplace expects text, got {describe_value(value)}")
        try:
            return pattern.sub(replacement, value, count=count, timeout=REGEX_TIMEOUT_SECONDS)
        except TimeoutError as exc:
            raise TransformError(
                f"the pattern took longer than {REGEX_TIMEOUT_SECONDS}s on this value"
            ) from exc
        except regex.error as exc:
            raise TransformError(f"the replacement failed: {exc}") from exc

    return regex_replace


def _build_template(config: TemplateTransformConfig) -> TransformFunction:
    _check_params(config.params)
    template = Template(config.template)
    if not template.is_valid():
        raise InvalidCustomTransformError(
            "invalid template: use $name or ${name}, and $$ for a dollar sign"
        )
    available = {"value", *config.params}
    unknown = sorted(set(template.get_identifiers()) - available)
    if unknown:
        raise InvalidCustomTransformError(
            f"the template uses unknown names {unknown} (available: {sorted(available)})"
        )
    params = {name: _to_text(param) for name, param in config.params.items()}

    def render(value: Any) -> Any:
        if value is None:
            return None
        try:
            text = _to_text(value)
        except ExpressionError as exc:
            raise TransformError(exc.reason) from exc
        return template.substitute(params, value=text)

    return render


def _build_expression(config: ExpressionTransformConfig) -> TransformFunction:
    _check_params(config.params)
    expression = SafeExpression(config.expression, frozenset({"value", *config.params}))
    params = dict(config.params)

    def evaluate(value: Any) -> Any:
        return expression.evaluate({**params, "value": value})

    return evaluate


_BUILDERS: Final[Mapping[str, Callable[[Any], TransformFunction]]] = {
    "lookup": _build_lookup,
    "regexReplace": _build_regex_replace,
    "template": _build_template,
    "expression": _build_expression,
}


def compile_custom_transform(
    integration_id: str, config: CustomTransformConfig
) -> TransformDefinition[NoOptions]:
    """One custom transform as a definition named `{integrationId}:{name}`."""
    function = _BUILDERS[config.kind](config)
    return TransformDefinition(
        name=f"{integration_id}:{config.name}",
        category="custom",
        description=config.description or f"custom {config.kind} transform",
        options_model=NoOptions,
        factory=lambda _options: function,
        custom=True,
    )


def _compile_all(
    integration_id: str,
    configs: Sequence[CustomTransformConfig | Mapping[str, Any]],
    base: TransformRegistry,
) -> tuple[list[TransformDefinition[NoOptions]], list[FieldError]]:
    definitions: list[TransformDefinition[NoOptions]] = []
    problems: list[FieldError] = []
    seen: set[str] = set()
    for position, raw in enumerate(configs):
        label = f"customTransforms[{position}]"
        try:
            config = raw if isinstance(raw, BaseModel) else _CONFIG_ADAPTER.validate_python(raw)
        except ValidationError as exc:
            reason = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in exc.errors(include_url=False)
            )
            problems.append(FieldError(field=label, value=raw, reason=reason))
            continue
        label = f"customTransforms.{config.name}"
        if config.name in seen:
            problems.append(FieldError(field=label, value=config.name, reason="duplicate name"))
            continue
        seen.add(config.name)
        if base.resolve(config.name) is not None:
            problems.append(
                FieldError(
                    field=label,
                    value=config.name,
                    reason="the name is taken by a built-in transform",
                )
            )
            continue
        try:
            definitions.append(compile_custom_transform(integration_id, config))
        except InvalidCustomTransformError as exc:
            problems.append(
                FieldError(field=label, value=config.model_dump(by_alias=True), reason=exc.reason)
            )
    return definitions, problems


def validate_custom_transforms(
    integration_id: str,
    configs: Sequence[CustomTransformConfig | Mapping[str, Any]],
    base: TransformRegistry = BUILTIN_TRANSFORMS,
) -> list[FieldError]:
    """Every problem in a list of custom-transform configs (empty when all compile)."""
    return _compile_all(integration_id, configs, base)[1]


def registry_for_integration(
    integration_id: str,
    configs: Sequence[CustomTransformConfig | Mapping[str, Any]],
    base: TransformRegistry = BUILTIN_TRANSFORMS,
) -> TransformRegistry:
    """The built-ins plus one integration's custom transforms; raises `MappingConfigError`
    listing every bad custom transform."""
    definitions, problems = _compile_all(integration_id, configs, base)
    if problems:
        raise MappingConfigError(problems)
    return base.extended(definitions, namespace=integration_id)

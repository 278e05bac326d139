"""Value parsing shared by transforms and the mapper, and per-field coercers built from a
pydantic model.

Accepted inputs (deliberately a little wider than pydantic's lax mode, because CRMs are
untidy; every output is a value the target model validates to itself):

* datetime: `datetime`, `date` (midnight UTC), ISO 8601 strings including Salesforce's
  `+0000` offsets and `Z`, epoch seconds or milliseconds as numbers or digit strings
  (HubSpot sends epoch-ms strings; like pydantic, magnitudes above 2e10 are milliseconds).
  Naive values are taken as UTC, so every datetime the mapper emits is timezone-aware.
* date: `date`, `YYYY-MM-DD`, or anything accepted as a datetime, reduced to its UTC date.
* numbers: ints, finite floats, `Decimal`, and numeric strings. Thousands separators are
  accepted only in the US form with well-formed groups (`1,234.50`, `-12,000`), because
  that is what Salesforce and HubSpot exports use; `1.234,50`, currency symbols, `_`
  separators, NaN and infinities are rejected. Other formats go through the
  `stringToNumber` transform with explicit separators. Booleans are never numbers.
* bool: `True`/`False`, 0/1, and the strings pydantic accepts (`true`/`false`, `yes`/`no`,
  `on`/`off`, `1`/`0`, `t`/`f`, `y`/`n`, any case).
* str: strings as they are, and numbers as their decimal text (an external id sent as a
  number); objects, arrays and booleans are errors.
"""

from __future__ import annotations

import inspect
import math
import operator
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from functools import partial
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PydanticUserError,
    TypeAdapter,
    ValidationError,
)
from pydantic.fields import FieldInfo

Coercer = Callable[[Any], Any]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECONDS_THRESHOLD = 2e10


class CoercionError(ValueError):
    """A value cannot become the target type; `reason` says why in words a user can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe_value(value: Any) -> str:
    """A short type name for messages, in JSON terms where that is what the user sent."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


# --- numbers -----------------------------------------------------------------------------


class NumberFormat:
    """Parses numeric text with a given decimal and thousands separator.

    Thousands separators must form proper groups of three, so that `1,5` is never read as
    fifteen under a `,` thousands separator.
    """

    def __init__(self, decimal_separator: str = ".", thousands_separator: str = ",") -> None:
        if decimal_separator == thousands_separator:
            raise ValueError("the decimal and thousands separators must differ")
        self.decimal_separator = decimal_separator
        self.thousands_separator = thousands_separator
        decimal_part = rf"(?:{re.escape(decimal_separator)}\d+)?"
        exponent = r"(?:[eE][+-]?\d+)?"
        integer = r"\d+"
        if thousands_separator:
            integer = rf"(?:\d+|\d{{1,3}}(?:{re.escape(thousands_separator)}\d{{3}})+)"
        self._pattern = re.compile(rf"[+-]?{integer}{decimal_part}{exponent}", re.ASCII)

    def normalise(self, text: str) -> str:
        """The text in Python's own numeric syntax, or a `CoercionError`."""
        stripped = text.strip()
        if not self._pattern.fullmatch(stripped):
            raise CoercionError(f"{_quote(text)} is not a number")
        if self.thousands_separator:
            stripped = stripped.replace(self.thousands_separator, "")
        if self.decimal_separator != ".":
            stripped = stripped.replace(self.decimal_separator, ".")
        return stripped

    def parse(self, text: str) -> int | float:
        """An int when the text is integral and has no exponent, else a float."""
        plain = self.normalise(text)
        if "." in plain or "e" in plain or "E" in plain:
            number = float(plain)
            if not math.isfinite(number):
                raise CoercionError(f"{_quote(text)} is too large")
            return number
        try:
            return int(plain)
        except ValueError as exc:  # more digits than Python converts (sys.int_info)
            raise CoercionError(f"{_quote(text)} has too many digits") from exc


DEFAULT_NUMBER_FORMAT = NumberFormat()


def parse_number(value: Any) -> int | float | Decimal:
    """Any accepted numeric input as a number; ints stay ints, Decimals stay Decimals."""
    if isinstance(value, bool):
        raise CoercionError("expected a number, got a boolean")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CoercionError(f"{value} is not a finite number")
        return float(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise CoercionError(f"{value} is not a finite number")
        return value
    if isinstance(value, str):
        return DEFAULT_NUMBER_FORMAT.parse(value)
    raise CoercionError(f"expected a number, got {describe_value(value)}")


def to_float(value: Any) -> float:
    if type(value) is float and math.isfinite(value):
        return value
    number = parse_number(value)
    try:
        result = float(number)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise CoercionError(f"{_quote(value)} is too large for a number")
    return result


_LARGEST_WHOLE_DIGITS = 4000


def to_int(value: Any) -> int:
    if type(value) is int:
        return value
    number = parse_number(value)
    if isinstance(number, int):
        return number
    if isinstance(number, Decimal) and number.adjusted() > _LARGEST_WHOLE_DIGITS:
        raise CoercionError(f"{_quote(value)} is too large")
    if number != int(number):
        raise CoercionError(f"{_quote(value)} is not a whole number")
    return int(number)


def to_decimal(value: Any) -> Decimal:
    if isinstance(value, str):
        return Decimal(DEFAULT_NUMBER_FORMAT.normalise(value))
    number = parse_number(value)
    if isinstance(number, Decimal):
        return number
    return Decimal(str(number))


# --- booleans ----------------------------------------------------------------------------

_TRUE_STRINGS = frozenset({"true", "1", "yes", "y", "on", "t"})
_FALSE_STRINGS = frozenset({"false", "0", "no", "n", "off", "f"})


def to_bool(value: Any) -> bool:
    if value is True or value is False:
        return value
    if type(value) is str:
        lowered = value.strip().lower()
        if lowered in _TRUE_STRINGS:
            return True
        if lowered in _FALSE_STRINGS:
            return False
        raise CoercionError(f"{_quote(value)} is not a boolean (use true/false, yes/no or 1/0)")
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise CoercionError(f"{_quote(value)} is not a boolean")


# --- dates -------------------------------------------------------------------------------


def _from_epoch(number: float, original: Any) -> datetime:
    try:
        if abs(number) > _MILLISECONDS_THRESHOLD:
            return EPOCH + timedelta(milliseconds=number)
        return EPOCH + timedelta(seconds=number)
    except OverflowError as exc:
        raise CoercionError(f"{_quote(original)} is out of the supported date range") from exc


_parse_iso_datetime = datetime.fromisoformat
_parse_iso_date = date.fromisoformat


def to_datetime(value: Any) -> datetime:
    """A timezone-aware datetime; naive input is taken as UTC."""
    if type(value) is str and value[4:5] == "-":
        try:
            parsed = _parse_iso_datetime(value)
        except ValueError:
            return _to_datetime_general(value)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed
    return _to_datetime_general(value)


def _to_datetime_general(value: Any) -> datetime:
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] == "-" else text
        if digits.isascii() and digits.isdigit():
            if len(text) > 20:
                raise CoercionError(f"{_quote(value)} is out of the supported date range")
            return _from_epoch(int(text), value)
        try:
            parsed = _parse_iso_datetime(text)
        except ValueError as exc:
            raise CoercionError(
                f"{_quote(value)} is not a date-time (expected ISO 8601 or epoch seconds/ms)"
            ) from exc
    elif isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise CoercionError(f"{value} is not a date-time")
        return _from_epoch(value, value)
    elif isinstance(value, int) and not isinstance(value, bool):
        return _from_epoch(value, value)
    else:
        raise CoercionError(f"expected a date-time, got {describe_value(value)}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed


def to_date(value: Any) -> date:
    """A calendar date; date-times are reduced to their UTC date."""
    if type(value) is str and len(value) == 10:
        try:
            return _parse_iso_date(value)
        except ValueError:
            pass
    elif type(value) is date:
        return value
    return to_datetime(value).astimezone(UTC).date()


# --- text --------------------------------------------------------------------------------


def to_str(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value
    if kind is int or kind is Decimal:
        try:
            return str(value)
        except ValueError as exc:  # more digits than Python converts (sys.int_info)
            raise CoercionError("the number has too many digits for text") from exc
    if kind is float:
        if not math.isfinite(value):
            raise CoercionError(f"{value} is not a finite number")
        return repr(value)
    raise CoercionError(f"expected text, got {describe_value(value)}")


def _quote(value: Any) -> str:
    try:
        text = repr(value)
    except ValueError:
        return f"a {describe_value(value)} too large to show"
    return text if len(text) <= 80 else text[:77] + "..."


# --- per-field coercers ------------------------------------------------------------------


_NATIVE: dict[Any, Coercer] = {
    str: to_str,
    int: to_int,
    float: to_float,
    Decimal: to_decimal,
    bool: to_bool,
    date: to_date,
    datetime: to_datetime,
}

_TYPE_NAMES: dict[Any, str] = {
    str: "text",
    int: "a whole number",
    float: "a number",
    Decimal: "a number",
    bool: "a boolean",
    date: "a date",
    datetime: "a date-time",
}

# Model settings that change how simple values validate. When a model sets one, every
# field also passes through pydantic, with those settings, after the native coercion.
_VALIDATION_SETTINGS = (
    "str_strip_whitespace",
    "str_to_lower",
    "str_to_upper",
    "str_min_length",
    "str_max_length",
    "use_enum_values",
    "strict",
)


@dataclass(frozen=True, slots=True)
class FieldCoercion:
    """How one target field takes values: `coerce` gets non-null values only."""

    key: str
    coerce: Coercer
    nullable: bool
    has_default: bool
    type_name: str


class _PydanticCoercer:
    """Validates one field's value with pydantic, for what the native coercers do not cover:
    types they do not know, constraints beyond numeric and length bounds, and model-wide
    string settings. Built once per compiled mapping; thread-safe."""

    def __init__(self, annotation: Any, metadata: list[Any], config: ConfigDict | None) -> None:
        target = Annotated[(annotation, *metadata)] if metadata else annotation
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(target, config=config)
        except PydanticUserError:
            adapter = TypeAdapter(target)
        self._validate = adapter.validator.validate_python  # without TypeAdapter's wrapper

    def __call__(self, value: Any) -> Any:
        try:
            return self._validate(value)
        except ValidationError as exc:
            raise CoercionError(_validation_reason(exc)) from exc


def _validation_reason(exc: ValidationError) -> str:
    return "; ".join(error["msg"] for error in exc.errors(include_url=False))


def _split_optional(annotation: Any) -> tuple[Any, bool]:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        nullable = len(members) != len(get_args(annotation))
        if len(members) == 1:
            return members[0], nullable
        return annotation, nullable
    return annotation, annotation is None or annotation is type(None)


def _literal_coercer(choices: tuple[Any, ...]) -> Coercer:
    allowed = {(type(choice), choice) for choice in choices}
    listing = ", ".join(repr(choice) for choice in choices)

    def coerce_literal(value: Any) -> Any:
        try:
            if (type(value), value) in allowed:
                return value
        except TypeError:
            pass
        raise CoercionError(f"{_quote(value)} is not one of {listing}")

    return coerce_literal


def _enum_coercer(enum_type: type[Enum]) -> Coercer:
    listing = ", ".join(repr(member.value) for member in enum_type)

    def coerce_enum(value: Any) -> Any:
        if isinstance(value, enum_type):
            return value
        try:
            return enum_type(value)
        except ValueError as exc:
            raise CoercionError(f"{_quote(value)} is not one of {listing}") from exc

    return coerce_enum


def _bound_checker(base: Coercer, constraints: list[Any]) -> Coercer | None:
    """Native checks for the common `Field(ge=.., le=.., max_length=..)` constraints, or None
    when a constraint is of a kind only pydantic knows."""
    checks: list[tuple[Callable[[Any], bool], str]] = []
    for constraint in constraints:
        check = _bound_check(constraint)
        if check is None:
            return None
        checks.append(check)
    kinds = {type(constraint) for constraint in constraints}
    if len(constraints) == 2 and kinds == {annotated_types.Ge, annotated_types.Le}:
        low = next(c.ge for c in constraints if isinstance(c, annotated_types.Ge))
        high = next(c.le for c in constraints if isinstance(c, annotated_types.Le))

        def coerce_in_range(value: Any) -> Any:
            result = base(value)
            if low <= result <= high:
                return result
            raise CoercionError(f"{_quote(result)} must be between {low} and {high}")

        return coerce_in_range

    def coerce_checked(value: Any) -> Any:
        result = base(value)
        for check, message in checks:
            if not check(result):
                raise CoercionError(f"{_quote(result)} {message}")
        return result

    return coerce_checked


def _bound_check(constraint: Any) -> tuple[Callable[[Any], bool], str] | None:
    if isinstance(constraint, annotated_types.Ge):
        return partial(operator.le, constraint.ge), f"must be at least {constraint.ge}"
    if isinstance(constraint, annotated_types.Gt):
        return partial(operator.lt, constraint.gt), f"must be greater than {constraint.gt}"
    if isinstance(constraint, annotated_types.Le):
        return partial(operator.ge, constraint.le), f"must be at most {constraint.le}"
    if isinstance(constraint, annotated_types.Lt):
        return partial(operator.gt, constraint.lt), f"must be less than {constraint.lt}"
    if isinstance(constraint, annotated_types.MinLen):
        size: int = constraint.min_length
        return partial(_length_at_least, size), f"must have a length of at least {size}"
    if isinstance(constraint, annotated_types.MaxLen):
        size = constraint.max_length
        return partial(_length_at_most, size), f"must have a length of at most {size}"
    return None


def _length_at_least(size: int, value: Any) -> bool:
    return len(value) >= size


def _length_at_most(size: int, value: Any) -> bool:
    return len(value) <= size


def _flatten_metadata(items: list[Any]) -> list[Any]:
    """`Field(ge=0)` inside `Annotated[int, Field(ge=0)]` arrives as a FieldInfo; its
    constraints are in its own metadata."""
    flat: list[Any] = []
    for item in items:
        if isinstance(item, FieldInfo):
            flat.extend(item.metadata)
        else:
            flat.append(item)
    return flat


def _identity(value: Any) -> Any:
    return value


def _after_validators(native: Coercer, checked: Coercer, metadata: list[Any]) -> Coercer | None:
    """`Annotated[datetime, AfterValidator(to_utc)]` and the like: pydantic runs the
    functions on the value its type validation produced, and the native coercer produces
    that value, so the functions run on it directly. A function that refuses the value
    hands it to `checked` (pydantic), whose error the record reports. None when the
    metadata holds anything but one-argument after-validators."""
    functions: list[Callable[..., Any]] = []
    for item in metadata:
        if not isinstance(item, AfterValidator):
            return None
        try:
            parameters = inspect.signature(item.func).parameters.values()
        except (TypeError, ValueError):
            return None
        if len(parameters) != 1 or next(iter(parameters)).kind not in _POSITIONAL:
            return None
        functions.append(item.func)

    def coerce_then_validate(value: Any) -> Any:
        result = native(value)
        try:
            for function in functions:
                result = function(result)
        except (ValueError, AssertionError):
            return checked(native(value))
        return result

    return coerce_then_validate


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _then(first: Coercer, second: Coercer) -> Coercer:
    def coerce_both(value: Any) -> Any:
        return second(first(value))

    return coerce_both


def build_field_coercion(model: type[BaseModel], field_name: str) -> FieldCoercion:
    """The coercer for one model field, as fast as its type allows.

    Plain scalar types, Literals and Enums, with numeric and length bounds, are coerced
    natively. Whatever else the field's type asks for (other constraints, model-wide string
    settings, types not listed here) is checked by pydantic for that field alone, after the
    native step where there is one, so every value emitted is one the model's field type
    accepts unchanged. Field and model validators written on the model class are not run
    here: they need the whole record and run in `ShardValidator`.
    """
    field = model.model_fields[field_name]
    annotation, nullable = _split_optional(field.annotation)
    key = field.alias or field_name
    metadata = list(field.metadata)
    if get_origin(annotation) is Annotated:
        annotation, *inner = get_args(annotation)
        metadata = [*_flatten_metadata(inner), *metadata]
    settings = ConfigDict()
    for name in _VALIDATION_SETTINGS:
        if model.model_config.get(name):
            settings[name] = model.model_config[name]  # type: ignore[literal-required]

    native: Coercer | None
    if annotation is Any or annotation is object:
        native = _identity
    elif get_origin(annotation) is Literal:
        native = _literal_coercer(get_args(annotation))
    elif isinstance(annotation, type) and issubclass(annotation, Enum):
        native = _enum_coercer(annotation)
    else:
        native = _NATIVE.get(annotation)
    type_name = _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))

    coerce: Coercer
    if native is None:
        coerce = _PydanticCoercer(annotation, metadata, settings or None)
    elif settings:
        coerce = _then(native, _PydanticCoercer(annotation, metadata, settings))
    elif metadata:
        bounded = _bound_checker(native, metadata)
        if bounded is not None:
            coerce = bounded
        else:
            pydantic_check = _PydanticCoercer(annotation, metadata, None)
            coerce = _after_validators(native, pydantic_check, metadata) or _then(
                native, pydantic_check
            )
    else:
        coerce = native
    return FieldCoercion(
        key=key,
        coerce=coerce,
        nullable=nullable,
        has_default=not field.is_required(),
        type_name=type_name,
    )


def custom_field_coercion(key: str) -> FieldCoercion:
    """A target that is not a declared field, on a model that keeps extra fields: the model
    stores such values as they are, so any JSON value passes unchanged."""
    return FieldCoercion(
        key=key, coerce=_identity, nullable=True, has_default=True, type_name="any value"
    )

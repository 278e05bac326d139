"""Transform functions for field mappings: the built-ins and the registry the mapper resolves
names in (and the `GET transform-functions` API describes).

A transform is built once per compiled mapping from its validated options and then called
per value. Every transform except `nullToDefault` passes null through untouched, so a
missing source value never turns into an error inside a transform; requiredness is the
mapper's business.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from core.mapping.coercion import (
    EPOCH,
    CoercionError,
    NumberFormat,
    describe_value,
    parse_number,
    to_bool,
    to_datetime,
)
from core.mapping.paths import MISSING, PathShapeError, PathSyntaxError, compile_path, parse_path

TransformFunction = Callable[[Any], Any]


class TransformError(ValueError):
    """A transform cannot handle a value; `reason` names what was wrong with it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransformOptions(BaseModel):
    """Base of every transform's options: camelCase in config, unknown options refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class NoOptions(TransformOptions):
    pass


OptionsT = TypeVar("OptionsT", bound=TransformOptions)


class TransformDescription(BaseModel):
    """What the transform-functions API returns for one transform."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    name: str
    category: str
    description: str
    options_schema: dict[str, Any]
    custom: bool = False


class InvalidTransformOptionsError(ValueError):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid options for transform {name!r}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class TransformDefinition(Generic[OptionsT]):
    """A named transform: its options model and the factory that builds the function."""

    name: str
    category: str
    description: str
    options_model: type[OptionsT]
    factory: Callable[[OptionsT], TransformFunction]
    custom: bool = False

    def build(self, options: Mapping[str, Any] | None = None) -> TransformFunction:
        """Validate options and build the per-value function (once per compiled mapping)."""
        try:
            validated = self.options_model.model_validate(dict(options or {}))
        except ValidationError as exc:
            reason = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'options'}: {error['msg']}"
                for error in exc.errors(include_url=False)
            )
            raise InvalidTransformOptionsError(self.name, reason) from exc
        return self.factory(validated)

    def describe(self) -> TransformDescription:
        return TransformDescription(
            name=self.name,
            category=self.category,
            description=self.description,
            options_schema=self.options_model.model_json_schema(by_alias=True),
            custom=self.custom,
        )


class TransformRegistry:
    """Transforms by name. A registry made for one integration resolves a plain name to a
    built-in first, then to that integration's `{integrationId}:{name}` custom transform."""

    def __init__(
        self, definitions: Iterable[TransformDefinition[Any]], *, namespace: str | None = None
    ) -> None:
        self._definitions: dict[str, TransformDefinition[Any]] = {}
        for definition in definitions:
            if definition.name in self._definitions:
                raise ValueError(f"transform {definition.name!r} is registered twice")
            self._definitions[definition.name] = definition
        self.namespace = namespace

    def resolve(self, name: str) -> TransformDefinition[Any] | None:
        definition = self._definitions.get(name)
        if definition is None and self.namespace is not None:
            definition = self._definitions.get(f"{self.namespace}:{name}")
        return definition

    def extended(
        self, definitions: Iterable[TransformDefinition[Any]], *, namespace: str
    ) -> TransformRegistry:
        """This registry plus more transforms (already carrying their prefixed names)."""
        return TransformRegistry([*self._definitions.values(), *definitions], namespace=namespace)

    def names(self) -> list[str]:
        return list(self._definitions)

    def describe(self) -> list[TransformDescription]:
        return [definition.describe() for definition in self._definitions.values()]


def lookup_key(value: Any) -> str | None:
    """The text a value is looked up by in value maps and lookup tables, whose keys are JSON
    object keys and so always text: `true`/`false` for booleans, `3` for 3 and 3.0; None
    for values that cannot be keys (objects, arrays)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than Python converts; no table has such a key
            return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal):
        whole = value.is_finite() and value == value.to_integral_value()
        return str(int(value)) if whole else str(value)
    return None


# --- dates -------------------------------------------------------------------------------


class DateToIsoOptions(TransformOptions):
    date_only: bool = Field(
        False, description="Emit only the UTC calendar date (YYYY-MM-DD) instead of a date-time."
    )


def _as_datetime(value: Any) -> datetime:
    try:
        return to_datetime(value)
    except CoercionError as exc:
        raise TransformError(exc.reason) from exc


def _date_to_iso(options: DateToIsoOptions) -> TransformFunction:
    date_only = options.date_only

    def date_to_iso(value: Any) -> Any:
        if value is None:
            return None
        if date_only and type(value) is date:
            return value.isoformat()
        moment = _as_datetime(value).astimezone(UTC)
        if date_only:
            return moment.date().isoformat()
        return moment.isoformat().replace("+00:00", "Z")

    return date_to_iso


class DateToUnixOptions(TransformOptions):
    unit: Literal["seconds", "milliseconds"] = Field(
        "seconds", description="Seconds or milliseconds since 1970-01-01T00:00:00Z."
    )


def _date_to_unix(options: DateToUnixOptions) -> TransformFunction:
    step = timedelta(seconds=1) if options.unit == "seconds" else timedelta(milliseconds=1)

    def date_to_unix(value: Any) -> Any:
        if value is None:
            return None
        return (_as_datetime(value) - EPOCH) // step

    return date_to_unix


# --- numbers -----------------------------------------------------------------------------


class StringToNumberOptions(TransformOptions):
    decimal_separator: Literal[".", ","] = Field(".", description="The decimal mark.")
    thousands_separator: Literal[",", ".", " ", "'", ""] = Field(
        ",",
        description="The digit-group separator; groups must be of three digits. "
        "Empty to refuse grouped numbers.",
    )

    @model_validator(mode="after")
    def _separators_differ(self) -> StringToNumberOptions:
        if self.decimal_separator == self.thousands_separator:
            raise ValueError("decimalSeparator and thousandsSeparator must differ")
        return self


def _string_to_number(options: StringToNumberOptions) -> TransformFunction:
    number_format = NumberFormat(options.decimal_separator, options.thousands_separator)

    def string_to_number(value: Any) -> Any:
        if value is None:
            return None
        try:
            if isinstance(value, str):
                return number_format.parse(value)
            return parse_number(value)
        except CoercionError as exc:
            raise TransformError(exc.reason) from exc

    return string_to_number


class RoundToDecimalsOptions(TransformOptions):
    decimals: int = Field(2, ge=0, le=12, description="Digits after the decimal point.")


_TIE_MARGIN = 1e-3
# Wide enough for any float (at most 309 integer digits) with 12 decimals.
_WIDE = Context(prec=400)
_FAST_ROUNDING_LIMIT = 2.0**40


def round_half_up(number: float, decimals: int) -> float:
    """`number` rounded half away from zero on its shortest decimal text (2.675 -> 2.68), as
    people and JavaScript's toFixed-style helpers expect, not on its binary value.

    Exact answer: `float(Decimal(repr(number)).quantize(..., ROUND_HALF_UP))`. The fast
    path gives the same result without the Decimal work: `round()` rounds the binary value
    correctly, and the binary value and the decimal text differ by less than 2**-12 of the
    last kept digit while `|number| * 10**decimals < 2**40`, so the two can only round
    differently when the text lies within that distance of a tie. Values whose scaled
    fraction is within `_TIE_MARGIN` (far wider) of .5, and large values, take the exact path.
    """
    scaled = number * 10.0**decimals
    if -_FAST_ROUNDING_LIMIT < scaled < _FAST_ROUNDING_LIMIT:
        fraction = scaled - math.floor(scaled)
        if abs(fraction - 0.5) > _TIE_MARGIN:
            return round(number, decimals)
    quantum = Decimal(1).scaleb(-decimals)
    exact = Decimal(repr(number)).quantize(quantum, rounding=ROUND_HALF_UP, context=_WIDE)
    return float(exact)


def _round_to_decimals(options: RoundToDecimalsOptions) -> TransformFunction:
    decimals = options.decimals
    quantum = Decimal(1).scaleb(-decimals)

    def round_to_decimals(value: Any) -> Any:
        """Floats, ints and numeric text; the result is a float, or an int for 0 decimals."""
        if value is None:
            return None
        try:
            number = value if type(value) is float else parse_number(value)
        except CoercionError as exc:
            raise TransformError(exc.reason) from exc
        if isinstance(number, int):
            return number if decimals == 0 else _finite_float(number)
        if isinstance(number, Decimal):
            try:
                exact = number.quantize(quantum, rounding=ROUND_HALF_UP, context=_WIDE)
            except InvalidOperation as exc:
                raise TransformError(f"{number} is too large to round") from exc
            return int(exact) if decimals == 0 else _finite_float(exact)
        if not math.isfinite(number):
            raise TransformError(f"{number} is not a finite number")
        rounded = round_half_up(number, decimals)
        return int(rounded) if decimals == 0 else rounded

    return round_to_decimals


def _finite_float(number: int | Decimal) -> float:
    try:
        result = float(number)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise TransformError("the number is too large")
    return result


# --- strings -----------------------------------------------------------------------------


def _string_method(method: Callable[[str], str], name: str) -> Callable[[NoOptions], Any]:
    def factory(_: NoOptions) -> TransformFunction:
        def string_transform(value: Any) -> Any:
            if type(value) is str:
                return method(value)
            if value is None:
                return None
            if not isinstance(value, str):
                raise TransformError(f"{name} expects text, got {describe_value(value)}")
            return method(value)

        return string_transform

    return factory


# --- arrays ------------------------------------------------------------------------------


class ArrayToStringOptions(TransformOptions):
    separator: str = Field(", ", max_length=20, description="Put between the items.")


def _scalar_text(item: Any, position: int) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, str | int | float | Decimal):
        return str(item)
    raise TransformError(f"item {position} is {describe_value(item)}, not a text or number")


def _array_to_string(options: ArrayToStringOptions) -> TransformFunction:
    separator = options.separator

    def array_to_string(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list | tuple):
            raise TransformError(f"arrayToString expects an array, got {describe_value(value)}")
        return separator.join(
            _scalar_text(item, position) for position, item in enumerate(value) if item is not None
        )

    return array_to_string


def _array_first(_: NoOptions) -> TransformFunction:
    def array_first(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list | tuple):
            raise TransformError(f"arrayFirst expects an array, got {describe_value(value)}")
        return value[0] if value else None

    return array_first


class MapObjectsOptions(TransformOptions):
    fields: dict[str, str] = Field(
        ...,
        min_length=1,
        max_length=100,
        description="Output key -> path inside each item (the source-path grammar, e.g. "
        "Contact.Email). An item without the path gets no such key.",
    )

    @field_validator("fields")
    @classmethod
    def _keys_and_paths_are_valid(cls, fields: dict[str, str]) -> dict[str, str]:
        for key, path in fields.items():
            if not key.strip():
                raise ValueError("an output key is empty")
            try:
                parse_path(path)
            except PathSyntaxError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return fields


def _map_objects(options: MapObjectsOptions) -> TransformFunction:
    """Reshapes arrays of provider objects (Salesforce subquery rows) into the shard's own
    objects, which a one-path-per-field mapping cannot do."""
    getters = tuple((key, compile_path(path)) for key, path in options.fields.items())

    def map_objects(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list | tuple):
            raise TransformError(f"mapObjects expects an array, got {describe_value(value)}")
        mapped: list[dict[str, Any]] = []
        for position, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise TransformError(f"item {position} is {describe_value(item)}, not an object")
            shaped: dict[str, Any] = {}
            for key, get in getters:
                try:
                    found = get(item)
                except PathShapeError as exc:
                    raise TransformError(f"item {position}: {exc}") from exc
                if found is not MISSING:
                    shaped[key] = found
            mapped.append(shaped)
        return mapped

    return map_objects


# --- booleans ----------------------------------------------------------------------------


def _boolean_words(true_word: str, false_word: str, name: str) -> Callable[[NoOptions], Any]:
    def factory(_: NoOptions) -> TransformFunction:
        def boolean_transform(value: Any) -> Any:
            if value is None:
                return None
            try:
                return true_word if to_bool(value) else false_word
            except CoercionError as exc:
                raise TransformError(f"{name}: {exc.reason}") from exc

        return boolean_transform

    return factory


# --- nulls -------------------------------------------------------------------------------


class NullToDefaultOptions(TransformOptions):
    default: JsonValue = Field(..., description="The value to use when the source is null.")
    empty_as_null: bool = Field(False, description="Also replace empty text and empty arrays.")


def _null_to_default(options: NullToDefaultOptions) -> TransformFunction:
    default = options.default
    empty_as_null = options.empty_as_null

    def null_to_default(value: Any) -> Any:
        if value is None:
            return default
        if empty_as_null and (value == "" or value == []):
            return default
        return value

    return null_to_default


BUILTIN_DEFINITIONS: tuple[TransformDefinition[Any], ...] = (
    TransformDefinition(
        "dateToISO",
        "date",
        "A date-time (ISO text, epoch seconds/ms, date) as ISO 8601 text in UTC, e.g. "
        "2024-01-15T10:30:00Z; naive input is taken as UTC.",
        DateToIsoOptions,
        _date_to_iso,
    ),
    TransformDefinition(
        "dateToUnix",
        "date",
        "A date-time as whole seconds (or milliseconds) since the Unix epoch.",
        DateToUnixOptions,
        _date_to_unix,
    ),
    TransformDefinition(
        "stringToNumber",
        "number",
        "Numeric text as a number (an integer when it has no fraction), with configurable "
        "separators; currency symbols and NaN are refused.",
        StringToNumberOptions,
        _string_to_number,
    ),
    TransformDefinition(
        "roundToDecimals",
        "number",
        "A number rounded half away from zero to the given number of decimals.",
        RoundToDecimalsOptions,
        _round_to_decimals,
    ),
    TransformDefinition(
        "toLowerCase",
        "string",
        "Text in lower case.",
        NoOptions,
        _string_method(str.lower, "toLowerCase"),
    ),
    TransformDefinition(
        "toUpperCase",
        "string",
        "Text in upper case.",
        NoOptions,
        _string_method(str.upper, "toUpperCase"),
    ),
    TransformDefinition(
        "trim",
        "string",
        "Text without leading and trailing whitespace.",
        NoOptions,
        _string_method(str.strip, "trim"),
    ),
    TransformDefinition(
        "arrayToString",
        "array",
        "An array of texts/numbers joined into one text; null items are skipped.",
        ArrayToStringOptions,
        _array_to_string,
    ),
    TransformDefinition(
        "arrayFirst",
        "array",
        "The first item of an array, or null for an empty array.",
        NoOptions,
        _array_first,
    ),
    TransformDefinition(
        "mapObjects",
        "array",
        'Each object of an array reshaped by paths, e.g. {"fields": {"email": '
        '"Contact.Email"}} turns [{"Contact": {"Email": "a@b.com"}}] into '
        '[{"email": "a@b.com"}]; a path an item lacks leaves its key out.',
        MapObjectsOptions,
        _map_objects,
    ),
    TransformDefinition(
        "booleanToString",
        "boolean",
        "A boolean (or true/false, yes/no, 1/0) as the text 'true' or 'false'.",
        NoOptions,
        _boolean_words("true", "false", "booleanToString"),
    ),
    TransformDefinition(
        "booleanToYesNo",
        "boolean",
        "A boolean (or true/false, yes/no, 1/0) as the text 'Yes' or 'No'.",
        NoOptions,
        _boolean_words("Yes", "No", "booleanToYesNo"),
    ),
    TransformDefinition(
        "nullToDefault",
        "null",
        "A fixed value in place of null (and, optionally, empty text or arrays).",
        NullToDefaultOptions,
        _null_to_default,
    ),
)

BUILTIN_TRANSFORMS = TransformRegistry(BUILTIN_DEFINITIONS)

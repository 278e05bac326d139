"""The local `files` provider: CRM records read from a directory, one file per entity type.

Config: `{"path": DIR, "shape": "salesforce", "pageSize": 200}`. `DIR/<EntityType>.json`
(a JSON array of objects), `.ndjson` (one object per line; blank lines are skipped) or
`.csv` (a header row, then one record per row) holds that entity type's records, in the
provider's shape (`salesforce`: see `salesforce_defaults`), so the provider's default
mappings apply unchanged. In a CSV every value is text, an empty cell is null, and a
column named with dots (`Account.Name`) becomes a nested object (null when all its cells
are empty, as Salesforce sends a missing relationship).

Incremental syncs follow the shape's modified field (`LastModifiedDate`): records are
served oldest first, `since` keeps those modified strictly after it, and a record without
the field is always served (it cannot be shown unchanged). A page's cursor is the newest
modification time served so far, as ISO 8601 UTC (`2024-05-01T10:00:00.000Z`), except
that when a page ends inside a run of records with the same time it stays at the time
before that run, so resuming from any page's cursor re-reads rather than skips.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from core.errors import PermanentError, TransientError
from core.mapping.coercion import describe_value
from core.models.integration import ConfigModel
from core.providers.base import FetchedPage
from core.providers.salesforce_defaults import (
    SALESFORCE_ENTITY_TYPES,
    SalesforceEntity,
    format_cursor,
    parse_salesforce_datetime,
    salesforce_entity,
)

DEFAULT_PAGE_SIZE = 200
MAX_PAGE_SIZE = 10_000
FILE_SUFFIXES = (".json", ".ndjson", ".csv")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class FilesProviderConfig(ConfigModel):
    path: str = Field(
        min_length=1,
        description="The data directory; a relative path is taken from the working "
        "directory, else from the project root",
    )
    shape: Literal["salesforce"] = "salesforce"
    page_size: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)


@dataclass(frozen=True)
class _Located:
    record: dict[str, Any]
    where: str
    modified: datetime | None


def resolve_data_dir(path: str) -> Path:
    """The directory `path` names; PermanentError listing where it was looked for."""
    configured = Path(path).expanduser()
    candidates = (
        [configured]
        if configured.is_absolute()
        else [Path.cwd() / configured, PROJECT_ROOT / configured]
    )
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    tried = ", ".join(str(candidate) for candidate in candidates)
    raise PermanentError(
        f"files provider: config.path {path!r} is not a directory (looked at {tried})",
        resource=path,
    )


class FilesProvider:
    """A `ProviderAdapter` over a directory of exported records."""

    provider = "files"

    def __init__(self, config: FilesProviderConfig | Mapping[str, Any]) -> None:
        if not isinstance(config, FilesProviderConfig):
            try:
                config = FilesProviderConfig.model_validate(dict(config))
            except ValidationError as exc:
                problems = "; ".join(
                    f"config.{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                    for error in exc.errors(include_url=False)
                )
                raise PermanentError(f"files provider: {problems}") from exc
        self.config = config
        self.directory = resolve_data_dir(config.path)
        self._unidentified: dict[Path, dict[int, _Located]] = {}

    # -- the adapter contract --------------------------------------------------------------

    def entity_types(self) -> list[str]:
        """Entity types that have a file: the shape's own in its order, then the rest."""
        names = [name for name, _ in self._files().values()]
        known = [name for name in SALESFORCE_ENTITY_TYPES if name in names]
        return known + sorted(name for name in names if name not in SALESFORCE_ENTITY_TYPES)

    def fetch(self, entity_type: str, *, since: str | None = None) -> Iterator[FetchedPage]:
        """Pages of the entity type's records (none when it has no file)."""
        found = self._files().get(entity_type.strip().casefold())
        if found is None:
            return
        name, path = found
        id_field, modified_field = _fields(name)
        since_moment = None if since is None else self._parse_cursor(since)
        located = self._read(path, modified_field)
        if since_moment is not None:
            located = [
                item for item in located if item.modified is None or item.modified > since_moment
            ]
        located.sort(key=lambda item: (item.modified is not None, item.modified or _NEVER))
        unidentified = self._unidentified.setdefault(path, {})
        unidentified.clear()
        for item in located:
            if not _has_id(item.record, id_field):
                unidentified[id(item.record)] = item
        cursor = since_moment
        size = self.config.page_size
        for start in range(0, len(located), size):
            page = located[start : start + size]
            following = located[start + size] if start + size < len(located) else None
            covered = _covered_until(page, following)
            if covered is not None and (cursor is None or covered > cursor):
                cursor = covered
            yield FetchedPage(
                records=[item.record for item in page],
                cursor=None if cursor is None else format_cursor(cursor),
            )

    def external_id(self, entity_type: str, record: Mapping[str, Any]) -> str:
        id_field, _ = _fields(entity_type)
        value = record.get(id_field)
        if _has_id(record, id_field):
            return str(value)
        where = ""
        for items in self._unidentified.values():
            item = items.get(id(record))
            if item is not None and item.record is record:
                where = f" at {item.where}"
                break
        raise PermanentError(
            f"files provider: {entity_type} record{where} has no {id_field} "
            f"(found {describe_value(value)}); it needs a non-empty text id",
            resource=entity_type,
        )

    # -- reading ---------------------------------------------------------------------------

    def _files(self) -> dict[str, tuple[str, Path]]:
        """Entity type (case-folded) -> (its name, its file); two files for one entity type
        are an error because which one holds the truth cannot be guessed."""
        try:
            entries = sorted(self.directory.iterdir())
        except OSError as exc:
            raise _os_error(self.directory, exc) from exc
        by_type: dict[str, list[Path]] = {}
        for entry in entries:
            if entry.name.startswith(".") or entry.suffix.lower() not in FILE_SUFFIXES:
                continue
            if entry.is_file():
                by_type.setdefault(entry.stem.strip().casefold(), []).append(entry)
        found: dict[str, tuple[str, Path]] = {}
        for key, paths in by_type.items():
            if len(paths) > 1:
                names = " and ".join(str(path) for path in paths)
                raise PermanentError(
                    f"files provider: {names} hold the same entity type; keep one file per "
                    "entity type",
                    resource=str(self.directory),
                )
            known = salesforce_entity(key)
            found[key] = (known.entity_type if known else paths[0].stem.strip(), paths[0])
        return found

    def _read(self, path: Path, field: str) -> list[_Located]:
        suffix = path.suffix.lower()
        if suffix == ".csv":
            raw = _read_csv(path)
        elif suffix == ".ndjson":
            raw = _read_ndjson(path)
        else:
            raw = _read_json_array(path)
        located: list[_Located] = []
        for where, record in raw:
            value = record.get(field)
            modified: datetime | None = None
            if isinstance(value, str) and value.strip():
                try:
                    modified = parse_salesforce_datetime(value, field=field)
                except ValueError as exc:
                    raise PermanentError(f"{where}: {exc}", resource=str(path)) from None
            elif value is not None and not isinstance(value, str):
                raise PermanentError(
                    f"{where}: {field} is {describe_value(value)}, not a date-time text",
                    resource=str(path),
                )
            located.append(_Located(record, where, modified))
        return located

    def _parse_cursor(self, since: str) -> datetime:
        try:
            return parse_salesforce_datetime(since, field="the cursor (since)")
        except ValueError as exc:
            raise PermanentError(f"files provider: {exc}", resource=str(self.directory)) from None


_NEVER = datetime.min.replace(tzinfo=UTC)


def _fields(entity_type: str) -> tuple[str, str]:
    """The (external id, modified) fields of an entity type; Salesforce's own names for an
    object the defaults do not map, since every Salesforce object has both."""
    entity = salesforce_entity(entity_type)
    if entity is None:
        return SalesforceEntity.external_id_field, SalesforceEntity.modified_field
    return entity.external_id_field, entity.modified_field


def _has_id(record: Mapping[str, Any], field: str) -> bool:
    value = record.get(field)
    return isinstance(value, str) and bool(value.strip())


def _covered_until(page: list[_Located], following: _Located | None) -> datetime | None:
    """The newest time a page fully covers: its newest, held back below a run of equal
    times that continues on the next page."""
    times = [item.modified for item in page if item.modified is not None]
    if not times:
        return None
    newest = times[-1]
    if following is not None and following.modified == newest:
        earlier = [moment for moment in times if moment < newest]
        return earlier[-1] if earlier else None
    return newest


def _os_error(path: Path, exc: OSError) -> PermanentError | TransientError:
    """Missing access will not fix itself; a file vanishing mid-read (being replaced) may."""
    message = f"files provider: cannot read {path}: {exc.strerror or exc}"
    if isinstance(exc, PermissionError | IsADirectoryError):
        return PermanentError(message, resource=str(path))
    return TransientError(message, resource=str(path))


def _read_text(path: Path, *, encoding: str = "utf-8") -> str:
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise PermanentError(
            f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})", resource=str(path)
        ) from None
    except OSError as exc:
        raise _os_error(path, exc) from exc


def _object(value: Any, where: str, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PermanentError(
            f"{where} is {describe_value(value)}, not a record object", resource=str(path)
        )
    return value


def _read_json_array(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        document = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise PermanentError(
            f"{path.name}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            resource=str(path),
        ) from None
    if not isinstance(document, list):
        raise PermanentError(
            f"{path.name}: expected a JSON array of records, found {describe_value(document)}",
            resource=str(path),
        )
    records: list[tuple[str, dict[str, Any]]] = []
    for index, item in enumerate(document):
        where = f"{path.name} index {index}"
        records.append((where, _object(item, where, path)))
    return records


def _read_ndjson(path: Path) -> list[tuple[str, dict[str, Any]]]:
    records: list[tuple[str, dict[str, Any]]] = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PermanentError(
                f"{where}: not valid JSON at column {exc.colno}: {exc.msg}", resource=str(path)
            ) from None
        records.append((where, _object(value, where, path)))
    return records


def _read_csv(path: Path) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.reader(_read_text(path, encoding="utf-8-sig").splitlines(keepends=True))
    records: list[tuple[str, dict[str, Any]]] = []
    columns: list[tuple[str, ...]] = []
    try:
        for row in reader:
            where = f"{path.name} line {reader.line_num}"
            if not columns:
                columns = _csv_columns(row, where, path)
                continue
            if not row:
                continue
            if len(row) != len(columns):
                raise PermanentError(
                    f"{where}: {len(row)} cells, but the header has {len(columns)} columns",
                    resource=str(path),
                )
            record: dict[str, Any] = {}
            for column, cell in zip(columns, row, strict=True):
                _put(record, column, cell if cell != "" else None)
            records.append((where, _nulls_collapsed(record)))
    except csv.Error as exc:
        raise PermanentError(
            f"{path.name} line {reader.line_num}: not valid CSV: {exc}", resource=str(path)
        ) from None
    return records


def _csv_columns(header: list[str], where: str, path: Path) -> list[tuple[str, ...]]:
    columns: list[tuple[str, ...]] = []
    for position, name in enumerate(header, start=1):
        segments = tuple(segment.strip() for segment in name.split("."))
        if not all(segments):
            raise PermanentError(
                f"{where}: header column {position} ({name!r}) has an empty name part",
                resource=str(path),
            )
        if segments in columns:
            raise PermanentError(
                f"{where}: header column {position} ({name!r}) appears twice", resource=str(path)
            )
        columns.append(segments)
    for column in columns:
        for length in range(1, len(column)):
            if column[:length] in columns:
                raise PermanentError(
                    f"{where}: column {'.'.join(column[:length])!r} is both a value and the "
                    f"object of {'.'.join(column)!r}",
                    resource=str(path),
                )
    return columns


def _put(record: dict[str, Any], column: tuple[str, ...], value: str | None) -> None:
    target = record
    for segment in column[:-1]:
        target = target.setdefault(segment, {})
    target[column[-1]] = value


def _nulls_collapsed(record: dict[str, Any]) -> dict[str, Any]:
    """Nested objects whose cells are all empty become null (a missing relationship)."""
    collapsed: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            inner = _nulls_collapsed(value)
            value = None if all(item is None for item in inner.values()) else inner
        collapsed[key] = value
    return collapsed

"""Azure Blob Storage's naming and metadata rules, applied by both blob adapters so the
folder store refuses exactly what Azure refuses."""

from __future__ import annotations

import re
from collections.abc import Mapping

from core.errors import PermanentError

MAX_NAME_LENGTH = 1024
_CONTAINER_NAME = re.compile(r"(?=.{3,63}\Z)[a-z0-9]+(?:-[a-z0-9]+)*")
_METADATA_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_container(container: str) -> None:
    if not isinstance(container, str) or not _CONTAINER_NAME.fullmatch(container):
        raise PermanentError(
            f"invalid blob container name {container!r}: use 3-63 lowercase letters, digits"
            " and single hyphens, starting and ending with a letter or digit",
            resource=str(container),
        )


def check_name(container: str, name: str) -> str:
    """Validate both names; returns `container/name` for messages."""
    check_container(container)
    if (
        not isinstance(name, str)
        or not name
        or len(name) > MAX_NAME_LENGTH
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise PermanentError(
            f"invalid blob name {name!r} in container {container!r}: use 1-{MAX_NAME_LENGTH}"
            " characters, '/'-separated, without '..', '.', empty segments, a leading '/',"
            " backslashes or NUL",
            resource=f"{container}/{name}",
        )
    return f"{container}/{name}"


def check_metadata(resource: str, metadata: Mapping[str, str]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not _METADATA_KEY.fullmatch(key):
            raise PermanentError(
                f"blob {resource}: metadata key {key!r} must be an identifier"
                " (letters, digits, '_', not starting with a digit)",
                resource=resource,
            )
        if not isinstance(value, str) or not value.isascii():
            raise PermanentError(
                f"blob {resource}: metadata value of {key!r} must be an ASCII string",
                resource=resource,
            )
        clean[key] = value
    return clean

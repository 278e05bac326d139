"""An in-memory stand-in for `azure.keyvault.secrets.SecretClient` (no Key Vault emulator
exists): versions, soft delete, recovery, and the SDK's own exception types."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

DELETED_BUT_RECOVERABLE = "ObjectIsDeletedButRecoverable"


class _Done:
    def __init__(self, result: Any = None) -> None:
        self._result = result

    def wait(self) -> None:
        return None

    def result(self) -> Any:
        return self._result


def conflict(code: str) -> ResourceExistsError:
    error = ResourceExistsError(message=f"({code}) conflict")
    error.error = SimpleNamespace(code=code)  # type: ignore[assignment]
    return error


@dataclass
class FakeSecretClient:
    vault_url: str = "https://fake-vault.vault.azure.net/"
    versions: dict[str, list[str]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    calls: Counter[str] = field(default_factory=Counter)
    errors: dict[str, Exception] = field(default_factory=dict)

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        error = self.errors.pop(name, None)
        if error is not None:
            raise error

    def get_secret(self, name: str) -> Any:
        self._call("get_secret")
        if name in self.deleted or name not in self.versions:
            raise ResourceNotFoundError(message=f"A secret with (name/id) {name} was not found")
        return SimpleNamespace(name=name, value=self.versions[name][-1])

    def set_secret(self, name: str, value: str) -> Any:
        self._call("set_secret")
        if name in self.deleted:
            raise conflict(DELETED_BUT_RECOVERABLE)
        self.versions.setdefault(name, []).append(value)
        return SimpleNamespace(name=name, value=value)

    def begin_delete_secret(self, name: str) -> _Done:
        self._call("begin_delete_secret")
        if name in self.deleted or name not in self.versions:
            raise ResourceNotFoundError(message=f"A secret with (name/id) {name} was not found")
        self.deleted.add(name)
        return _Done()

    def begin_recover_deleted_secret(self, name: str) -> _Done:
        self._call("begin_recover_deleted_secret")
        self.deleted.discard(name)
        return _Done()

    def list_properties_of_secrets(self, *, max_page_size: int) -> Any:
        self._call("list_properties_of_secrets")
        return iter([SimpleNamespace(name=n) for n in self.versions if n not in self.deleted])

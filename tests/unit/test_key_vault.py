"""KeyVaultSecretStore with a fake SecretClient: cache, rotation, soft delete, errors."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
)

from core.adapters.azure.key_vault import KeyVaultSecretStore, build
from core.config import Settings
from core.errors import AuthError, PermanentError, TransientError
from core.runtime import ConfigurationError
from tests.contract.conftest import ManualClock
from tests.fake_key_vault import FakeSecretClient, conflict

NAME = "t1--crm--refreshToken"
VALUE = "s3cr3t-refresh-token-value"


def http_error(status: int, **headers: str) -> HttpResponseError:
    response = SimpleNamespace(
        status_code=status,
        headers=headers,
        reason="reason",
        text=lambda encoding=None: "",
        request=None,
        content_type="text/plain",
    )
    return HttpResponseError(response=response)


@pytest.fixture
def client() -> FakeSecretClient:
    return FakeSecretClient()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(client: FakeSecretClient, clock: ManualClock) -> KeyVaultSecretStore:
    return KeyVaultSecretStore(client, cache_seconds=300, clock=clock)


def test_reads_are_cached_for_the_ttl(
    store: KeyVaultSecretStore, client: FakeSecretClient, clock: ManualClock
) -> None:
    client.versions[NAME] = [VALUE]

    assert store.get(NAME) == VALUE
    clock.advance(299)
    assert store.get(NAME) == VALUE
    assert client.calls["get_secret"] == 1

    client.versions[NAME].append("rotated elsewhere")
    clock.advance(1)
    assert store.get(NAME) == "rotated elsewhere"
    assert client.calls["get_secret"] == 2


def test_set_writes_a_new_version_and_updates_the_cache(
    store: KeyVaultSecretStore, client: FakeSecretClient
) -> None:
    store.set(NAME, VALUE)
    store.set(NAME, "rotated")

    assert client.versions[NAME] == [VALUE, "rotated"]
    assert store.get(NAME) == "rotated"
    assert client.calls["get_secret"] == 0


def test_delete_invalidates_and_a_missing_secret_is_none_and_not_cached(
    store: KeyVaultSecretStore, client: FakeSecretClient
) -> None:
    store.set(NAME, VALUE)

    store.delete(NAME)

    assert store.get(NAME) is None
    assert store.get(NAME) is None
    assert client.calls["get_secret"] == 2
    store.delete(NAME)


def test_setting_a_soft_deleted_name_recovers_it_first(
    store: KeyVaultSecretStore, client: FakeSecretClient
) -> None:
    store.set(NAME, VALUE)
    store.delete(NAME)

    store.set(NAME, "new")

    assert client.calls["begin_recover_deleted_secret"] == 1
    assert client.versions[NAME] == [VALUE, "new"]
    assert store.get(NAME) == "new"


def test_another_conflict_is_not_taken_for_a_soft_delete(
    store: KeyVaultSecretStore, client: FakeSecretClient
) -> None:
    client.errors["set_secret"] = conflict("ObjectIsBeingDeleted")

    with pytest.raises(PermanentError, match=NAME):
        store.set(NAME, VALUE)
    assert client.calls["begin_recover_deleted_secret"] == 0


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (ClientAuthenticationError(message="token expired"), AuthError),
        (http_error(401), AuthError),
        (http_error(403), AuthError),
        (http_error(429, **{"Retry-After": "7"}), TransientError),
        (http_error(503), TransientError),
        (ServiceRequestError(message="connection refused"), TransientError),
        (http_error(400), PermanentError),
    ],
    ids=["credential", "401", "403", "429", "503", "network", "400"],
)
def test_errors_name_the_secret_and_never_the_value(
    store: KeyVaultSecretStore,
    client: FakeSecretClient,
    raised: Exception,
    expected: type[Exception],
) -> None:
    client.versions[NAME] = [VALUE]
    client.errors["get_secret"] = raised

    with pytest.raises(expected) as error:
        store.get(NAME)

    assert type(error.value) is expected
    assert NAME in str(error.value)
    assert VALUE not in str(error.value)
    if isinstance(error.value, TransientError) and "429" in str(error.value):
        assert error.value.retry_after == 7


def test_invalid_names_and_values_are_refused_before_any_call(
    store: KeyVaultSecretStore, client: FakeSecretClient
) -> None:
    for bad in ("", "has_underscore", "x" * 128, "a/b"):
        with pytest.raises(PermanentError, match="secret name"):
            store.get(bad)
        with pytest.raises(PermanentError, match="secret name"):
            store.delete(bad)
    with pytest.raises(PermanentError, match="string"):
        store.set(NAME, 123)  # type: ignore[arg-type]
    assert sum(client.calls.values()) == 0


def test_repr_and_logs_never_show_values(
    store: KeyVaultSecretStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store.set(NAME, VALUE)
    store.get(NAME)

    assert VALUE not in repr(store)
    assert "fake-vault" in repr(store)
    assert VALUE not in caplog.text


def test_ping_lists_at_most_one_secret(
    store: KeyVaultSecretStore, client: FakeSecretClient
) -> None:
    store.ping()
    client.errors["list_properties_of_secrets"] = http_error(403)
    with pytest.raises(AuthError, match="fake-vault"):
        store.ping()


def test_build_needs_the_vault_url() -> None:
    with pytest.raises(ConfigurationError, match="KEY_VAULT_URL"):
        build(Settings(SECRETS="keyvault"))
    store = build(Settings(SECRETS="keyvault", KEY_VAULT_URL="https://v.vault.azure.net/"))
    assert isinstance(store, KeyVaultSecretStore)

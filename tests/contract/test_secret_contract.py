"""SecretStore contract: get/set/delete, persistence across clients, values never shown."""

from __future__ import annotations

import json
import logging
import stat
import threading
from pathlib import Path

import pytest

from core.adapters.local.env_secrets import EnvSecretStore, env_name
from core.errors import PermanentError
from core.ports import SecretStore
from tests.contract.conftest import Backend

VALUE = "s3cr3t-Value-that-must-not-leak"


@pytest.fixture
def name(run_id: str) -> str:
    return f"t-{run_id}--crm--apiKey"


def test_get_of_an_unknown_secret_is_none(secrets: SecretStore, name: str) -> None:
    assert secrets.get(name) is None


def test_set_get_overwrite_delete(secrets: SecretStore, name: str) -> None:
    secrets.set(name, VALUE)
    assert secrets.get(name) == VALUE

    secrets.set(name, "rotated")
    assert secrets.get(name) == "rotated"

    secrets.delete(name)
    assert secrets.get(name) is None
    secrets.delete(name)


def test_secrets_are_independent(secrets: SecretStore, run_id: str) -> None:
    secrets.set(f"t-{run_id}--a--token", "a")
    secrets.set(f"t-{run_id}--b--token", "b")

    secrets.delete(f"t-{run_id}--a--token")

    assert secrets.get(f"t-{run_id}--a--token") is None
    assert secrets.get(f"t-{run_id}--b--token") == "b"


def test_values_persist_for_a_new_client(secret_backend: Backend[SecretStore], name: str) -> None:
    secret_backend.adapter.set(name, VALUE)

    reopened = secret_backend.reopen()
    assert reopened.get(name) == VALUE

    reopened.set(name, "rotated")
    assert secret_backend.adapter.get(name) == "rotated"
    reopened.delete(name)
    assert secret_backend.reopen().get(name) is None


@pytest.mark.parametrize("bad", ["", "has_underscore", "has space", "a/b", "x" * 128, "ünï"])
def test_invalid_names_are_refused(secrets: SecretStore, bad: str) -> None:
    for call in (lambda: secrets.get(bad), lambda: secrets.set(bad, "v")):
        with pytest.raises(PermanentError, match="secret name"):
            call()


def test_repr_and_logs_never_show_values(
    secrets: SecretStore, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    secrets.set(name, VALUE)
    secrets.get(name)

    assert VALUE not in repr(secrets)
    assert VALUE not in str(secrets)
    assert VALUE not in caplog.text


def test_concurrent_sets_of_different_secrets_keep_all(
    secret_backend: Backend[SecretStore], run_id: str
) -> None:
    clients = [secret_backend.adapter, secret_backend.reopen()]

    def set_many(client: SecretStore, worker: int) -> None:
        for n in range(15):
            client.set(f"t-{run_id}--w{worker}--k{n}", f"{worker}-{n}")

    threads = [
        threading.Thread(target=set_many, args=(client, i)) for i, client in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    reader = secret_backend.reopen()
    assert all(
        reader.get(f"t-{run_id}--w{worker}--k{n}") == f"{worker}-{n}"
        for worker in range(2)
        for n in range(15)
    )


def test_ping(secrets: SecretStore) -> None:
    secrets.ping()


# ------------------------------------------------------------------------ env adapter only


def test_env_names_map_hyphens_to_underscores_under_a_prefix() -> None:
    assert env_name("tenant1--int1--apiKey") == "SECRET__tenant1__int1__apiKey"
    assert env_name("a-b") == "SECRET__a_b"


def test_env_secret_is_read_from_the_environment() -> None:
    store = EnvSecretStore({"SECRET__tenant1__int1__apiKey": VALUE})

    assert store.get("tenant1--int1--apiKey") == VALUE
    assert store.get("tenant1--int1--other") is None


def test_env_without_a_file_sets_and_deletes_in_the_mapping() -> None:
    environ: dict[str, str] = {}
    store = EnvSecretStore(environ)

    store.set("t--i--token", VALUE)
    assert environ == {"SECRET__t__i__token": VALUE}

    store.delete("t--i--token")
    assert environ == {}


def test_env_file_values_win_and_deletion_hides_the_environment(tmp_path: Path) -> None:
    environ = {"SECRET__t__i__refreshToken": "from-env"}
    file = tmp_path / "secrets.json"
    store = EnvSecretStore(environ, file=file)

    store.set("t--i--refreshToken", "rotated")
    assert store.get("t--i--refreshToken") == "rotated"
    assert environ == {"SECRET__t__i__refreshToken": "from-env"}

    store.delete("t--i--refreshToken")
    assert store.get("t--i--refreshToken") is None
    assert EnvSecretStore(environ, file=file).get("t--i--refreshToken") is None


def test_env_file_is_private(tmp_path: Path) -> None:
    file = tmp_path / "secrets.json"
    store = EnvSecretStore({}, file=file)

    store.set("t--i--token", VALUE)

    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert json.loads(file.read_text()) == {"t--i--token": VALUE}
    assert VALUE not in repr(store)
    assert str(file) in repr(store)


def test_env_corrupt_file_is_reported_without_its_content(tmp_path: Path) -> None:
    file = tmp_path / "secrets.json"
    file.write_text(f'{{"t--i--token": "{VALUE}", "broken": ')
    store = EnvSecretStore({}, file=file)

    with pytest.raises(PermanentError) as error:
        store.get("t--i--token")
    assert str(file) in str(error.value)
    assert VALUE not in str(error.value)
    with pytest.raises(PermanentError):
        store.ping()


def test_env_secret_value_must_be_a_string(tmp_path: Path) -> None:
    store = EnvSecretStore({}, file=tmp_path / "s.json")

    with pytest.raises(PermanentError, match="string"):
        store.set("t--i--token", 123)  # type: ignore[arg-type]

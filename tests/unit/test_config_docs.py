"""Every setting is in local.settings.json.example and in the README's table, and back."""

import json
import re
from pathlib import Path

from core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_HOST_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "AzureWebJobsStorage",
    "AzureWebJobsFeatureFlags",
}


def _aliases() -> set[str]:
    return {field.alias for field in Settings.model_fields.values() if field.alias}


def test_local_settings_example_lists_every_setting():
    values = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    assert set(values) - FUNCTIONS_HOST_SETTINGS == _aliases()


def test_readme_configuration_table_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Za-z_]+)` \|", readme, flags=re.M))
    assert _aliases() | FUNCTIONS_HOST_SETTINGS <= documented
    assert documented <= _aliases() | FUNCTIONS_HOST_SETTINGS

"""The demo tenant: one `files` integration over Salesforce-shaped records that
`samples.demo.generate` writes. `integration.json` is the integration's create body as the
tenant API takes it, without entity mappings so that the provider defaults apply; its data
directory is a placeholder filled in by `demo_integration_body`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEMO_TENANT_ID = "demo"
DEMO_INTEGRATION_FILE = Path(__file__).with_name("integration.json")
DATA_DIR_PLACEHOLDER = "${DEMO_DATA_DIR}"


def demo_integration_body(data_dir: str | Path) -> dict[str, Any]:
    """The create body with `config.path` set to the generated data directory."""
    body: dict[str, Any] = json.loads(DEMO_INTEGRATION_FILE.read_text(encoding="utf-8"))
    if body["config"]["path"] != DATA_DIR_PLACEHOLDER:
        raise ValueError(
            f"{DEMO_INTEGRATION_FILE}: config.path must be {DATA_DIR_PLACEHOLDER!r}, "
            f"found {body['config']['path']!r}"
        )
    body["config"]["path"] = str(Path(data_dir).resolve())
    return body

"""`python -m core.local serve|token` — the local host and its dev-token helper."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _use_data_dir(data_dir: str | None) -> None:
    if data_dir:
        os.environ["DATA_DIR"] = str(Path(data_dir).resolve())


def _serve(args: argparse.Namespace) -> int:
    _use_data_dir(args.data_dir)
    sys.path.insert(0, os.getcwd())
    from core.config import get_settings
    from core.local.host import LocalHost, load_app
    from core.logging import configure_logging
    from core.runtime import get_runtime

    settings = get_settings()
    configure_logging(settings.log_level)
    runtime = get_runtime()
    host = LocalHost(load_app(args.app), runtime)
    if args.demo:
        from core.local.demo import load_demo

        runtime.startup()
        load_demo(runtime)
    host.serve(args.host, args.port)
    return 0


def _token(args: argparse.Namespace) -> int:
    _use_data_dir(args.data_dir)
    from core.api.auth import LocalTokenVerifier, local_signing_key
    from core.config import get_settings

    verifier = LocalTokenVerifier(local_signing_key(get_settings()))
    print(
        verifier.issue(
            tenant_id=args.tenant, roles=[args.role], subject=args.subject, ttl_seconds=args.ttl
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.local")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the Functions app on the local adapters")
    serve.add_argument("--port", type=int, default=7071)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--data-dir", default=None, help="where the local stores live (DATA_DIR)")
    serve.add_argument("--app", default="function_app:app", help="module:attribute of the app")
    serve.add_argument(
        "--demo", action="store_true", help="load the demo tenant and run its first sync"
    )
    serve.set_defaults(run=_serve)

    token = commands.add_parser("token", help="print a local dev JWT")
    token.add_argument("--tenant", required=True)
    token.add_argument("--role", choices=["tenant_admin", "super_admin"], default="tenant_admin")
    token.add_argument("--subject", default="local-dev-user")
    token.add_argument("--ttl", type=int, default=8 * 3600, help="lifetime in seconds")
    token.add_argument("--data-dir", default=None)
    token.set_defaults(run=_token)

    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())

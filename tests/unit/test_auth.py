import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from core.api.auth import (
    LOCAL_AUDIENCE,
    LOCAL_ISSUER,
    SUPER_ADMIN_ROLES,
    TENANT_ROLES,
    AuthenticationError,
    AuthorizationError,
    EntraTokenVerifier,
    LocalTokenVerifier,
    authenticate,
    local_signing_key,
)
from core.config import Settings

KEY = "k" * 48


def _auth(header, allowed=TENANT_ROLES, verifier=None):
    return authenticate(
        header, verifier or LocalTokenVerifier(KEY), tenant_claim="tid", allowed_roles=allowed
    )


def test_valid_local_token_gives_tenant_and_roles_from_claims():
    token = LocalTokenVerifier(KEY).issue(tenant_id="t1", roles=["tenant_admin"], subject="u1")
    principal = _auth(f"Bearer {token}")
    assert principal.tenant_id == "t1"
    assert principal.roles == {"tenant_admin"}
    assert principal.subject == "u1"


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer not-a-jwt"])
def test_missing_or_malformed_is_401(header):
    with pytest.raises(AuthenticationError):
        _auth(header)


def test_expired_wrong_key_and_wrong_audience_are_401():
    expired = LocalTokenVerifier(KEY).issue(
        tenant_id="t", roles=["tenant_admin"], subject="u", ttl_seconds=-10
    )
    with pytest.raises(AuthenticationError, match="expired"):
        _auth(f"Bearer {expired}")
    other = LocalTokenVerifier("x" * 48).issue(tenant_id="t", roles=["tenant_admin"], subject="u")
    with pytest.raises(AuthenticationError):
        _auth(f"Bearer {other}")
    now = int(time.time())
    foreign = jwt.encode(
        {"iss": LOCAL_ISSUER, "aud": "someone-else", "sub": "u", "tid": "t", "exp": now + 60},
        KEY,
        algorithm="HS256",
    )
    with pytest.raises(AuthenticationError):
        _auth(f"Bearer {foreign}")


def test_alg_none_is_refused():
    token = jwt.encode(
        {
            "iss": LOCAL_ISSUER,
            "aud": LOCAL_AUDIENCE,
            "sub": "u",
            "tid": "t",
            "roles": ["super_admin"],
            "exp": int(time.time()) + 60,
        },
        None,
        algorithm="none",
    )
    with pytest.raises(AuthenticationError):
        _auth(f"Bearer {token}")


def test_missing_tenant_claim_is_401_and_wrong_role_is_403():
    now = int(time.time())
    no_tenant = jwt.encode(
        {
            "iss": LOCAL_ISSUER,
            "aud": LOCAL_AUDIENCE,
            "sub": "u",
            "roles": ["tenant_admin"],
            "exp": now + 60,
        },
        KEY,
        algorithm="HS256",
    )
    with pytest.raises(AuthenticationError, match="tid"):
        _auth(f"Bearer {no_tenant}")
    tenant_admin = LocalTokenVerifier(KEY).issue(tenant_id="t", roles=["tenant_admin"], subject="u")
    with pytest.raises(AuthorizationError):
        _auth(f"Bearer {tenant_admin}", allowed=SUPER_ADMIN_ROLES)
    reader = LocalTokenVerifier(KEY).issue(tenant_id="t", roles=["reader"], subject="u")
    with pytest.raises(AuthorizationError):
        _auth(f"Bearer {reader}")


def test_signing_key_is_generated_once_per_data_dir(tmp_path):
    settings = Settings(DATA_DIR=tmp_path)
    first = local_signing_key(settings)
    assert len(first) >= 48
    assert local_signing_key(settings) == first
    assert (tmp_path / "jwt-signing.key").stat().st_mode & 0o077 == 0


@pytest.fixture
def jwks_server():
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    jwk.update({"kid": "key-1", "use": "sig", "alg": "RS256"})
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = json.dumps({"keys": [jwk]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield private_key, f"http://127.0.0.1:{server.server_port}/discovery/keys", hits
    server.shutdown()


def test_entra_tokens_are_checked_against_the_jwks_which_is_cached(jwks_server):
    private_key, url, hits = jwks_server
    issuer = "https://login.microsoftonline.com/dir-id/v2.0"
    verifier = EntraTokenVerifier(issuer=issuer, audience="api://app", jwks_url=url)
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": "api://app",
        "sub": "u",
        "tid": "t9",
        "roles": ["super_admin"],
        "exp": now + 60,
    }
    token = jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": "key-1"})
    for _ in range(3):
        assert _auth(f"Bearer {token}", verifier=verifier).tenant_id == "t9"
    assert len(hits) == 1
    wrong_issuer = jwt.encode(
        {**claims, "iss": "https://evil"}, private_key, algorithm="RS256", headers={"kid": "key-1"}
    )
    with pytest.raises(AuthenticationError):
        _auth(f"Bearer {wrong_issuer}", verifier=verifier)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": "key-1"})
    with pytest.raises(AuthenticationError):
        _auth(f"Bearer {forged}", verifier=verifier)
    unknown_kid = jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": "nope"})
    with pytest.raises(AuthenticationError):
        _auth(f"Bearer {unknown_kid}", verifier=verifier)

"""No credential is committed (docs/secret-management.md).

Every file git tracks, plus every untracked file git does not ignore, is scanned line by
line for strings that look like real credentials: private key blocks, cloud and SaaS
tokens, Azure keys in connection strings, signed JWTs, literal passwords and
high-entropy values assigned to secret-like names. Files containing NUL bytes are
binary and skipped. The synthetic credentials below are assembled at run time, so this
file never matches its own rules.
"""

from __future__ import annotations

import math
import random
import re
import string
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Values that look like secrets in form but mean nothing: empty, templated, masked.
PLACEHOLDER = re.compile(
    r"""^(
        | <[^>]*>                                  # <your-secret>
        | \$\{?[A-Za-z_][A-Za-z0-9_]*\}?            # $VAR, ${VAR}
        | %[A-Za-z_][A-Za-z0-9_]*%                  # %VAR%
        | [*x.]+                                    # ****, xxxx, ...
        | (change[-_]?me|placeholder|redacted|example|dummy|not[-_]?set)
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
TEMPLATE_FIELD = re.compile(r"\{[^{}]*\}")
WORDS = re.compile(r"[A-Za-z]+(?:[-_. ][A-Za-z]+)*")
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SECRET_NAME = (
    r"(?<![\w.-])[\w.-]*(?:secret|token|passw(?:or)?d|pwd|credential|apikey"
    r"|(?:api|access|secret|private|signing|account|client|subscription|master|shared)[_-]?key)"
    r"[\w.-]*"
)
# Findings that are not credentials, each with the reason. Keyed by file and rule, and
# checked for staleness, so an entry disappears with the string it excuses.
ALLOWED_FINDINGS: dict[tuple[str, str], str] = {
    (
        "tests/unit/fixtures/webhooks/salesforce_outbound_message.xml",
        "Salesforce session id",
    ): "a sample outbound message whose session id is fake (it says so in its text); "
    "the webhook tests check it never reaches an event",
    (
        "tests/unit/test_webhook_verifiers.py",
        "high-entropy secret",
    ): "the providers' published webhook test vectors (signing secrets, verification "
    "tokens and challenge tokens from their documentation), not live credentials",
}
MIN_ENTROPY_BITS_PER_CHAR = 3.5
MIN_HIGH_ENTROPY_LENGTH = 20
MIN_PASSWORD_LENGTH = 6


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    is_secret: Callable[[str], bool] = lambda _value: True
    """Judges the `value` group (or the whole match without one)."""


def shannon_entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def is_literal(value: str) -> bool:
    """Not a placeholder and not a template with `{field}` parts."""
    return not PLACEHOLDER.match(value) and not TEMPLATE_FIELD.search(value)


def is_password(value: str) -> bool:
    return len(value) >= MIN_PASSWORD_LENGTH and is_literal(value)


def looks_random(value: str) -> bool:
    """Long, mixed-class, high-entropy, and not words, a UUID, a URL or a path."""
    classes = sum(
        any(c in chars for c in value)
        for chars in (string.ascii_lowercase, string.ascii_uppercase, string.digits)
    )
    return (
        len(value) >= MIN_HIGH_ENTROPY_LENGTH
        and classes >= 2
        and shannon_entropy(value) >= MIN_ENTROPY_BITS_PER_CHAR
        and is_literal(value)
        and not UUID.match(value)
        and not WORDS.fullmatch(value)
        and "://" not in value
        and not value.startswith(("/", "./", "../"))
    )


RULES: tuple[Rule, ...] = (
    Rule("private key block", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    Rule("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    Rule(
        "AWS secret access key",
        re.compile(
            r"(?i)aws_?secret_?access_?key\W{1,5}(?P<value>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
    ),
    Rule("Azure account key", re.compile(r"AccountKey=(?P<value>[A-Za-z0-9+/]{86}==)")),
    Rule("Azure shared access key", re.compile(r"SharedAccessKey=(?P<value>[A-Za-z0-9+/]{43}=)")),
    Rule("Azure SAS signature", re.compile(r"[?&]sig=(?P<value>[A-Za-z0-9%+/]{30,})")),
    Rule("Slack token", re.compile(r"\bxox[abprs]-[0-9A-Za-z-]{10,}")),
    Rule(
        "GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})")
    ),
    Rule("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    Rule("Stripe live key", re.compile(r"\b[rs]k_live_[0-9A-Za-z]{20,}")),
    Rule("SendGrid API key", re.compile(r"\bSG\.[\w-]{22}\.[\w-]{43}\b")),
    Rule("Salesforce session id", re.compile(r"\b00D[0-9A-Za-z]{12,15}![0-9A-Za-z._]{40,}")),
    Rule(
        "signed JWT",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"),
    ),
    Rule(
        "password literal",
        re.compile(
            r"""(?i)(?<![\w-])[\w-]*(?:passw(?:or)?d|pwd)[\w-]*["']?\s*[:=]\s*(["'])(?P<value>[^"'\s]+)\1"""
        ),
        is_password,
    ),
    Rule(
        "password in connection string",
        re.compile(
            r"""(?i)(?:^[\w-]*|;\s*|["'])(?:password|pwd)\s*=\s*(?P<value>[^;"'\s,()]+)(?=[;"']|$)"""
        ),
        is_password,
    ),
    Rule(
        "password in URL",
        re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@\"']+:(?P<value>[^/\s:@\"']+)@"),
        is_password,
    ),
    Rule(
        "high-entropy secret",
        re.compile(rf"""(?i){SECRET_NAME}["']?\s*[:=]\s*[bru]?(["'])(?P<value>[^"'\s]+)\1"""),
        looks_random,
    ),
)


def scan_text(path: str, text: str, rules: Iterable[Rule] = RULES) -> Iterator[Finding]:
    for number, line in enumerate(text.splitlines(), start=1):
        for rule in rules:
            for match in rule.pattern.finditer(line):
                value = match.groupdict().get("value") or match.group(0)
                if rule.is_secret(value):
                    yield Finding(path, number, rule.name)


def repository_files() -> list[str]:
    """Tracked files and untracked files that are not ignored, relative to the root."""
    result = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, f"git ls-files failed: {result.stderr.decode()}"
    return sorted({name for name in result.stdout.decode().split("\0") if name})


@cache
def scan_repository() -> tuple[Finding, ...]:
    findings = []
    for name in repository_files():
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        findings.extend(scan_text(name, data.decode("utf-8", errors="replace")))
    return findings


def test_repository_has_no_committed_secrets() -> None:
    files = repository_files()
    assert "tests/unit/test_no_committed_secrets.py" in files
    findings = [f for f in scan_repository() if (f.path, f.rule) not in ALLOWED_FINDINGS]
    assert not findings, "credential-looking strings:\n" + "\n".join(map(str, findings))


def test_allowed_findings_are_still_needed() -> None:
    found = {(finding.path, finding.rule) for finding in scan_repository()}
    stale = sorted(set(ALLOWED_FINDINGS) - found)
    assert not stale, f"ALLOWED_FINDINGS entries that match nothing any more: {stale}"


# --- the scanner itself ---------------------------------------------------------------

_rng = random.Random(20240501)


def _random(alphabet: str, length: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(length))


_UPPER_DIGITS = string.ascii_uppercase + string.digits
_ALNUM = string.ascii_letters + string.digits
_BASE64 = _ALNUM + "+/"
_URLSAFE = _ALNUM + "-_"


def _synthetic_credentials() -> list[tuple[str, str]]:
    """(rule, line) pairs, assembled here so that no literal credential is in the source."""
    dash5 = "-" * 5
    return [
        ("private key block", dash5 + "BEGIN RSA " + "PRIVATE KEY" + dash5),
        ("private key block", dash5 + "BEGIN " + "PRIVATE KEY" + dash5),
        ("private key block", dash5 + "BEGIN OPENSSH " + "PRIVATE KEY" + dash5),
        ("AWS access key id", "aws_access_key_id = " + "AKIA" + _random(_UPPER_DIGITS, 16)),
        ("AWS secret access key", "aws_secret_access_key = " + _random(_BASE64, 40)),
        (
            "Azure account key",
            "DefaultEndpointsProtocol=https;AccountName=prod;AccountKey="
            + _random(_BASE64, 86)
            + "==;",
        ),
        (
            "Azure shared access key",
            "Endpoint=sb://x/;SharedAccessKey=" + _random(_BASE64, 43) + "=",
        ),
        ("Azure SAS signature", "https://a.blob/c/b?sv=2024&sig=" + _random(_ALNUM + "%", 44)),
        (
            "Slack token",
            "SLACK=" + "xox" + "b-" + _random(string.digits, 12) + "-" + _random(_ALNUM, 24),
        ),
        ("GitHub token", "token: " + "gh" + "p_" + _random(_ALNUM, 36)),
        ("GitHub token", "github" + "_pat_" + _random(_ALNUM + "_", 60)),
        ("Google API key", "key=" + "AI" + "za" + _random(_URLSAFE, 35)),
        ("Stripe live key", "sk" + "_live_" + _random(_ALNUM, 24)),
        ("SendGrid API key", "SG" + "." + _random(_URLSAFE, 22) + "." + _random(_URLSAFE, 43)),
        (
            "Salesforce session id",
            "Authorization: Bearer "
            + "00D"
            + _random(_ALNUM, 15)
            + "!"
            + _random(_ALNUM + ".", 96),
        ),
        (
            "signed JWT",
            "Bearer "
            + "eyJ"
            + _random(_URLSAFE, 30)
            + ".eyJ"
            + _random(_URLSAFE, 60)
            + "."
            + _random(_URLSAFE, 43),
        ),
        ("password literal", 'connect(host="db", password' + '="' + "hunter2-prod" + '")'),
        ("password literal", '"db_password"' + ': "' + "S3cure!pass" + '"'),
        ("password in connection string", "Server=db;User Id=app;Password" + "=" + "Tr0ub4dor&3;"),
        ("password in URL", "amqp://app:" + "Tr0ub4dor3" + "@rabbit:5672/"),
        ("high-entropy secret", 'client_secret = "' + _random(_ALNUM + "~.", 40) + '"'),
        ("high-entropy secret", "WEBHOOK_SIGNING_SECRET=" + "'" + _random(_ALNUM, 32) + "'"),
        ("high-entropy secret", '"refresh_token": "' + _random(_URLSAFE, 64) + '"'),
        ("high-entropy secret", "api_key: '" + _random(string.hexdigits.lower(), 40) + "'"),
    ]


@pytest.mark.parametrize(("rule", "line"), _synthetic_credentials())
def test_scanner_flags_credential(rule: str, line: str) -> None:
    rules = {finding.rule for finding in scan_text("synthetic.txt", line)}
    assert rule in rules, f"{rule!r} missed in {line!r} (found {rules or 'nothing'})"


@pytest.mark.parametrize(
    "line",
    [
        'password=""',
        'password: "<your-password>"',
        'PASSWORD="${DB_PASSWORD}"',
        "Server=db;Password=%DB_PASSWORD%;",
        "amqp://guest:guest@localhost:5672/",
        "    password=password,",
        "token = os.environ['PROVIDER_TOKEN']",
        'client_secret = "test-webhook-secret"',
        'secret_name = "{tenantId}--{integrationId}--client-secret"',
        'api_key = "00000000-0000-0000-0000-000000000002"',
        'access_key = "https://vault.example/secrets/provider-api-key"',
        "header = " + "eyJ" + "hbGciOiJub25lIn0" + "." + "eyJ" + "zdWIiOiIxMjMifQ" + ".",
        "AccountKey=" + "short" + ";",
        "Use the SecretStore port; the token is cached for five minutes.",
    ],
)
def test_scanner_ignores_placeholders_and_non_secrets(line: str) -> None:
    assert list(scan_text("ok.txt", line)) == []


def test_findings_name_file_line_and_rule() -> None:
    text = "first line\nsecond line\n" + "xox" + "p-" + _random(_ALNUM, 30) + "\n"
    assert [str(f) for f in scan_text("config/app.env", text)] == ["config/app.env:3: Slack token"]


def test_high_entropy_needs_length_classes_and_entropy() -> None:
    assert looks_random(_random(_ALNUM, 32))
    assert not looks_random(_random(_ALNUM, MIN_HIGH_ENTROPY_LENGTH - 1))
    assert not looks_random("a" * 40 + "1")
    assert not looks_random("local-development-signing-key-only")

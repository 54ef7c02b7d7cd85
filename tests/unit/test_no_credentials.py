"""Nothing that looks like a credential is in git: keys, tokens, passwords in URLs or in configuration."""

import re
import subprocess

from tests.conftest import PROJECT_ROOT

# A value that stands for a credential rather than being one: a variable, a template, a mask or a word.
PLACEHOLDER = re.compile(r"^(\$\{?[A-Za-z_]+\}?|\$\(.*|\{.*|\{\{.*\}\}|<[^>]+>|\*+|\.\.\.|x+|password|pass|secret|changeme|"
                         r"PASSWORD|USER|user|postgres|\{[a-z_]+\})$")
PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    # scheme://user:password@host
    "password in a URL": re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]+:(?P<value>[^\s@/'\"]+)@"),
    # password: value / password = "value" / api_key: value (YAML, Python, env files)
    "password or key in configuration": re.compile(
        r"(?i)(?:password|passwd|secret|api_key|apikey|token|hmac_key)\b['\"]?[ \t]*[:=][ \t]*['\"]?(?P<value>[^\s'\",}]+)"),
}


def findings(text: str) -> list[str]:
    """What in ``text`` looks like a credential (placeholders and references to variables are not)."""
    found = []
    for kind, pattern in PATTERNS.items():
        for match in pattern.finditer(text):
            value = match.groupdict().get("value")
            if value is not None and (PLACEHOLDER.match(value) or not re.search(r"[A-Za-z0-9]{6,}", value)
                                      or re.match(r"^[A-Za-z_][\w.]*(\(.*)?$", value) and re.search(r"[._(]", value)):
                continue  # a placeholder, or code: an attribute, call or snake_case name (secrets.token_hex(16))
            found.append(f"{kind}: {match.group(0)[:60]}")
    return found


def test_nothing_in_git_looks_like_a_credential():
    files = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    problems = []
    for name in files:
        path = PROJECT_ROOT / name
        if not path.is_file() or path.suffix in (".parquet", ".png", ".db", ".duckdb"):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        problems += [f"{name}: {f}" for f in findings(text)]
    assert problems == []


def test_the_scan_finds_planted_credentials():
    planted = {
        "key": "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIE",
        "aws": "aws_access_key_id = AKIA" + "ABCDEFGHIJKLMNOP",
        "url": "MLFLOW_TRACKING_URI=postgresql://mlflow:" + "s3cr3tPassw0rd@db:5432/mlflow",
        "yaml": "password: " + "Tr0ub4dor3andmore",
        "python": 'PII_HMAC_KEY = "' + 'a8f5f167f44f4964e6c998dee827110c"',
    }
    for name, text in planted.items():
        assert findings(text), f"not found: {name}"
    # What the project writes instead: references to variables and placeholders.
    for text in ("password: {env: DAGSTER_PG_PASSWORD}", "postgresql://user:password@host:5432/db",
                 "postgresql://${USER}:${PASSWORD}@db/x", "token = secrets.token_hex(16)",
                 "postgresql://***@db:5432/mlflow"):
        assert findings(text) == [], text

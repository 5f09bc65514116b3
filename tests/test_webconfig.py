"""--web.config.file: the exporter-toolkit format, validated with a clear message per problem."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from exporter.webconfig import WebConfigError, load_web_config
from tests.support import REPO, exporter_exit, fake_path, free_port
from tests.websec import PKI, hash_password, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_full_config_is_parsed_with_paths_relative_to_the_file(pki: PKI) -> None:
    alice = hash_password("secret")
    config = load_web_config(
        write(
            pki.root / "web.yml",
            f"""
tls_server_config:
  cert_file: server.pem
  key_file: server_key.pem
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
  min_version: TLS13
  prefer_server_cipher_suites: true
basic_auth_users:
  alice: {alice}
http_server_config:
  http2: true
  headers:
    Strict-Transport-Security: max-age=31536000
    X-Frame-Options: deny
""",
        )
    )
    assert config.users == {"alice": alice.encode()}
    assert config.headers == {
        "Strict-Transport-Security": "max-age=31536000",
        "X-Frame-Options": "deny",
    }
    assert config.tls is not None
    assert config.tls.cert_pem == pki.server.read_bytes()
    assert config.tls.key_pem == pki.server_key.read_bytes()
    assert config.tls.client_ca_pem == pki.ca.read_text()
    assert config.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert config.tls.min_version == ssl.TLSVersion.TLSv1_3
    assert config.tls.max_version == ssl.TLSVersion.TLSv1_3


def test_inline_pem_and_empty_file(pki: PKI, tmp_path: Path) -> None:
    indent = "\n    "
    cert = pki.server.read_text().strip().replace("\n", indent)
    key = pki.server_key.read_text().strip().replace("\n", indent)
    config = load_web_config(
        write(
            tmp_path / "w.yml", f"tls_server_config:\n  cert: |\n    {cert}\n  key: |\n    {key}\n"
        )
    )
    assert config.tls is not None and config.tls.cert_pem.strip() == pki.server.read_bytes().strip()
    empty = load_web_config(write(tmp_path / "empty.yml", "# nothing configured\n"))
    assert empty.tls is None and not empty.users and not empty.headers


TLS = "tls_server_config:\n  cert_file: server.pem\n  key_file: server_key.pem\n"
BAD_CONFIGS = {
    "unknown top-level key": ("web:\n  x: 1\n", "unknown key 'web'"),
    "unknown tls key": (TLS + "  certfile: x\n", "unknown key 'tls_server_config.certfile'"),
    "bad client_auth_type": (
        TLS + "  client_auth_type: Sometimes\n",
        "client_auth_type: invalid value 'Sometimes'",
    ),
    "unverified client certs": (
        TLS + "  client_auth_type: RequireAnyClientCert\n",
        "RequireAnyClientCert (accept unverified client certificates) is not supported",
    ),
    "verify without CA": (
        TLS + "  client_auth_type: RequireAndVerifyClientCert\n",
        "RequireAndVerifyClientCert needs client_ca_file",
    ),
    "CA without client auth": (
        TLS + "  client_ca_file: ca.pem\n",
        "client CAs are configured but client_auth_type is NoClientCert",
    ),
    "bad min_version": (TLS + "  min_version: TLS14\n", "unknown TLS version 'TLS14'"),
    "min above max": (
        TLS + "  min_version: TLS13\n  max_version: TLS12\n",
        "min_version is higher than max_version",
    ),
    "missing key": (
        "tls_server_config:\n  cert_file: server.pem\n",
        "missing one of key or key_file",
    ),
    "unreadable cert": (
        "tls_server_config:\n  cert_file: nope.pem\n  key_file: server_key.pem\n",
        "cannot read tls_server_config.cert_file",
    ),
    "cert is not PEM": (
        "tls_server_config:\n  cert_file: ca_key.pem\n  key_file: server_key.pem\n",
        "cannot load certificate/key",
    ),
    "key does not match": (
        "tls_server_config:\n  cert_file: server.pem\n  key_file: client_key.pem\n",
        "KEY_VALUES_MISMATCH",
    ),
    "CA file without certificates": (
        TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca_key.pem\n",
        "no usable CA certificate",
    ),
    "non-bcrypt hash": (
        "basic_auth_users:\n  alice: secret\n",
        "basic_auth_users.alice: not a bcrypt",
    ),
    "cost out of range": (
        "basic_auth_users:\n  alice: $2b$03$" + "a" * 53 + "\n",
        "basic_auth_users.alice: not a bcrypt",
    ),
    "hash with invalid salt": (
        "basic_auth_users:\n  alice: $2b$10$" + "z" * 53 + "\n",
        "basic_auth_users.alice: invalid bcrypt hash: Invalid salt",
    ),
    "user with colon": (
        "basic_auth_users:\n  'a:b': $2b$04$" + "a" * 53 + "\n",
        "invalid user name 'a:b'",
    ),
    "header toolkit rejects": (
        "http_server_config:\n  headers:\n    Content-Type: foo\n",
        "header 'Content-Type' can not be configured",
    ),
    "header value toolkit rejects": (
        "http_server_config:\n  headers:\n    X-Frame-Options: foo\n",
        "X-Frame-Options: invalid value 'foo'",
    ),
    "http2 not a bool": ("http_server_config:\n  http2: maybe\n", "http2 must be true or false"),
    "duplicate key": (
        "basic_auth_users: {}\nbasic_auth_users: {}\n",
        "duplicate key 'basic_auth_users'",
    ),
    "unsupported rate_limit": ("rate_limit:\n  burst: 1\n", "use --web.max-requests"),
    "unsupported SAN check": (
        TLS + "  client_allowed_sans: [a]\n",
        "client_allowed_sans is not supported",
    ),
    "not YAML": ("basic_auth_users: [\n", "invalid YAML at line 2, column 1"),
    "deeply nested": (f"basic_auth_users: {'[' * 5000}{']' * 5000}\n", "nested deeper than 32"),
    "not a mapping": ("- a\n- b\n", "the top level must be a mapping"),
    "list as a key": ("? [a, b]\n: 1\n", "a mapping key must be a plain value (line 1)"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_invalid_configs_name_the_problem(case: str, pki: PKI) -> None:
    text, message = BAD_CONFIGS[case]
    path = write(pki.root / f"bad-{case.replace(' ', '-')}.yml", text)
    with pytest.raises(WebConfigError) as info:
        load_web_config(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)  # one log line


def run_exporter_once(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the exporter expecting it to exit on its own (a startup error)."""
    return exporter_exit(["--collector.disable-defaults", *args], {"PATH": fake_path()})


def test_invalid_file_is_a_startup_error_without_traceback(tmp_path: Path) -> None:
    bad = write(tmp_path / "web.yml", "basic_auth_users:\n  alice: plaintext\n")
    result = run_exporter_once(
        f"--web.listen-address=127.0.0.1:{free_port()}", f"--web.config.file={bad}"
    )
    assert result.returncode != 0
    assert f"{bad}: basic_auth_users.alice: not a bcrypt hash" in result.stderr
    assert "Traceback" not in result.stderr
    missing = run_exporter_once(
        f"--web.listen-address=127.0.0.1:{free_port()}",
        f"--web.config.file={tmp_path / 'missing.yml'}",
    )
    assert missing.returncode != 0
    assert "missing.yml: cannot read" in missing.stderr and "Traceback" not in missing.stderr


def test_deeply_nested_file_is_one_line_at_startup(tmp_path: Path) -> None:
    deep = write(tmp_path / "web.yml", "basic_auth_users: " + "{a: " * 3000 + "}" * 3000 + "\n")
    result = run_exporter_once(
        f"--web.listen-address=127.0.0.1:{free_port()}", f"--web.config.file={deep}"
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"{deep}: invalid YAML at line 1, column " in result.stderr
    assert "nested deeper than 32 levels" in result.stderr and "Traceback" not in result.stderr


def test_max_requests_flag_rejects_negative() -> None:
    result = run_exporter_once("--web.max-requests=-1")
    assert result.returncode == 2 and "must not be negative" in result.stderr


def test_documented_example_is_valid(pki: PKI, tmp_path: Path) -> None:
    doc = (REPO / "docs" / "security.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    for name, source in (
        ("server.crt", pki.server),
        ("server.key", pki.server_key),
        ("prometheus-ca.crt", pki.ca),
    ):
        (tmp_path / name).write_bytes(source.read_bytes())
    config = load_web_config(write(tmp_path / "web.yml", example))
    assert config.tls is not None and config.tls.client_ca_pem == pki.ca.read_text()
    assert set(config.users) == {"prometheus"}
    assert "Strict-Transport-Security" in config.headers

"""Secret references: parsing, reading env:/file:, and gcp: without its library."""
import sys

import pytest

from groundcot.transforms import secrets
from groundcot.transforms.secrets import SecretError, parse, resolve

VALUE = "sk-groundcot-unit-SECRET-91ab"


def test_references_parse_and_gcp_defaults_to_the_latest_version():
    assert parse("env:OPENAI_API_KEY") == ("env", "OPENAI_API_KEY")
    assert parse("file:/run/secrets/key") == ("file", "/run/secrets/key")
    assert parse("gcp:projects/p-1/secrets/openai") == ("gcp", "projects/p-1/secrets/openai/versions/latest")
    assert parse("gcp:projects/p/secrets/s/versions/3") == ("gcp", "projects/p/secrets/s/versions/3")


@pytest.mark.parametrize("ref", ["OPENAI_API_KEY", "vault:kv/key", "env:", "gcp:projects/p/secrets",
                                 "gcp:p/secrets/s", "gcp:projects/p/secrets/s/versions/"])
def test_a_malformed_reference_is_named_with_the_forms_allowed(ref):
    with pytest.raises(SecretError, match="secret reference") as err:
        parse(ref)
    assert repr(ref) in str(err.value)


def test_env_and_file_secrets_are_read_and_errors_never_hold_a_value(tmp_path, monkeypatch):
    monkeypatch.setenv("GC_UNIT_SECRET", VALUE)
    assert resolve("env:GC_UNIT_SECRET") == VALUE
    key = tmp_path / "key"
    key.write_text(f"  {VALUE}\n")
    assert resolve(f"file:{key}") == VALUE  # whitespace dropped
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for ref, reason in [("env:GC_UNIT_UNSET", "the environment variable GC_UNIT_UNSET is not set"),
                        (f"file:{tmp_path / 'missing'}", "cannot read the file (FileNotFoundError)"),
                        (f"file:{empty}", "the file is empty")]:
        with pytest.raises(SecretError) as err:
            resolve(ref)
        assert str(err.value) == f"secret {ref}: {reason}"


def test_a_secret_is_read_once_per_process(tmp_path):
    key = tmp_path / "rotating"
    key.write_text(VALUE)
    assert resolve(f"file:{key}") == VALUE
    key.write_text("changed")
    assert resolve(f"file:{key}") == VALUE  # the worker keeps the key it started with


def test_gcp_without_credentials_is_one_line_naming_the_reference(tmp_path, monkeypatch):
    pytest.importorskip("google.cloud.secretmanager")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))
    with pytest.raises(SecretError) as err:
        resolve("gcp:projects/p/secrets/s/versions/2")
    assert str(err.value) == ("secret gcp:projects/p/secrets/s/versions/2: Secret Manager refused or failed "
                              "(DefaultCredentialsError)")


def test_gcp_without_the_library_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.cloud.secretmanager", None)  # import fails as when not installed
    with pytest.raises(SecretError) as err:
        resolve("gcp:projects/p/secrets/s")
    assert str(err.value) == ("secret gcp:projects/p/secrets/s: gcp: references need google-cloud-secret-manager "
                              "where they are read (the workers, and this machine for --check): "
                              "pip install 'groundcot[gcp]'")


def test_check_reads_here_only_where_workers_share_this_machine(tmp_path, monkeypatch):
    missing = f"file:{tmp_path / 'on-the-workers-only'}"
    assert secrets.check(missing, here=False) == f"{missing} (read by each worker; not checkable from here)"
    with pytest.raises(SecretError, match="cannot read the file"):
        secrets.check(missing, here=True)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))  # no credentials here
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    if secrets.has_gcp_credentials() is not False:
        pytest.fail("credentials found despite GOOGLE_APPLICATION_CREDENTIALS pointing nowhere")
    pytest.importorskip("google.cloud.secretmanager")
    assert secrets.check("gcp:projects/p/secrets/s", here=False) == (
        "gcp:projects/p/secrets/s (read by each worker; not checked: no Google credentials here)")

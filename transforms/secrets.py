"""Secrets named by reference and read where they are used: on each worker, never in the job graph.

A reference (``teacher.connection.api_key_secret``) is one of:

- ``env:NAME``: the environment variable ``NAME`` of the process that reads it;
- ``file:/path``: the contents of a file (surrounding whitespace dropped), e.g. a mounted
  Kubernetes or Docker secret;
- ``gcp:projects/P/secrets/S`` or ``gcp:projects/P/secrets/S/versions/V`` (``latest`` when no
  version is given): Google Secret Manager, read with the process's Google credentials (on Dataflow,
  the worker service account) through ``google-cloud-secret-manager`` (in ``groundcot[gcp]``).

Only the reference travels in the config and the pipeline; ``resolve`` reads the value once per
process. Errors name the reference and the reason, never a value.
"""
from __future__ import annotations

import importlib
import os
import re
import threading

SCHEMES = ("env", "file", "gcp")
SECRET_KEY = re.compile(r"(api[-_]?key|token|secret|password|passwd|credential|authorization)", re.IGNORECASE)
URL_USERINFO = re.compile(r"(://)[^/@\s?#]+@")  # user:password@host
URL_PARAM = re.compile(r"([?&;])([^=&;#\s]+)=([^&;#\s]*)")  # name=value in a URL's query
QUERY_SECRET = re.compile(r"key|sig|signature|code|auth", re.IGNORECASE)  # whole names, besides SECRET_KEY
REMOVED = "<removed>"
GCP_NAME = re.compile(r"projects/([^/\s]+)/secrets/([^/\s]+)(?:/versions/([^/\s]+))?")
_VALUES: dict[str, str] = {}
_LOCK = threading.Lock()


class SecretError(RuntimeError):
    """A secret that cannot be read; the message names the reference, never a value."""


def parse(ref: str) -> tuple[str, str]:
    """(scheme, target) of a reference; gcp targets come back with their version.

    >>> parse("gcp:projects/p1/secrets/openai")
    ('gcp', 'projects/p1/secrets/openai/versions/latest')
    >>> parse("env:OPENAI_API_KEY")
    ('env', 'OPENAI_API_KEY')
    """
    scheme, sep, target = ref.partition(":")
    if not sep or scheme not in SCHEMES or not target.strip():
        raise SecretError(f"secret reference {ref!r}: use env:NAME, file:/path or "
                          "gcp:projects/P/secrets/S[/versions/V]")
    if scheme == "gcp":
        match = GCP_NAME.fullmatch(target)
        if not match:
            raise SecretError(f"secret reference {ref!r}: a gcp secret is projects/P/secrets/S[/versions/V]")
        project, secret, version = match.groups()
        target = f"projects/{project}/secrets/{secret}/versions/{version or 'latest'}"
    return scheme, target


def resolve(ref: str) -> str:
    """The secret's value, read once per process."""
    with _LOCK:
        if ref not in _VALUES:
            _VALUES[ref] = read(*parse(ref), ref)
        return _VALUES[ref]


def read(scheme: str, target: str, ref: str) -> str:
    if scheme == "env":
        value = os.environ.get(target)
        if not value:
            raise SecretError(f"secret {ref}: the environment variable {target} is not set")
        return value
    if scheme == "file":
        try:
            with open(os.path.expanduser(target), encoding="utf-8") as handle:
                value = handle.read().strip()
        except (OSError, UnicodeDecodeError) as err:
            raise SecretError(f"secret {ref}: cannot read the file ({type(err).__name__})") from None
        if not value:
            raise SecretError(f"secret {ref}: the file is empty")
        return value
    secretmanager = gcp_library(ref)
    try:  # credentials, permission, a missing secret, the network: one line, no value
        client = secretmanager.SecretManagerServiceClient()
        reply = client.access_secret_version(request={"name": target}, timeout=30)
        return reply.payload.data.decode("utf-8").strip()
    except Exception as err:  # noqa: BLE001
        reason = str(getattr(err, "message", "") or type(err).__name__).splitlines()[0][:200]
        raise SecretError(f"secret {ref}: Secret Manager refused or failed ({reason})") from None


def gcp_library(ref: str):
    """The Secret Manager library, or a clear error where it is missing."""
    try:
        secretmanager = importlib.import_module("google.cloud.secretmanager")
    except ImportError:
        raise SecretError(f"secret {ref}: gcp: references need google-cloud-secret-manager where they are read "
                          "(the workers, and this machine for --check): pip install 'groundcot[gcp]'") from None
    return secretmanager


def has_gcp_credentials() -> bool:
    """Whether Google's default credentials are found here (without a network call)."""
    try:
        import google.auth

        google.auth.default()
        return True
    except Exception:  # noqa: BLE001 - missing library or no credentials
        return False


def check(ref: str, here: bool) -> str:
    """Check a reference from the driver; the plan's line about it. Raises SecretError.

    ``here``: the workers share this machine (local runners), so the secret must be readable now.
    On a cluster, ``env:`` and ``file:`` are the workers' own and only their form is checked;
    a ``gcp:`` secret is read here when this machine has Google credentials.
    """
    scheme = parse(ref)[0]
    if here:
        resolve(ref)
        return f"{ref} (read here)"
    if scheme != "gcp":
        return f"{ref} (read by each worker; not checkable from here)"
    gcp_library(ref)
    if not has_gcp_credentials():
        return f"{ref} (read by each worker; not checked: no Google credentials here)"
    resolve(ref)
    return f"{ref} (read here and by each worker)"


def scrub_url(text: str) -> str:
    """``text`` without credentials in any URL it holds: ``user:password@`` and query values of keys
    that name a secret (``?api-key=...``, ``&sig=...``)."""
    if "://" not in text:
        return text
    text = URL_USERINFO.sub(r"\1", text)
    return URL_PARAM.sub(lambda m: f"{m[1]}{m[2]}={REMOVED}" if m[3] and is_secret_param(m[2]) else m[0], text)


def is_secret_param(name: str) -> bool:
    return bool(SECRET_KEY.search(name) or QUERY_SECRET.fullmatch(name))

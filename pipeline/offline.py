"""``--check`` on a machine that cannot reach a bucket: which paths it leaves to the workers.

Listing ``gs://`` without Google credentials makes the GCS client retry for minutes and then
fail. ``--check`` skips such paths (sources, the output folder) and says so in the plan; a real
run lists them as always, and needs the credentials it submits with.
"""
from __future__ import annotations

from apache_beam.io.filesystems import FileSystems

from groundcot.transforms.secrets import has_gcp_credentials


def unlistable(path: str) -> str | None:
    """Why this machine cannot list ``path`` without waiting on the network, or None when it can try.

    Only bucket URLs whose filesystem is installed but whose credentials are missing: a missing
    filesystem (no ``groundcot[gcp]``) fails at once with its own error and is not skipped.
    """
    if not path.startswith("gs://"):
        return None
    try:
        FileSystems.get_filesystem(path)
    except ValueError:
        return None
    return None if has_gcp_credentials() else "no Google credentials here"

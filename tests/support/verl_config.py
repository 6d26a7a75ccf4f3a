"""verl's config as Hydra composes it, for the tests that check groundcot's verl commands against
verl's own files (tests/fixtures/verl/)."""
from __future__ import annotations

import functools
import re

import yaml

from support import REPO


class Cfg(dict):
    """Attribute access over a nested dict, the part of OmegaConf's DictConfig verl's loader uses."""

    def __getattr__(self, name):
        value = self[name]
        return Cfg(value) if isinstance(value, dict) else value

    def get(self, key, default=None):
        value = super().get(key, default)
        return Cfg(value) if isinstance(value, dict) else value


def override(config: dict, arg: str) -> None:
    """One Hydra command-line override: ``key=value`` changes a key the config has (else Hydra
    refuses it), ``+key=value`` adds one it lacks."""
    add = arg.startswith("+")
    key, _, raw = arg.lstrip("+").partition("=")
    *parents, last = key.split(".")
    node = config
    for p in parents:
        if p not in node and not add:
            raise KeyError(f"Could not override '{key}': '{p}' is not in the config")
        node = node.setdefault(p, {})
    if add == (last in node):
        raise KeyError(f"Could not {'append' if add else 'override'} '{key}'")
    node[last] = yaml.safe_load(raw)


def readme_overrides(containing: str = "verl.trainer.main_ppo") -> list[str]:
    """The overrides of the README's first verl command whose block holds ``containing``, with the
    path commands (``$(python -c "...")``) filled in as a shell would."""
    text = (REPO / "README.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
                 if "verl.trainer.main_ppo" in b and containing in b)
    block = re.sub(r"\$\(python -c \"([^\"]*)\"\)", lambda m: python_c(m.group(1)), block)
    args = [t for line in block.splitlines() for t in line.split("#")[0].split() if t not in ("\\", "...")]
    return args[args.index("verl.trainer.main_ppo") + 1:]


@functools.cache
def python_c(code: str) -> str:
    """What ``$(python -c CODE)`` gives: its output, stripped (each command run once per test process)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()

"""A short summary next to the checkpoint: the job, the data, the last logged metrics."""
from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path


def write_summary(output_dir: str, job, trainer, rows: int) -> dict:
    history = trainer.state.log_history
    logged = [h for h in history if "loss" in h or any(k.startswith("rewards/") for k in h)]
    last = logged[-1] if logged else {}
    summary = {
        "kind": type(job).__name__.replace("Job", "").lower(), "model": job.model, "rows": rows,
        "global_step": trainer.state.global_step,
        "reward_means": {k: v for k, v in last.items() if k.startswith("rewards/") and k.endswith("/mean")},
        "last_log": last, "log_history": history,
        "config": job.model_dump(mode="json"),
        "versions": {"python": platform.python_version(),
                     **{p: metadata.version(p) for p in ("trl", "peft", "transformers", "torch")}},
    }
    Path(output_dir, "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary

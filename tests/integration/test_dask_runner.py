"""``runner.name: dask`` on a dask.distributed cluster this test starts on loopback (a scheduler and two
worker processes), through the real CLI with a relative ``-o``: the same (id, style) rows, depth maps
(within one level), rejections, stats.json totals and counters as the local runner (the session's
``local_reference``), the run in the folder ``-o`` names (relative to the driver's working folder), and
the workers' versions recorded. The driver polls the running job every 0.2 s, as it does a long job: it
logs the counters of the bundles already finished and sees the job end. The Read of the readers is split
into small byte ranges (five over the two input files, each cut mid-line), so the records are those of
the splittable reading."""
import logging
from pathlib import Path

import pytest

from groundcot.pipeline.stats import here

from support import REPO
from support.runs import MODEL_MODULES, demo_with_models, outcomes, same_outcomes

pytestmark = pytest.mark.slow  # a cluster of two worker processes, each loading the models

TOTALS = ("records_in", "written", "rejected", "rejected_by_reason", "balanced", "filtered_out", "by_source",
          "by_style", "counters", "teacher", "cache")


@pytest.fixture(scope="module")
def cluster():
    # imported here, not at collection: every xdist worker collects this module, one runs it
    pytest.importorskip("distributed")
    import dask
    from dask.distributed import LocalCluster
    from distributed.utils import get_mp_context

    # as dask's own tests do: the workers are forked from a server that imported the heavy modules once
    # (each worker still unpickles and imports groundcot's steps itself)
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        get_mp_context().set_forkserver_preload(["distributed", "numpy", "pandas", "apache_beam", *MODEL_MODULES])
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as local:
            yield local


def test_dask_cluster_with_two_workers_matches_the_local_runner(cluster, worker_image_models, local_reference,
                                                                tmp_path, monkeypatch, caplog):
    from groundcot.pipeline import dask_runner

    models, (local_out, local) = worker_image_models, local_reference  # the session's local run of this job
    monkeypatch.setattr(dask_runner, "BUNDLE_BYTES", 1000)  # 2 and 3 byte ranges in the 1.7 and 2.9 kB files
    monkeypatch.chdir(tmp_path)
    runner = (f"runner={{name: dask, log_every_s: 0.2, shared_paths: ['{REPO / 'jobs'}', '{tmp_path}'], "
              f"options: {{dask_client_address: '{cluster.scheduler_address}'}}}}")  # Beam's flag name
    # the driver polls the job's state every 0.2 s: it must see the job end (it polled forever before)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="groundcot"):
        on_dask = demo_with_models(Path("out/dask"), models, 3, "--set", runner)  # relative: made absolute on the driver
    # while it ran, the counters of the bundles already finished (the read is done long before the end)
    assert any(r.getMessage().startswith("progress: read 3/3 records") for r in caplog.records)
    out = tmp_path / "out" / "dask"
    assert {k: on_dask[k] for k in TOTALS} == {k: local[k] for k in TOTALS}
    assert on_dask["written"] > 0 and on_dask["counters"]["validate.ok"] == on_dask["written"]
    assert same_outcomes(outcomes(out), outcomes(local_out))
    assert on_dask["worker_versions"] == [here()]
    assert on_dask["config"]["output"]["dir"] == str(tmp_path / "out" / "demo")  # absolute: the driver's folder

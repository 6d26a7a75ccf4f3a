"""Checks for cluster runners through the real CLI: per-runner paths, ``--check`` and its plan, stats that hold."""
import json
from collections import Counter

import pytest
from apache_beam.io.filesystems import FileSystems

from groundcot.pipeline import run as run_module
from groundcot.pipeline.cli import main
from groundcot.pipeline.stats import CountsUnreadable, read_counts

from support import one_line, viscot_line
from support.fake_openai import FakeOpenAI

FAST = ["--set", "depth.enabled=false", "--set", "masks.enabled=false"]
DATAFLOW = ("runner: {name: DataflowRunner, options: {project: demo-project, region: europe-west4, "
            "temp_location: 'gs://groundcot-test/tmp'}}\n")
BUCKET = ("sources: [{kind: viscot, path: 'gs://groundcot-test/meta/*_cot_train.jsonl', "
          "image_root: 'gs://groundcot-test/images'}]\n"
          "output: {dir: 'gs://groundcot-test/out'}\ncache: 'gs://groundcot-test/cache'\n")


@pytest.fixture
def job(toy_job):
    return toy_job


def shared(runner: str, folder) -> str:
    """The runner section with ``folder`` declared as seen by the workers."""
    return runner.replace("options:", f"shared_paths: ['{folder}'], options:")


def gcs_usable() -> bool:
    try:
        FileSystems.get_filesystem("gs://groundcot-test/x")
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("override, key", [
    ("sources.0.path=/data/meta/toy_cot_train.jsonl", "sources.0.path"),
    ("sources.0.image_root=images", "sources.0.image_root"),
    ("cache=/mnt/cache", "cache"),
    ("output.dir=out/local", "output.dir"),
])
def test_dataflow_with_a_local_path_fails_check_naming_the_key(tmp_path, capfd, override, key):
    config = tmp_path / "dataflow.yaml"
    config.write_text(BUCKET + DATAFLOW)
    assert main(["generate", str(config), "--check", *FAST, "--set", override]) == 2
    line = one_line(capfd)
    assert line.startswith(f"groundcot: config error: {key}: ")
    assert "is a local path, which DataflowRunner's workers cannot read" in line
    assert "runner.shared_paths" in line
    assert not list(tmp_path.glob("out*"))


def test_a_run_on_dataflow_with_a_local_output_stops_before_anything(job, capfd):
    config, out = job
    config.write_text(config.read_text().replace("toy_cot_train.jsonl", "'gs://groundcot-test/meta.jsonl'")
                      .replace("image_root: images", "image_root: 'gs://groundcot-test/images'") + DATAFLOW)
    assert main(["generate", str(config), "-o", str(out), *FAST]) == 2
    assert one_line(capfd).startswith(f"groundcot: config error: --out: {out} is a local path")
    assert not out.exists()


def test_dataflow_with_bucket_paths_passes_the_path_checks(tmp_path, capfd):
    """No network here: the bucket listing is the first check that cannot pass, and says why."""
    if gcs_usable():
        pytest.skip("apache-beam[gcp] is installed: listing gs:// would need the network")
    config = tmp_path / "dataflow.yaml"
    config.write_text(BUCKET + DATAFLOW)
    assert main(["generate", str(config), "--check", *FAST]) == 2
    line = one_line(capfd)
    assert line.startswith("groundcot: config error: sources.0.path: cannot list "
                           "gs://groundcot-test/meta/*_cot_train.jsonl: ")
    assert "apache-beam[gcp]" in line and "local path" not in line


def test_shared_paths_let_local_paths_through_and_check_prints_the_plan(job, capsys):
    config, out = job
    config.write_text(config.read_text() + shared(DATAFLOW, config.parent))
    assert main(["generate", str(config), "-o", str(out), "--check", *FAST,
                 "--set", "runner.options.num_workers=4"]) == 0
    plan = capsys.readouterr().out
    assert "runner: DataflowRunner, num_workers=4 (workers see only bucket paths and runner.shared_paths)" in plan
    assert "records: 6 (lines of the jsonl sources" in plan
    assert "depth: off" in plan and "masks: off" in plan
    assert not out.exists()


def test_an_output_bucket_this_machine_cannot_list_is_one_line(job, capfd):
    if gcs_usable():
        pytest.skip("apache-beam[gcp] is installed: listing gs:// would need the network")
    config, _ = job
    config.write_text(config.read_text() + shared(DATAFLOW, config.parent))
    assert main(["generate", str(config), "-o", "gs://groundcot-test/out", "--check", *FAST]) == 2
    line = one_line(capfd)
    assert line.startswith("groundcot: config error: --out: cannot list gs://groundcot-test/out: ")
    assert "apache-beam[gcp]" in line


def test_fallback_models_are_refused_on_a_cluster_runner(job, capfd):
    config, out = job
    config.write_text(config.read_text() + shared(DATAFLOW, config.parent))
    assert main(["generate", str(config), "-o", str(out), "--check", "--set", "depth.fallback=tiny_random"]) == 2
    line = one_line(capfd)
    assert line.startswith("groundcot: config error: depth.fallback: tiny_random cannot be used on DataflowRunner")
    assert "offline demo" in line


def test_portable_runner_needs_shared_paths_unless_loopback(job, capfd):
    config, out = job
    portable = "runner: {name: PortableRunner, options: {job_endpoint: 'localhost:1', environment_type: %s}}\n"
    base = config.read_text()
    config.write_text(base + portable % "EXTERNAL")
    assert main(["generate", str(config), "-o", str(out), "--check", *FAST]) == 2
    line = one_line(capfd)
    assert line.startswith("groundcot: config error: sources.0.path: ") and "PortableRunner's workers" in line
    config.write_text(base + portable % "LOOPBACK")
    assert main(["generate", str(config), "-o", str(out), "--check", *FAST]) == 0
    assert not out.exists()


def test_check_on_the_demo_prints_the_plan_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "jobs/demo.yaml", "--check"]) == 0
    plan = capsys.readouterr().out
    for part in ("sources:\n  0: viscot ", "styles: sif, mgpo, aperture, textual",
                 "depth: on, ", "Depth-Anything-V2-Small-hf", "masks: on, ", "sam2.1-hiera-tiny",
                 "teacher: template", "runner: local, 1 worker process", "output: out/demo",
                 "records: 22 ", "teacher calls: 0 (template teacher"):
        assert part in plan
    assert list(tmp_path.iterdir()) == []


def test_check_estimates_teacher_calls_and_checks_the_endpoint(job, capfd):
    config, out = job
    base = config.read_text()
    with FakeOpenAI() as fake:
        config.write_text(base + f"teacher: {{kind: openai, connection: {{base_url: '{fake.base_url}', model: fake-vlm, "
                                 "api_key_env: null}}\nstyles: [sif, textual]\n")
        assert main(["generate", str(config), "-o", str(out), "--check", *FAST, "--limit", "5"]) == 0
        plan = capfd.readouterr().out
        assert f"teacher: openai, model fake-vlm at {fake.base_url}" in plan
        assert "teacher calls: about 10 (5 records x 2 styles); up to 20 with re-asks" in plan
        assert fake.health_checks == 1 and fake.requests == []  # checked, never asked
    # the endpoint is gone now: one line, exit 2, nothing written
    assert main(["generate", str(config), "-o", str(out), "--check", *FAST]) == 2
    assert "teacher endpoint" in one_line(capfd) and not out.exists()


def test_check_names_an_unset_api_key(job, capfd, monkeypatch):
    config, out = job
    monkeypatch.delenv("GROUNDCOT_TEST_KEY", raising=False)
    config.write_text(config.read_text() + "teacher: {kind: openai, connection: {base_url: 'http://127.0.0.1:9/v1', "
                                           "model: m, api_key_env: GROUNDCOT_TEST_KEY}}\n")
    assert main(["generate", str(config), "-o", str(out), "--check", *FAST]) == 2
    assert one_line(capfd) == ("groundcot: teacher.connection.api_key_env: the environment variable "
                               "GROUNDCOT_TEST_KEY is not set")


def test_a_run_whose_counts_cannot_be_read_back_fails_instead_of_reporting_zero(job, capfd, monkeypatch):
    """Counts written where the driver cannot read them (a worker-local path) while Beam's counters show work."""
    config, out = job
    monkeypatch.setattr(run_module, "read_counts", lambda staging: Counter())
    assert main(["generate", str(config), "-o", str(out), *FAST]) == 1
    line = one_line(capfd)
    assert "say 0 records in and 0 written, but Beam's counters show 6 records through the image stage" in line
    assert "worker-local output path" in line
    assert not (out / "stats.json").exists()


def test_an_empty_counts_location_is_an_error(tmp_path):
    with pytest.raises(CountsUnreadable, match="holds no counts file"):
        read_counts(str(tmp_path))
    (tmp_path / "_counts").mkdir()
    (tmp_path / "_counts" / "counts-00000-of-00001.jsonl").write_text(json.dumps(["viscot", "in", "", "", 3]) + "\n")
    assert read_counts(str(tmp_path)) == {("viscot", "in", "", ""): 3}


def test_the_image_check_samples_the_records_with_the_smallest_ids(tmp_path):
    """--check looks at the first records as ``limit`` would take them, also when the source has many
    more than it keeps (its sample is trimmed as it reads)."""
    from groundcot.pipeline.config import load_config
    from groundcot.pipeline.preflight import IMAGE_SAMPLE, sample_records

    (tmp_path / "many_cot_train.jsonl").write_text("".join(
        viscot_line(f"img{i}.png", 64, 48, [[1, 1, 9, 9]], question=f"Q{i}?") + "\n" for i in range(100)))
    (tmp_path / "job.yaml").write_text("sources: [{kind: viscot, path: many_cot_train.jsonl, image_root: .}]\n")
    src = load_config(str(tmp_path / "job.yaml")).sources[0]
    every = sorted(r.id for r in sample_records(src, n=1000))  # 100 < 4 x 1000: nothing trimmed
    assert len(every) == 100
    assert [r.id for r in sample_records(src)] == every[:IMAGE_SAMPLE]

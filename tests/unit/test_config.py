import pytest

from groundcot.pipeline.cli import main
from groundcot.pipeline.config import ConfigError, load_config

from support import REPO

DEMO = str(REPO / "jobs" / "demo.yaml")


def test_demo_config_loads_and_paths_resolve_to_the_config_folder():
    cfg = load_config(DEMO)
    assert cfg.sources[0].image_root == str(REPO / "jobs" / "demo_data" / "images")
    assert cfg.depth.fallback == "tiny_random"


def test_overrides_use_dotted_keys_and_yaml_values():
    cfg = load_config(DEMO, ["depth.enabled=false", "expand.steps=3", "sources.0.limit=4", "validate.min_hiou=0.8"])
    assert cfg.depth.enabled is False and cfg.expand.steps == 3
    assert cfg.sources[0].limit == 4 and cfg.validate_.min_hiou == 0.8


@pytest.mark.parametrize("override, names", [
    ("depth.batchsize=4", "depth.batchsize"),
    ("depth.batch_size=abc", "depth.batch_size"),
    ("expand.distractor_prob=1.5", "expand.distractor_prob"),
    ("teacher.kind=gpt", "teacher.kind"),
    ("validate.min_hiou=-1", "validate.min_hiou"),
    ("sources.0.kind=nope", "sources.0.kind"),
])
def test_bad_key_or_value_is_one_line_naming_it(override, names):
    with pytest.raises(ConfigError) as err:
        load_config(DEMO, [override])
    message = str(err.value)
    assert names in message and "\n" not in message


def test_bad_override_syntax_and_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(DEMO, ["depth.enabled"])
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(str(tmp_path / "missing.yaml"))
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="sources"):
        load_config(str(tmp_path / "empty.yaml"))


def test_production_default_never_falls_back(tmp_path):
    (tmp_path / "job.yaml").write_text("sources: [{kind: viscot, path: a.jsonl, image_root: imgs}]\n")
    assert load_config(str(tmp_path / "job.yaml")).depth.fallback == "none"


def test_only_the_demo_may_fall_back():
    for job in sorted((REPO / "jobs").glob("*.yaml")):
        if job.name != "demo.yaml" and not job.name.startswith("train_"):
            assert load_config(str(job)).depth.fallback == "none", job.name


def test_a_config_may_name_a_bundled_job(tmp_path, monkeypatch):
    from groundcot.pipeline.cli import bundled_jobs, resolve_config

    monkeypatch.chdir(tmp_path)
    bundled = str(bundled_jobs() / "train_sft.yaml")
    assert all(resolve_config(n) == bundled for n in ("jobs/train_sft.yaml", "train_sft.yaml", "train_sft"))
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "train_sft.yaml").write_text("model: mine\n")
    assert resolve_config("jobs/train_sft.yaml") == "jobs/train_sft.yaml"  # a file that exists comes first
    for name in ("nope", "other/train_sft.yaml", str(tmp_path / "train_sft.yaml")):
        with pytest.raises(ConfigError, match="no such file, and no bundled job") as err:
            resolve_config(name)
        assert "demo, flickr30k" in str(err.value) and "\n" not in str(err.value)


def test_a_key_written_twice_is_refused_with_file_and_line(tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text("sources: [{kind: viscot, path: x.jsonl, image_root: .}]\n"
                      "teacher: {kind: template}\n"
                      "teacher: {kind: openai, base_url: 'http://127.0.0.1:9/v1', model: m}\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(config))
    assert str(err.value).startswith(f"{config}:3:1: key 'teacher' is written twice")
    assert "\n" not in str(err.value)


def test_a_yaml_syntax_error_names_the_file_and_line_not_a_unicode_string(tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text("sources: [\n  {kind: viscot, path: x\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(config))
    assert str(err.value).startswith(f"{config}:3:1: ") and "<unicode string>" not in str(err.value)


@pytest.mark.parametrize("override, line", [
    ("depth.batchsize=4", "depth.batchsize: unknown key; did you mean batch_size? (got 4)"),
    ("stlyes=[sif]", "stlyes: unknown key; did you mean styles? (got ['sif'])"),
    ("sources.0.imageroot=x", "sources.0.imageroot: unknown key; did you mean image_root? (got 'x')"),
    ("teacher={kind: openai, connection: {base_url: 'http://h/v1', model: m, api_key: k}}",
     "teacher.connection.api_key: unknown key; did you mean api_key_env? (got 'k')"),
    ("prompts.teacher_system.fil=x", "prompts.teacher_system.fil: unknown key; did you mean file? (got 'x')"),
    ("depth.zzz=1", "depth.zzz: unknown key (known: batch_size, device, enabled, fallback, model, preprocess) (got 1)"),
])
def test_a_misspelled_key_gets_a_did_you_mean(override, line, capfd):
    assert main(["generate", DEMO, "--check", "--set", override]) == 2
    assert capfd.readouterr().err == f"groundcot: config error: {DEMO}: {line}\n"


@pytest.mark.parametrize("name, meant", [("spark", "SparkRunner"), ("Localrunner", "local"),
                                         ("dataflow", "DataflowRunner"), ("flnk", "FlinkRunner")])
def test_a_misspelled_runner_gets_the_right_did_you_mean(name, meant, capfd):
    assert main(["generate", DEMO, "--check", "--set", f"runner.name={name}"]) == 2
    err = capfd.readouterr().err
    assert err.startswith(f"groundcot: config error: runner.name: unknown runner {name!r}; did you mean {meant}? ")
    assert err.count("\n") == 1


def test_generate_given_a_training_config_says_so_in_one_line(capfd):
    train = str(REPO / "jobs" / "train_sft.yaml")
    assert main(["generate", train]) == 2
    assert capfd.readouterr().err == (f"groundcot: config error: {train} is a `groundcot train` config (it has data "
                                      f"and output_dir, no sources); run it with `groundcot train sft {train}` "
                                      "(or grpo)\n")
    assert main(["train", "sft", DEMO]) == 2
    assert "is a `groundcot generate` job config" in capfd.readouterr().err


@pytest.mark.parametrize("overrides, names", [
    (["quality.min_score=0.5"], f"{DEMO}: quality: min_score needs critic.enabled"),
    (["quality.critic.enabled=true"],  # the demo's template teacher calls no one
     f"{DEMO}: quality.critic.connection: the template teacher calls no endpoint; give the critic one"),
    (["quality.near_duplicates.max_distance=40"], "quality.near_duplicates.max_distance"),
    (["mix.groups=[{source: viscot, share: 1}, {source: grounded, count: 3}]"], "share or every group a count"),
    (["mix.groups=[{source: viscot}]"], "either share or count"),
    (["mix.groups=[{source: viscot, count: 3}, {source: viscot, count: 2}]"], "select the same records"),
    (["mix.groups=[{difficulty: tricky, share: 1}]"], "mix.groups.0.difficulty"),
    (["mix.groups=[{source: gqa, share: 1}]"], "mix.groups.0.source: 'gqa' is not a source of this job"),
])
def test_a_bad_quality_or_mix_section_is_one_line_naming_it(overrides, names):
    with pytest.raises(ConfigError) as err:
        load_config(DEMO, overrides)
    assert names in str(err.value) and "\n" not in str(err.value)
    assert "Value error" not in str(err.value) and "(got {" not in str(err.value)  # not the whole section back

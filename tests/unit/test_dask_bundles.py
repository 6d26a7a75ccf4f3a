"""The Dask runner's bundles, in this process (no cluster): a step's DoFn is set up once per worker
process and serves its later bundles, a failed bundle's instance is torn down and not used again,
the job's instances are torn down when it ends; a Flatten has as many partitions as its largest
input."""
import pickle

import apache_beam as beam
import pytest

pytest.importorskip("distributed")
import dask.bag as db  # noqa: E402

from groundcot.pipeline import dask_runner  # noqa: E402

EVENTS: list = []


class Counting(beam.DoFn):
    def setup(self):
        EVENTS.append(("setup", id(self)))

    def process(self, item):
        if item == "bad":
            raise ValueError("bad record")
        yield item * 2

    def teardown(self):
        EVENTS.append(("teardown", id(self)))


def bundle(fn, items, job="job-a", label="Step"):
    (pairs, _), = dask_runner.run_bundle(items, pickle.loads(pickle.dumps(fn)), job, label, (), {}, [])
    return [value for _, value in pairs]


def test_a_steps_dofn_is_set_up_once_and_torn_down_when_the_job_ends():
    EVENTS.clear()
    fn = Counting()
    assert bundle(fn, [1, 2]) == [2, 4] and bundle(fn, [3]) == [6]  # each bundle gets its own unpickled copy
    assert [e for e, _ in EVENTS] == ["setup"], "the second bundle reuses the instance set up by the first"
    assert bundle(fn, [4], label="Other") == [8] and [e for e, _ in EVENTS] == ["setup", "setup"], \
        "another step has its own instance"
    with pytest.raises(ValueError):
        bundle(fn, ["bad"])
    assert EVENTS[-1] == ("teardown", EVENTS[0][1]), "the failed bundle's instance is torn down"
    bundle(fn, [5])
    assert EVENTS[-1][0] == "setup", "and a new one set up for the next bundle"
    assert dask_runner.teardown_job("job-b") == 0
    assert dask_runner.teardown_job("job-a") == 2 and [e for e, _ in EVENTS[-2:]] == ["teardown", "teardown"]
    bundle(fn, [6])
    assert EVENTS[-1][0] == "setup", "the job's instances are gone"
    dask_runner.teardown_job("job-a")


def test_flatten_keeps_the_largest_inputs_partitions():
    a, b = db.from_sequence(range(6), npartitions=3), db.from_sequence(range(10, 12), npartitions=2)
    both = dask_runner.flatten([a, b, a])
    assert both.npartitions == 3
    assert sorted(both.compute(scheduler="sync")) == sorted([*range(6), 10, 11, *range(6)])


def test_an_instance_left_idle_too_long_is_torn_down_when_a_later_bundle_starts(monkeypatch):
    EVENTS.clear()
    fn = Counting()
    assert bundle(fn, [1], job="job-c") == [2]
    monkeypatch.setattr(dask_runner._SetUp, "IDLE_S", -1.0)  # every idle instance is now too old
    assert bundle(fn, [2], job="job-c", label="Later") == [4]
    assert [e for e, _ in EVENTS] == ["setup", "teardown", "setup"], "the idle one torn down, a new one set up"
    assert EVENTS[1][1] == EVENTS[0][1]
    monkeypatch.undo()
    assert dask_runner.teardown_job("job-c") == 1  # only the later step's instance was left

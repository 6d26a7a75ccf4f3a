"""The get_dofn_specs memo gives Beam the answers it computed itself, per DoFn object."""
import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate

from groundcot.pipeline.beam_patch import memoize_dofn_specs


class Plain(beam.DoFn):
    def process(self, x):
        yield x


class Counting(beam.DoFn):
    COUNT = userstate.ReadModifyWriteStateSpec("count", VarIntCoder())

    def process(self, kv, count=beam.DoFn.StateParam(COUNT)):
        count.write((count.read() or 0) + 1)
        yield kv


def test_the_memo_answers_as_beam_does_and_keeps_state_working():
    original = getattr(userstate.get_dofn_specs, "__wrapped__", userstate.get_dofn_specs)  # Beam's own
    plain, counting = Plain(), Counting()
    expected = {fn: original(fn) for fn in (plain, counting)}
    memoize_dofn_specs()
    memoize_dofn_specs()  # idempotent: one wrapper
    assert userstate.get_dofn_specs.__wrapped__ is original
    for fn, specs in expected.items():
        assert userstate.get_dofn_specs(fn) == specs and userstate.get_dofn_specs(fn) == specs
    assert userstate.is_stateful_dofn(counting) and not userstate.is_stateful_dofn(plain)
    with beam.Pipeline() as p:  # a stateful DoFn still runs as one on the in-process runner
        counted = p | beam.Create([("a", 1), ("a", 2), ("b", 3)]) | beam.ParDo(Counting())
        assert_that(counted | beam.combiners.Count.Globally(), equal_to([3]))

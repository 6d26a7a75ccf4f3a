"""Each memo of pipeline/beam_patch.py gives Beam the answers it computes itself."""
import base64
import sys

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate

from groundcot.pipeline import beam_patch
from groundcot.pipeline.beam_patch import (
    _Bz2Memo,
    _Recent,
    memoize_dofn_specs,
    memoize_function_args,
    memoize_function_bodies,
    memoize_option_views,
    memoize_pickle_compression,
)


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


def test_option_views_are_beams_views_parsed_once_per_options_and_class():
    from apache_beam.options.pipeline_options import (
        DebugOptions,
        PipelineOptions,
        StandardOptions,
        TypeOptions,
    )

    memoize_option_views()
    original = PipelineOptions.view_as.__wrapped__  # Beam's own
    options = PipelineOptions(flags=["--experiments=a", "--streaming"], pipeline_type_check=False)
    theirs = original(options, TypeOptions)
    first, second = options.view_as(TypeOptions), options.view_as(TypeOptions)
    assert first is not second and first._visible_options is second._visible_options  # kept, not parsed again
    for view in (first, second):
        assert view.get_all_options() == theirs.get_all_options()
        assert view._flags is options._flags and view._all_options is options._all_options
        assert view.pipeline_type_check is False and view.runtime_type_check is False
    assert options.view_as(StandardOptions).streaming and options.view_as(DebugOptions).experiments == ["a"]
    other = PipelineOptions(flags=["--experiments=a", "--streaming"])  # the same flags: a copy of the parse
    again = other.view_as(DebugOptions)
    assert vars(again._visible_options) == vars(original(other, DebugOptions)._visible_options)
    assert again._visible_options is not options.view_as(DebugOptions)._visible_options
    again.experiments.append("b")  # its values are its own
    assert options.view_as(DebugOptions).experiments == ["a"] and other.view_as(DebugOptions).experiments == ["a", "b"]
    second.runtime_type_check = True  # a view writes into the options' values, seen by every view
    assert first.runtime_type_check and options.view_as(TypeOptions).runtime_type_check
    del options._all_options["type_check_strictness"]  # a key gone since is set again, as Beam does
    assert options.view_as(TypeOptions).type_check_strictness == theirs.type_check_strictness
    options._flags.append("--type_check_strictness=ALL_REQUIRED")  # flags that changed are parsed again
    del options._all_options["type_check_strictness"]
    assert options.view_as(TypeOptions).type_check_strictness == "ALL_REQUIRED"

    class OwnInit(PipelineOptions):  # its own __init__ runs on every view
        made = 0

        def __init__(self, flags=None, **kwargs):
            OwnInit.made += 1
            super().__init__(flags, **kwargs)

        @classmethod
        def _add_argparse_args(cls, parser):
            parser.add_argument("--groundcot_test_own_init", default="x")

    assert options.view_as(OwnInit).groundcot_test_own_init == "x" and options.view_as(OwnInit) is not None
    assert OwnInit.made == 2


def test_function_args_memo_answers_as_beam_does_and_follows_new_defaults():
    import functools

    from apache_beam.transforms import core

    memoize_function_args()
    original = core.get_function_args_defaults.__wrapped__

    def plain(a, b=1, *rest, c=2, **more):
        return a

    def wrapper(*args, **kwargs):
        return plain(*args, **kwargs)

    wrapped = functools.wraps(plain)(wrapper)
    fns = [plain, wrapped, functools.partial(plain, 1), len, Counting().process, Plain().process,
           lambda x, count=beam.DoFn.StateParam(Counting.COUNT): x]
    for fn in fns:
        assert core.get_function_args_defaults(fn) == original(fn)
        args, defaults = core.get_function_args_defaults(fn)
        args.append("mine")  # the caller's own lists
        defaults.append("mine")
        assert core.get_function_args_defaults(fn) == original(fn)
    plain.__defaults__ = (5,)  # new defaults: asked again
    assert core.get_function_args_defaults(plain) == original(plain) == (["a", "b"], [5])


def test_pickle_compression_memo_gives_bz2s_bytes():
    import bz2

    from apache_beam.internal import cloudpickle_pickler, pickler

    memoize_pickle_compression()
    memo = cloudpickle_pickler.bz2
    assert isinstance(memo, _Bz2Memo) and memo.BZ2Compressor is bz2.BZ2Compressor
    small, large = b"groundcot " * 100, bytes(range(256)) * (_Bz2Memo.MAX_BYTES // 256 + 1)
    for data in (small, small, large, b""):
        packed = memo.compress(data, compresslevel=9)
        assert packed == bz2.compress(data, 9) and memo.decompress(packed) == data
        assert memo.decompress(bz2.compress(data, 9)) == data
    assert memo.compress(small, 1) == bz2.compress(small, 1)
    assert memo.packed.get(small) is not None and memo.packed.get(large) is None  # too large: not kept
    fn = Counting()
    assert pickler.loads(pickler.dumps(fn)).COUNT == fn.COUNT
    assert bz2.decompress(base64.b64decode(pickler.dumps(fn))) == cloudpickle_pickler._dumps(fn)

    recent = _Recent(budget=10)
    recent.put(b"ab", b"cd")
    recent.put(b"ef", b"gh")
    recent.put(b"ij", b"kl")  # 12 bytes: the oldest goes
    assert recent.get(b"ab") is None and recent.get(b"ij") == b"kl" and recent.used == 8


def test_function_body_memo_reads_the_source_again_once_its_file_changes(tmp_path, monkeypatch, caplog):
    import importlib
    import logging
    import os

    from apache_beam.transforms import core

    memoize_function_bodies()
    original = core._get_function_body_without_inners.__wrapped__
    module = tmp_path / "groundcot_body_probe.py"
    module.write_text("def process(self, x):\n    yield x\n    return [x]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "groundcot_body_probe", raising=False)  # gone again after the test
    probe = importlib.import_module("groundcot_body_probe")

    class Both(beam.DoFn):
        process = probe.process

    fn = Both().process
    assert core._get_function_body_without_inners(fn) == original(fn) == "yield x\nreturn [x]\n"
    with caplog.at_level(logging.WARNING, logger=core.__name__):  # the warning is still made per ParDo
        beam.ParDo(Both())
        beam.ParDo(Both())
    assert sum("yield and return" in r.getMessage() for r in caplog.records) == 2
    module.write_text("def process(self, x):\n    yield x\n    yield x\n")  # another size: read again
    os.utime(module, ns=(1, 1))
    assert core._get_function_body_without_inners(fn) == original(fn) == "yield x\nyield x\n"
    for fn in (Plain().process, lambda x: x):
        assert core._get_function_body_without_inners(fn) == original(fn)
    for ask in (core._get_function_body_without_inners, original):  # no source: the same error
        with pytest.raises(TypeError):
            ask(len)


def test_apply_installs_every_memo_once():
    from apache_beam.internal import cloudpickle_pickler
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.transforms import core

    beam_patch.apply()
    beam_patch.apply()
    for patched in (userstate.get_dofn_specs, core.get_function_args_defaults, PipelineOptions.view_as,
                    core._get_function_body_without_inners):
        assert patched._groundcot_memo and not getattr(patched.__wrapped__, "_groundcot_memo", False)
    assert isinstance(cloudpickle_pickler.bz2, _Bz2Memo) and not isinstance(cloudpickle_pickler.bz2.module, _Bz2Memo)


def test_groundcot_beam_patches_0_installs_none(monkeypatch):
    from apache_beam.internal import cloudpickle_pickler
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.transforms import core, userstate

    for module, name in ((userstate, "get_dofn_specs"), (core, "get_function_args_defaults"),
                         (PipelineOptions, "view_as"), (core, "_get_function_body_without_inners")):
        monkeypatch.setattr(module, name, getattr(module, name).__wrapped__
                            if hasattr(getattr(module, name), "__wrapped__") else getattr(module, name))
    monkeypatch.setattr(cloudpickle_pickler, "bz2", getattr(cloudpickle_pickler.bz2, "module", cloudpickle_pickler.bz2))
    monkeypatch.setenv("GROUNDCOT_BEAM_PATCHES", "0")
    beam_patch.apply()
    assert not getattr(userstate.get_dofn_specs, "_groundcot_memo", False)
    assert not getattr(PipelineOptions.view_as, "_groundcot_memo", False)
    assert cloudpickle_pickler.bz2.__class__.__name__ != "_Bz2Memo"

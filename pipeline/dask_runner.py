"""``runner.name: dask``: the job as a dask.bag graph on a ``dask.distributed`` cluster.

Beam's own DaskRunner (2.77) cannot run groundcot's graph: it has no translation for ``Read`` (the
readers' byte-range sources), sends every tagged output of a ParDo to each consumer (``Partition``),
drops what a DoFn emits in ``finish_bundle`` (file sinks), computes side inputs inside a task, runs
only the last branch, and reports no metrics. This runner keeps Beam's overrides (Create, Read,
GroupByKey, Flatten, Reshuffle) and translates them itself:

* Read: the source is split on the driver (8 MiB bundles); each bundle is one partition, read
  by the source's own ``read`` (the same records as on every other runner);
* ParDo: one bundle per partition, in a metrics container; its outputs are kept per tag, side inputs
  are whole dask Items (computed once, before the step). A worker process sets up a step's DoFn
  once and reuses it for the step's later bundles (Beam's DoFn contract: a model loads once per
  worker, not per bundle); the job's DoFns are torn down in every worker when it ends;
* Flatten: partition i of the result joins partition i of each input (no more partitions than the
  largest input);
* every branch that ends the graph (the sinks) is computed, and the counters and string sets of
  every bundle are summed into ``result.metrics()``: while the job runs, those of the bundles
  finished (each bundle's metrics are a future of their own, which a worker computes before any
  other task once the bundle is done); once it is done, all.

Options: Beam's DaskOptions (``dask_client_address``, ``dask_scheduler_file``, ``dask_npartitions``);
no address starts a cluster on this machine for the job.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
import uuid
import zlib

import dask
import dask.bag as db
import dask.distributed as ddist
from apache_beam import DoFn, ParDo, WindowInto, pvalue
from apache_beam.metrics.execution import MetricKey, MetricResult, MetricsContainer
from apache_beam.metrics.metric import MetricResults
from apache_beam.metrics.metricbase import MetricName
from apache_beam.pipeline import PipelineVisitor
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, Receiver, _OutputHandler
from apache_beam.runners.dask.dask_runner import DaskOptions
from apache_beam.runners.dask.overrides import (
    _Create,
    _Flatten,
    _GroupAlsoByWindow,
    _GroupByKeyOnly,
    _Read,
    _Reshuffle,
    dask_overrides,
)
from apache_beam.runners.runner import PipelineResult, PipelineRunner, PipelineState
from apache_beam.runners.worker import statesampler
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils import counters
from apache_beam.utils.windowed_value import WindowedValue
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

BUNDLE_BYTES = 8 << 20  # a Read's split size
log = logging.getLogger(__name__)


def windowed(item):
    return item if isinstance(item, WindowedValue) else WindowedValue(item, 0, (GlobalWindow(),))


def plain(item):
    return item.value if isinstance(item, WindowedValue) else item


# --- what runs in a worker ---------------------------------------------------------------------

class _Collect(Receiver):
    def __init__(self, tag, pairs: list):
        self.tag, self.pairs = tag, pairs

    def receive(self, windowed_value):
        self.pairs.append((self.tag, plain(windowed_value)))


class _Receivers(dict):
    def __init__(self):
        super().__init__()
        self.pairs: list = []

    def __missing__(self, tag):
        self[tag] = _Collect(tag, self.pairs)
        return self[tag]


def _metrics(container: MetricsContainer) -> dict:
    """A bundle's counters and string sets as plain data: {(kind, namespace, name): value}."""
    cumulative = container.get_cumulative()
    found = {("counter", k.metric.namespace, k.metric.name): v for k, v in cumulative.counters.items()}
    found.update({("string_set", k.metric.namespace, k.metric.name): set(v.string_set)
                  for k, v in cumulative.string_sets.items()})
    return found


class _SetUp:
    """The DoFns this worker process has set up, per (job, step), while no bundle uses them.

    Beam's contract: ``setup`` once per DoFn instance, which then serves many bundles (one at a time),
    and ``teardown`` at most once, when the runner drops it. A bundle takes an idle instance of its
    step, or sets up its own copy of the DoFn (the task's argument); it gives it back when the bundle
    succeeds and tears it down when it fails. The job's instances are torn down when the job ends
    (``teardown_job``, run on every worker by the driver), and any left idle for ``IDLE_S`` (a driver
    that died) when a later bundle starts in this process."""

    IDLE_S = 600.0

    def __init__(self):
        self.lock = threading.Lock()
        self.idle: dict = collections.defaultdict(list)  # (job, step) -> [(DoFn, when given back)]

    def take(self, key):
        """An idle instance of the step, or None; those idle too long are torn down."""
        now = time.monotonic()
        with self.lock:
            stale = [fn for fns in self.idle.values() for fn, since in fns if now - since > self.IDLE_S]
            for fns in self.idle.values():
                fns[:] = [(fn, since) for fn, since in fns if now - since <= self.IDLE_S]
            idle = self.idle.get(key)
            found = idle.pop()[0] if idle else None
        for fn in stale:
            teardown(fn)
        return found

    def give_back(self, key, fn) -> None:
        with self.lock:
            if all(fn is not other for other, _ in self.idle[key]):  # workers sharing the task's own objects
                self.idle[key].append((fn, time.monotonic()))

    def drop(self, job: str) -> int:
        with self.lock:
            fns = [fn for key in [k for k in self.idle if k[0] == job] for fn, _ in self.idle.pop(key)]
        for fn in fns:
            teardown(fn)
        return len(fns)


_SET_UP = _SetUp()


def teardown(fn) -> None:
    try:
        DoFnSignature(fn).teardown_lifecycle_method.method_value()
    except Exception:  # noqa: BLE001 - best effort, as on Beam's runners
        log.warning("teardown of %s failed", type(fn).__name__, exc_info=True)


def teardown_job(job: str) -> int:
    """On a worker: tear down the job's idle DoFns (how many)."""
    return _SET_UP.drop(job)


def run_bundle(items, fn, job: str, label: str, args, kwargs, side_specs, *side_values):  # noqa: PLR0913
    """One partition as one bundle of ``fn``, with an instance of the step this process has already
    set up if one is idle: [(pairs of (tag, value), metrics)]."""
    receivers = _Receivers()
    handler = _OutputHandler(window_fn=GlobalWindows(), main_receivers=receivers[None], tagged_receivers=receivers,
                             per_element_output_counter=None, output_batch_converter=None,
                             process_yields_batches=False, process_batch_yields_elements=False)
    sides = [SideInputMap(view, options, [windowed(v) for v in values])
             for (view, options), values in zip(side_specs, side_values)]
    sampler = statesampler.StateSampler(label, counters.CounterFactory())
    statesampler.set_current_tracker(sampler)
    container = MetricsContainer(label)
    key, ready = (job, label), _SET_UP.take((job, label))
    fn = fn if ready is None else ready
    try:
        with sampler.scoped_state(label, "process", metrics_container=container):
            invoker = DoFnInvoker.create_invoker(
                DoFnSignature(fn), handler, context=DoFnContext(label, state=None), side_inputs=sides,
                input_args=list(args), input_kwargs=kwargs, user_state_context=None,
                bundle_finalizer_param=DoFn.BundleFinalizerParam())
            if ready is None:
                invoker.invoke_setup()
            invoker.invoke_start_bundle()
            for item in items:
                invoker.invoke_process(windowed(item))
            invoker.invoke_finish_bundle()  # what a sink emits here belongs to the bundle
    except BaseException:
        teardown(fn)  # a failed bundle's instance is not used again
        raise
    finally:
        statesampler.set_current_tracker(None)
    _SET_UP.give_back(key, fn)
    return [(receivers.pairs, _metrics(container))]


def read_bundle(bundles):
    return [item for b in bundles
            for item in b.source.read(b.source.get_range_tracker(b.start_position, b.stop_position))]


def pick(part, tag):
    return [value for t, value in part[0][0] if t == tag]


def bundle_metrics(part):
    return [part[0][1]]


def stable_key(pair) -> int:
    """A key's bucket, the same in every worker process (``hash`` of a str is not)."""
    return zlib.crc32(repr(pair[0]).encode())


def group(bucket):
    """(key, [values]) for the pairs of one hash bucket (ReifyWindows wrapped each value in a window)."""
    grouped: dict = collections.defaultdict(list)
    for key, value in bucket[1]:
        grouped[key].append(plain(value))
    return list(grouped.items())


def nothing(part):
    return []


def gather(*parts):
    return [item for part in parts for item in part]


def flatten(bags: list):
    """Beam's Flatten: partition i gathers partition i of every input that has one, so the result has
    as many partitions as the largest input, not their sum (``db.concat``'s): a Partition and the
    Flatten that joins its branches again no longer doubles the bundles of every later step."""
    n = max(bag.npartitions for bag in bags)
    name = f"flatten-{tokenize(*[bag.name for bag in bags])}"
    graph = {(name, i): (gather, *[(bag.name, i) for bag in bags if i < bag.npartitions]) for i in range(n)}
    return db.Bag(HighLevelGraph.from_collections(name, graph, dependencies=bags), name, n)


def whole(bag, n: int):
    """A bag of ``n`` partitions, each holding every item of ``bag``: a side input, given to each bundle.

    Built from ``bag``'s own keys (dask's Item arguments are re-planned, running their steps again)."""
    name = f"side-{tokenize(bag.name, n)}"
    keys = [(bag.name, i) for i in range(bag.npartitions)]
    graph = {(name, i): (gather, *keys) for i in range(n)}
    return db.Bag(HighLevelGraph.from_collections(name, graph, dependencies=[bag]), name, n)


# --- the driver ---------------------------------------------------------------------------------

@dataclasses.dataclass
class _Visitor(PipelineVisitor):
    npartitions: int | None = None
    job: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)  # names its DoFns in the workers
    bags: dict = dataclasses.field(default_factory=dict)  # PCollection -> Bag
    consumed: set = dataclasses.field(default_factory=set)
    metrics: list = dataclasses.field(default_factory=list)  # one Bag per ParDo: a dict per bundle

    def input(self, node):
        inputs = [i for i in node.inputs if not isinstance(i, pvalue.PBegin)]
        self.consumed.update(inputs)
        return [self.bags[i] for i in inputs]

    def visit_transform(self, node) -> None:
        transform = node.transform
        inputs = self.input(node)
        outputs = dict(node.outputs)
        if isinstance(transform, _Create):
            n = self.npartitions or max(1, min(len(transform.values), 64))
            bag = db.from_sequence(list(transform.values), npartitions=n)
        elif isinstance(transform, _Read):
            bundles = list(transform.source.split(desired_bundle_size=BUNDLE_BYTES))
            bag = db.from_sequence(bundles, npartitions=max(1, len(bundles))).map_partitions(read_bundle)
        elif isinstance(transform, _GroupByKeyOnly):
            bag = inputs[0].groupby(stable_key, shuffle="tasks").map_partitions(
                lambda buckets: [kv for b in buckets for kv in group(b)])
        elif isinstance(transform, _Flatten):
            bag = flatten(inputs) if inputs else db.from_sequence([], npartitions=1)
        elif isinstance(transform, (_Reshuffle, _GroupAlsoByWindow, WindowInto)):
            bag = inputs[0]  # one global window: nothing to do
        elif isinstance(transform, ParDo):
            self.par_do(node, transform, inputs[0], outputs)
            return
        else:
            raise NotImplementedError(f"runner dask: no translation for {node.full_label} "
                                      f"({type(transform).__name__})")
        for out in outputs.values():
            self.bags[out] = bag

    def par_do(self, node, transform, main, outputs) -> None:
        args, kwargs = transform.args, transform.kwargs  # side inputs as placeholders
        specs, values = [], []
        for side in node.side_inputs:
            self.consumed.add(side.pvalue)
            specs.append((type(side), side._view_options()))
            values.append(whole(self.bags[side.pvalue], main.npartitions))
        raw = main.map_partitions(run_bundle, transform.fn, self.job, node.full_label, args, kwargs, specs, *values)
        with dask.annotate(priority=1):  # a bundle's metrics before any other task: the driver follows them
            self.metrics.append(raw.map_partitions(bundle_metrics))
        main_tag = getattr(transform, "output_tags", None)
        for tag, out in outputs.items():
            self.bags[out] = raw.map_partitions(pick, None if tag in (None, "None", main_tag) else tag)

    def sinks(self) -> list:
        """Every branch's end, reduced to nothing: computing them runs the whole graph once."""
        return [bag.map_partitions(nothing) for out, bag in self.bags.items() if out not in self.consumed]


class DaskRunner(PipelineRunner):
    """See the module docstring."""

    def run_pipeline(self, pipeline, options):
        dask_options = options.view_as(DaskOptions).get_all_options(drop_default=True, current_only=True)
        bag_kwargs = DaskOptions._extract_bag_kwargs(dask_options)
        cluster = None
        if not (dask_options.get("address") or dask_options.get("scheduler_file")):  # a cluster for this job
            cluster = ddist.LocalCluster(host="127.0.0.1", dashboard_address=None, processes=True)
            dask_options["address"] = cluster
        client = ddist.Client(**dask_options)
        pipeline.replace_all(dask_overrides())
        visitor = _Visitor(bag_kwargs.get("npartitions"))
        pipeline.visit(visitor)
        sinks = visitor.sinks()
        # a future per partition: the sinks' (all [] once done) and each bundle's metrics
        held = client.persist([*sinks, *visitor.metrics], optimize_graph=False)
        futures = [[future for bag in bags for future in ddist.futures_of(bag)]
                   for bags in (held[:len(sinks)], held[len(sinks):])]
        return DaskResult(client, *futures, cluster=cluster, job=visitor.job)


class DaskResult(PipelineResult):
    def __init__(self, client, sinks: list, bundle_metrics: list, cluster=None, job: str = ""):
        super().__init__(PipelineState.RUNNING)
        self.client, self.cluster, self.found, self.error, self.job = client, cluster, None, None, job
        self.bundle_metrics = bundle_metrics  # futures, each [a bundle's metrics]
        self.futures = [*sinks, *bundle_metrics]
        self.fetched: dict = {}  # a finished bundle's index -> [its metrics], fetched once

    def close(self):
        try:  # the DoFns the job's bundles set up in each worker
            self.client.run(teardown_job, self.job, on_error="ignore")
        except Exception:  # noqa: BLE001 - workers gone: nothing of the job is left in them
            log.debug("dask: tearing down the job's DoFns failed", exc_info=True)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    @property
    def state(self):
        """DONE or FAILED once every future has finished (what ``progress.follow`` polls for), else RUNNING."""
        if self._state == PipelineState.RUNNING and all(f.done() for f in self.futures):
            try:
                self.wait_until_finish()
            except Exception:  # noqa: BLE001 - FAILED; wait_until_finish raises it again for the caller
                pass
        return self._state

    def wait_until_finish(self, duration=None):
        if PipelineState.is_terminal(self._state):
            if self._state == PipelineState.FAILED and self.error is not None:
                raise self.error
            return self._state
        try:
            for _ in ddist.as_completed(self.futures, with_results=True,
                                        timeout=None if duration is None else duration / 1000):
                pass  # gathering raises a worker's error here
            self.found = self.finished_bundles(everything=True)
            self._state = PipelineState.DONE
        except BaseException as err:
            self._state, self.error = PipelineState.FAILED, err
            raise
        finally:
            self.close()
        return self._state

    def cancel(self):
        self.client.cancel(self.futures)
        self.close()
        self._state = PipelineState.CANCELLED
        return self._state

    def metrics(self):
        """All bundles' metrics once the job is done; while it runs, those of the bundles finished."""
        if self.found is not None or PipelineState.is_terminal(self._state):
            return DaskMetrics(self.found or [])
        try:
            return DaskMetrics(self.finished_bundles())
        except Exception:  # noqa: BLE001 - the job is ending under us: no figures this time
            return DaskMetrics([])

    def finished_bundles(self, everything: bool = False) -> list[dict]:
        """The metrics of the bundles finished (``everything``: of all, which must be), each fetched
        from the workers once, in one gather for those newly finished."""
        new = [i for i, future in enumerate(self.bundle_metrics)
               if i not in self.fetched and (everything or future.status == "finished")]
        if new:
            self.fetched.update(zip(new, self.client.gather([self.bundle_metrics[i] for i in new])))
        return [bundle for i in sorted(self.fetched) for bundle in self.fetched[i]]


class DaskMetrics(MetricResults):
    """The summed counters and string sets of the bundles given."""

    def __init__(self, bundles: list[dict]):
        totals: dict = {}
        for bundle in bundles:
            for (kind, namespace, name), value in bundle.items():
                if kind == "counter":
                    totals[kind, namespace, name] = totals.get((kind, namespace, name), 0) + value
                else:
                    totals[kind, namespace, name] = totals.get((kind, namespace, name), set()) | value
        self.results = {kind: [MetricResult(MetricKey("job", MetricName(ns, name)), v, v)
                               for (k, ns, name), v in totals.items() if k == kind]
                        for kind in ("counter", "string_set")}

    def query(self, filter=None):
        keep = [r for r in self.results["counter"] if MetricResults.matches(filter, r.key)]
        sets = [r for r in self.results["string_set"] if MetricResults.matches(filter, r.key)]
        return {self.COUNTERS: keep, self.DISTRIBUTIONS: [], self.GAUGES: [], self.STRINGSETS: sets,
                self.BOUNDED_TRIES: []}

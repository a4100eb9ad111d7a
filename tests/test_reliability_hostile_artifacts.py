"""Hostile artifacts and model stores (issue #11; docs/reliability.md G2.5-G2.8, G8.2).

* ONNX graphs that would read outside the artifact (a tensor with external
  data, also inside a subgraph or a model-local function), need a custom-op
  library (a node or opset in another domain) or declare huge tensors are
  refused before onnxruntime parses them, through a Monitor and by the
  scanner alone; a mutation fuzzer applies these edits (and random byte
  damage) to the real shipped models;
* a manifest fuzzer: any mutation of one shipped manifest (deep nesting, wrong
  types, a symlinked manifest, bad metric names, odd sha256 values) leaves the
  other artifacts running and reports that one (or refuses under ``strict``
  with an ``OcadError``), never crashes ``from_model_dir``;
* the model store refuses version strings that are not a plain name, reports a
  corrupt ``active.json`` per model, and loses nothing when processes promote
  and publish at once (a lock file);
* a model that outputs NaN or ±inf is a counted, reported detector failure.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocad.core import Monitor, OcadArtifactError, OcadError
from ocad.core.artifacts import ModelStore, load_artifact, write_artifact
from ocad.core.artifacts._onnx_scan import check_onnx_bytes
from ocad.core.plugins import PluginRegistry
from ocad.core.tooling import generate_fleet

onnx = pytest.importorskip("onnx")
ml_plugin = pytest.importorskip("ocad.detectors_ml._plugin")
from onnx import TensorProto, helper  # noqa: E402

TCN = "tcn-lbm_rtt_ms"
IFOREST = "iforest-multivariate"
ALL = ("iforest-multivariate", "tcn-ecpri_delay_us", "tcn-lbm_rtt_ms", "tcn-udp_echo_rtt_ms")


def registry() -> PluginRegistry:
    return PluginRegistry(autoload=False, plugins=[ml_plugin])


def _copy_shipped(dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(ml_plugin.models_dir(), dest)
    return dest


def _rehash(d: Path) -> None:
    m = json.loads((d / "manifest.json").read_text())
    data = (d / "model.onnx").read_bytes()
    m["files"]["model"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (d / "manifest.json").write_text(json.dumps(m))


def _save(d: Path, model: onnx.ModelProto) -> None:
    (d / "model.onnx").write_bytes(model.SerializeToString())
    _rehash(d)


# -- ONNX mutations ---------------------------------------------------------------

def external_data(m: onnx.ModelProto, i: int) -> None:
    """Initializer i reads its bytes from ``service.env`` (resolved against the CWD by onnxruntime)."""
    t = m.graph.initializer[i % len(m.graph.initializer)]
    n = len(t.raw_data) or 4 * int(np.prod(t.dims))
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "service.env"), ("offset", "0"), ("length", str(n))):
        e = t.external_data.add()
        e.key, e.value = k, v


def external_location_only(m: onnx.ModelProto, i: int) -> None:
    """An ``external_data`` entry without data_location set (must be refused as well)."""
    t = m.graph.initializer[i % len(m.graph.initializer)]
    e = t.external_data.add()
    e.key, e.value = "location", "../../etc/passwd"


def custom_domain(m: onnx.ModelProto, i: int) -> None:
    node = m.graph.node[i % len(m.graph.node)]
    node.domain = "com.example.evil"
    m.opset_import.add(domain="com.example.evil", version=1)


def custom_opset_only(m: onnx.ModelProto, i: int) -> None:
    m.opset_import.add(domain="ai.onnx.contrib", version=1)


def huge_shape(m: onnx.ModelProto, i: int) -> None:
    t = m.graph.initializer[i % len(m.graph.initializer)]
    del t.dims[:]
    t.dims.extend([1 << 20, 1 << 20, 4])


def negative_dim(m: onnx.ModelProto, i: int) -> None:
    shaped = [t for t in m.graph.initializer if t.dims]  # scalars (e.g. last-step graphs' constants) have none
    t = shaped[i % len(shaped)]
    t.dims[0] = -3


def external_in_constant_attr(m: onnx.ModelProto, i: int) -> None:
    consts = [n for n in m.graph.node if n.op_type == "Constant"]
    if not consts:  # a graph without constants gets one (unused: the scanner must look anyway)
        m.graph.node.append(helper.make_node("Constant", [], ["_c"], value=helper.make_tensor(
            "_c", TensorProto.FLOAT, [1], [0.0])))
        consts = [m.graph.node[-1]]
    node = consts[i % len(consts)]
    t = node.attribute[0].t
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", "service.env"


MUTATIONS = {
    "external-data": (external_data, "external data|data_location EXTERNAL"),
    "external-location-only": (external_location_only, "external data"),
    "custom-domain": (custom_domain, "custom operators are not loaded"),
    "custom-opset-only": (custom_opset_only, "custom operators are not loaded"),
    "huge-shape": (huge_shape, "declares more than"),
    "negative-dim": (negative_dim, "negative dimension"),
    "external-in-constant": (external_in_constant_attr, "external data|data_location EXTERNAL"),
}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_shipped(tmp_path_factory.mktemp("shipped") / "models")


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_an_onnx_graph_reaching_outside_is_refused_before_onnxruntime(tmp_path, monkeypatch, shipped, case):
    """G2.5: external data, custom-op domains, huge shapes: refused, reported, the rest runs."""
    mutate, problem = MUTATIONS[case]
    d = _copy_shipped(tmp_path / "models")
    model = onnx.load(str(d / TCN / "model.onnx"))
    mutate(model, 3)
    _save(d / TCN, model)
    # A file an attacker would like the model to read, in the working directory.
    (tmp_path / "service.env").write_bytes(b"\x00\x00\x80\x3f" * 100_000)
    monkeypatch.chdir(tmp_path)

    mon = Monitor.from_model_dir(d, registry=registry())
    (err,) = mon.health()["artifact_errors"]
    assert TCN in err and "model.onnx" in err
    import re
    assert re.search(problem, err), err
    dets = {x.name: x for x in mon.detectors}
    assert dets["residual"].metrics == ("udp_echo_rtt_ms", "ecpri_delay_us") and "multivariate" in dets
    with pytest.raises(OcadError, match=problem):
        Monitor.from_model_dir(d, registry=registry(), strict=True)


def _if_model(then_tensor: onnx.TensorProto) -> onnx.ModelProto:
    """A graph whose only tensor hides in an ``If`` branch (a subgraph attribute)."""
    then_g = helper.make_graph([helper.make_node("Constant", [], ["y"], value=then_tensor)], "then", [],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    else_g = helper.make_graph([helper.make_node("Constant", [], ["y"],
                                                 value=helper.make_tensor("c", TensorProto.FLOAT, [1], [0.0]))],
                               "else", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    g = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)], "g",
                          [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_the_scanner_finds_external_data_in_subgraphs_and_functions():
    ok = helper.make_tensor("t", TensorProto.FLOAT, [1], [1.0])
    check_onnx_bytes(_if_model(ok).SerializeToString())  # a clean nested model passes
    bad = helper.make_tensor("t", TensorProto.FLOAT, [1], [1.0])
    bad.data_location = TensorProto.EXTERNAL
    bad.external_data.add(key="location", value="service.env")
    with pytest.raises(ValueError, match="external data"):
        check_onnx_bytes(_if_model(bad).SerializeToString())
    # A model-local function in a custom domain (onnxruntime would inline it; we refuse the domain).
    fn = helper.make_function("com.evil", "F", ["x"], ["y"], [helper.make_node("Identity", ["x"], ["y"])],
                              [helper.make_opsetid("", 17)])
    m = _if_model(ok)
    m.functions.append(fn)
    with pytest.raises(ValueError, match="custom operators"):
        check_onnx_bytes(m.SerializeToString())
    # Deep nesting of subgraphs is refused, not a RecursionError.
    # Deep nesting of subgraphs (graph > node > attribute > graph ...) is refused, not a RecursionError.
    # Written on the wire by hand: the protobuf library itself refuses to build it.
    def field(num: int, payload: bytes) -> bytes:
        n, size = len(payload), b""
        while True:
            size += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
            n >>= 7
            if not n:
                break
        return bytes([num << 3 | 2]) + size + payload

    graph = b""
    for _ in range(200):
        graph = field(1, field(5, field(6, graph)))  # GraphProto.node > NodeProto.attribute > AttributeProto.g
    with pytest.raises(ValueError, match="nests more than"):
        check_onnx_bytes(field(7, graph))
    for junk in (b"", b"\x0b", b"\x3a\xff\xff\xff\xff\x0f", b"\x08" + b"\xff" * 20):
        with pytest.raises(ValueError):
            check_onnx_bytes(junk)


_CACHE: dict[Path, bytes] = {}


def _bytes(p: Path) -> bytes:
    if p not in _CACHE:
        _CACHE[p] = p.read_bytes()
    return _CACHE[p]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(edits=st.lists(st.tuples(st.sampled_from(sorted(MUTATIONS)), st.integers(0, 50)), min_size=1, max_size=3),
       damage=st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 255)), max_size=3))
def test_fuzzed_onnx_models_are_refused_by_the_scanner_never_run(shipped, edits, damage):
    """Mutation fuzzer over the shipped graphs: any unsafe edit, with or without random byte damage."""
    for name in (TCN, IFOREST):
        model = onnx.load_from_string(_bytes(shipped / name / "model.onnx"))
        for case, i in edits:
            MUTATIONS[case][0](model, i)
        data = bytearray(model.SerializeToString())
        for pos, x in damage:
            data[pos % len(data)] ^= x
        try:
            check_onnx_bytes(bytes(data))
        except ValueError:
            continue
        # Byte damage can only pass the scan by turning the unsafe part into something else; then the
        # parsed model really holds no external tensor and no foreign domain.
        try:
            parsed = onnx.load_from_string(bytes(data))
        except Exception:  # noqa: BLE001 - onnx cannot parse it either: onnxruntime would refuse it
            continue
        tensors = list(parsed.graph.initializer)
        assert not any(t.data_location == TensorProto.EXTERNAL or len(t.external_data) for t in tensors)
        assert {o.domain for o in parsed.opset_import} <= {"", "ai.onnx", "ai.onnx.ml"}


# -- manifest fuzzer ------------------------------------------------------------------

def _paths(doc, prefix=()):  # type: ignore[no-untyped-def]
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:4]):
            yield from _paths(v, (*prefix, i))


DEEP = "[" * 200_000 + "]" * 200_000
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) |
    st.sampled_from(["", "../../etc/passwd", "/etc/passwd", "x" * 5000, "bad metric", "ts", "\x00", "é", "0" * 64,
                     "udp_echo_rtt_ms"]) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), target=st.sampled_from(ALL), deep=st.booleans())
def test_fuzzed_manifests_are_isolated_per_artifact(tmp_path_factory, shipped, data, target, deep):
    """G2.6: whatever one manifest holds, the others load; strict raises an OcadError, nothing else."""
    d = _copy_shipped(tmp_path_factory.mktemp("fuzz") / "models")
    mf = d / target / "manifest.json"
    doc = json.loads(mf.read_text())
    if deep:
        text = json.dumps(doc).replace('"calibration": ', f'"calibration": {DEEP}, "x": ', 1)
    else:
        paths = list(_paths(doc))[1:]
        path = data.draw(st.sampled_from(paths))
        value = data.draw(json_values)
        cur = doc
        for k in path[:-1]:
            cur = cur[k]
        cur[path[-1]] = value
        text = json.dumps(doc)
    mf.write_text(text)

    mon = Monitor.from_model_dir(d, registry=registry())  # never raises
    errors = mon.health()["artifact_errors"]
    assert all(target in e or str(d / target) in e for e in errors), errors
    assert len(errors) <= 1
    json.dumps(mon.health())  # reportable
    built = {x.name for x in mon.detectors}
    if target != IFOREST:
        assert "multivariate" in built
    try:
        Monitor.from_model_dir(d, registry=registry(), strict=True)
    except OcadError as exc:
        assert errors, f"strict refused ({exc}) what lenient accepted silently"


def test_a_manifest_cannot_size_the_window_store(tmp_path):
    """G2.6: a model window of a million samples would make every endpoint row gigabytes: refused."""
    d = _copy_shipped(tmp_path / "models")
    m = json.loads((d / TCN / "manifest.json").read_text())
    m["inputs"]["window"] = 1_000_000
    (d / TCN / "manifest.json").write_text(json.dumps(m))
    mon = Monitor.from_model_dir(d, registry=registry())
    (err,) = mon.health()["artifact_errors"]
    assert TCN in err and "inputs.window" in err and "1..10000" in err
    assert mon.window < 1000


def test_a_symlinked_manifest_out_of_the_directory_is_refused(tmp_path):
    """G2.5: the manifest itself may not be a symlink out of its artifact directory."""
    d = _copy_shipped(tmp_path / "models")
    elsewhere = tmp_path / "elsewhere.json"
    shutil.move(d / TCN / "manifest.json", elsewhere)
    os.symlink(elsewhere, d / TCN / "manifest.json")
    mon = Monitor.from_model_dir(d, registry=registry())
    (err,) = mon.health()["artifact_errors"]
    assert "symlink out of the artifact directory" in err
    with pytest.raises(OcadArtifactError, match="symlink"):
        Monitor.from_model_dir(d, registry=registry(), strict=True)


# -- model store ----------------------------------------------------------------------

MANIFEST = {"name": "m", "kind": "forecaster", "format": "onnx", "inputs": {"metrics": ["udp_echo_rtt_ms"]},
            "calibration": {}, "library_versions": {}}


def _publish(store: ModelStore, payload: bytes) -> str:
    with store.lock():
        v = store.next_version("m")
        write_artifact(store.version_dir("m", v), {**MANIFEST, "version": v}, {"model": ("model.onnx", payload)})
        store.promote("m", v)
    return v


@pytest.mark.parametrize("bad", ["../../x", "..", ".hidden", "a/b", "", "a\x00b", "x" * 200, "v 1"])
def test_store_version_strings_are_plain_names(tmp_path, bad):
    """G2.7: a version string never becomes a path outside the store."""
    store = ModelStore(tmp_path / "store").init()
    _publish(store, b"one")
    with pytest.raises(OcadArtifactError, match="version"):
        store.promote("m", bad)
    with pytest.raises(OcadArtifactError):
        store.version_dir("m", bad)
    with pytest.raises(OcadArtifactError):
        store.load("m", bad)


def test_a_version_directory_symlinked_out_of_the_store_is_refused(tmp_path):
    """G2.7: a valid name is not enough: the path must also resolve inside the store."""
    store = ModelStore(tmp_path / "store").init()
    _publish(store, b"one")
    outside = tmp_path / "outside"
    shutil.copytree(store.version_dir("m", "1.0.0"), outside)
    os.symlink(outside, store.root / "m" / "versions" / "9.0.0")
    with pytest.raises(OcadArtifactError, match="outside the model store"):
        store.promote("m", "9.0.0")
    assert store.active("m") == "1.0.0"


def test_a_corrupt_active_pointer_is_reported_for_its_model_only(tmp_path):
    """G2.6: ``active.json`` pointing outside, not JSON, or with a bad history: that model only."""
    root = _copy_shipped(tmp_path / "ship")
    store = ModelStore(tmp_path / "store").init()
    for name in ALL:
        shutil.copytree(root / name, store.root / name / "versions" / "1.0.0")
        store.promote(name, "1.0.0")
    (store.root / TCN / "active.json").write_text(json.dumps({"version": "../../../ship/" + TCN}))
    (store.root / IFOREST / "active.json").write_text("{")
    mon = Monitor.from_model_dir(store.root, registry=registry())
    errs = mon.health()["artifact_errors"]
    assert len(errs) == 2
    assert any("active.json" in e and "'version'" in e for e in errs)
    assert any("active.json" in e and "not valid JSON" in e for e in errs)
    assert {x.name: x for x in mon.detectors}["residual"].metrics == ("udp_echo_rtt_ms", "ecpri_delay_us")
    with pytest.raises(OcadArtifactError, match="active.json"):
        Monitor.from_model_dir(store.root, registry=registry(), strict=True)


def _promoter(root: str, n: int, seed: int) -> None:
    store = ModelStore(root)
    vs = store.versions("m")
    rng = np.random.default_rng(seed)
    for _ in range(n):
        store.promote("m", vs[int(rng.integers(len(vs)))])


def _publisher(root: str, n: int, tag: int) -> None:
    store = ModelStore(root)
    for i in range(n):
        _publish(store, f"{tag}-{i}".encode())


def test_concurrent_promotes_and_publishes_lose_nothing(tmp_path):
    """G8.2: processes promoting and publishing at once: every change in the history, no OSError."""
    store = ModelStore(tmp_path / "store").init()
    for i in range(4):
        _publish(store, f"seed-{i}".encode())
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_publisher, args=(str(store.root), 6, t)) for t in range(2)]
    procs += [ctx.Process(target=_promoter, args=(str(store.root), 15, s)) for s in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert len(store.versions("m")) == 4 + 12  # no version taken twice, none lost
    state = json.loads((store.root / "m" / "active.json").read_text())
    # Every promotion that changed the active version pushed exactly one history entry.
    assert len(state["history"]) >= 3 + 12
    assert load_artifact(store.version_dir("m", state["version"])).version == state["version"]
    assert not [p for p in (store.root / "m").rglob(".*") if p.name != ".lock"]  # no temporary left


# -- non-finite model output --------------------------------------------------------------

class _Bad:
    def __init__(self, session, value: float) -> None:  # type: ignore[no-untyped-def]
        self.session, self.value = session, value

    def run(self, names, feeds):  # type: ignore[no-untyped-def]
        out = self.session.run(names, feeds)
        out[0] = np.array(out[0], copy=True)
        out[0].reshape(-1)[0] = self.value
        return out

    def __getattr__(self, k):  # type: ignore[no-untyped-def]
        return getattr(self.session, k)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_model_output_is_a_counted_detector_failure(shipped, value):
    """G2.8: a NaN / ±inf forecast or score is a detector failure in health(), not a silent NaN."""
    mon = Monitor.from_model_dir(shipped, registry=registry())
    dets = {x.name: x for x in mon.detectors}
    fc = dets["residual"].forecasters[0]
    fc.session = _Bad(fc.session, value)
    dets["multivariate"].session = _Bad(dets["multivariate"].session, value)
    fleet = generate_fleet(4, 60 * 5.0, seed=3, faults=False)
    for cols in fleet.iter_ticks():
        mon.observe_columns(*cols)
    h = mon.health()["detectors"]
    for name in ("residual", "multivariate"):
        assert h[name]["failures"] >= 1 and "non-finite" in h[name]["last_error"], h[name]
        assert h[name]["disabled"]
    assert all(h[n]["failures"] == 0 for n in h if n not in ("residual", "multivariate"))


RUNTIME_BOMB = r"""
import json, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # if the cap failed, fail here, not the host
import numpy as np
from ocad.core import Monitor
from ocad.core.plugins import PluginRegistry
from ocad.core.tooling import generate_fleet
import ocad.detectors_ml._plugin as ml_plugin
mon = Monitor.from_model_dir(sys.argv[1], registry=PluginRegistry(autoload=False, plugins=[ml_plugin]))
assert mon.health()["artifact_errors"] == [], mon.health()["artifact_errors"]
for cols in generate_fleet(3, 50 * 5.0, seed=1, faults=False).iter_ticks():
    mon.observe_columns(*cols)
h = mon.health()["detectors"]
print(json.dumps({"residual": h["residual"], "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def test_a_graph_allocating_gigabytes_at_run_time_is_a_detector_failure(tmp_path):
    """G2.8: no byte check sees ConstantOfShape([2^29]); the capped onnxruntime arena refuses it."""
    import subprocess
    import sys as _sys

    d = _copy_shipped(tmp_path / "models")
    shape = helper.make_tensor("s", TensorProto.INT64, [1], [1 << 29])  # 2 GiB of float32
    g = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1),
         helper.make_node("Constant", [], ["shp"], value=shape),
         helper.make_node("ConstantOfShape", ["shp"], ["big"],
                          value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])),
         helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
         helper.make_node("Add", ["m", "s"], ["y"])], "bomb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])])
    _save(d / TCN, helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    env = {**os.environ, "OCAD_ORT_ARENA_MAX_BYTES": str(256 << 20), "OCAD_PLUGINS_AUTOLOAD": "0"}
    out = subprocess.run([_sys.executable, "-c", RUNTIME_BOMB, str(d)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["residual"]["failures"] >= 1 and res["residual"]["disabled"], res
    assert "smaller than requested bytes" in res["residual"]["last_error"], res
    assert res["rss_mb"] < 1500, res

"""A dependency-free check of ONNX model bytes before anything (onnxruntime) parses them.

onnxruntime resolves an *external-data* tensor (``data_location = EXTERNAL``,
``external_data = [{"location": "service.env"}, ...]``) against the current
working directory when a session is built from bytes: an artifact could make
the Monitor read, and compute "expected" values from, any file the process can
read. A node in an operator domain onnxruntime does not implement natively
needs a custom-op library. Both are refused here, by walking the protobuf wire
format of the ``ModelProto`` (no ``onnx`` package needed, so ocad-core keeps
its three dependencies):

* every ``TensorProto`` anywhere (initializers, sparse initializers, node
  attributes, subgraphs of ``If`` / ``Loop`` / ``Scan``, model-local functions,
  training info) must keep its data inside the model: ``data_location`` not
  ``EXTERNAL`` and no ``external_data`` entries;
* every node's domain and every ``opset_import`` domain must be one of
  :data:`ALLOWED_DOMAINS` (ONNX and ONNX-ML, which onnxruntime implements);
* a tensor may not declare more than :data:`MAX_TENSOR_ELEMENTS` elements or a
  negative dimension (a huge declared shape is a memory bomb, not a model);
* nesting deeper than :data:`MAX_DEPTH` messages, groups (wire types 3/4) and
  truncated fields are refused as malformed.

:func:`check_onnx_bytes` raises ``ValueError`` with the problem; callers wrap it
in :class:`~ocad.core.OcadArtifactError` naming the artifact and the file.
"""

from __future__ import annotations

__all__ = ["ALLOWED_DOMAINS", "MAX_DEPTH", "MAX_TENSOR_ELEMENTS", "check_onnx_bytes"]

ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
MAX_DEPTH = 64
MAX_TENSOR_ELEMENTS = 1 << 31

# Field numbers of onnx.proto3 (ONNX 1.17) that can hold tensors, graphs, nodes or domains.
_MODEL = {"graph": 7, "opset_import": 8, "functions": 25, "training_info": 20}
_GRAPH = {"node": 1, "initializer": 5, "sparse_initializer": 15}
_NODE = {"attribute": 5, "domain": 7}
_ATTR = {"t": 5, "g": 6, "tensors": 10, "graphs": 11, "sparse_tensor": 22, "sparse_tensors": 23}
_TENSOR = {"dims": 1, "external_data": 13, "data_location": 14, "name": 8}
_SPARSE = {"values": 1, "indices": 2}
_FUNCTION = {"node": 7, "opset_import": 9, "domain": 10}
_TRAINING = {"initialization": 1, "algorithm": 2}
_OPSET = {"domain": 1}
_EXTERNAL = 1


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("malformed protobuf: truncated or overlong varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int):
    """(field number, wire type, value) of one message: value is an int or a (start, end) slice."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, pos = _varint(buf, pos, end)
            yield field, wt, v
        elif wt == 1:
            pos += 8
            yield field, wt, None
        elif wt == 5:
            pos += 4
            yield field, wt, None
        elif wt == 2:
            n, pos = _varint(buf, pos, end)
            if pos + n > end:
                raise ValueError("malformed protobuf: a field runs past the end of its message")
            yield field, wt, (pos, pos + n)
            pos += n
        else:
            raise ValueError(f"malformed protobuf: wire type {wt} (groups are not used by ONNX)")
        if pos > end:
            raise ValueError("malformed protobuf: a field runs past the end of its message")


def _string(buf: memoryview, span: tuple[int, int]) -> str:
    return bytes(buf[span[0]:span[1]]).decode("utf-8", "replace")


class _Scan:
    def __init__(self, data: bytes) -> None:
        self.buf = memoryview(data)

    def _sub(self, span: tuple[int, int], depth: int, fn) -> None:
        if depth > MAX_DEPTH:
            raise ValueError(f"model nests more than {MAX_DEPTH} messages deep")
        fn(span, depth)

    def model(self) -> None:
        for f, wt, v in _fields(self.buf, 0, len(self.buf)):
            if wt != 2:
                continue
            if f == _MODEL["graph"]:
                self._sub(v, 1, self.graph)
            elif f == _MODEL["opset_import"]:
                self.opset(v, "opset_import")
            elif f == _MODEL["functions"]:
                self._sub(v, 1, self.function)
            elif f == _MODEL["training_info"]:
                for tf, twt, tv in _fields(self.buf, *v):
                    if twt == 2 and tf in _TRAINING.values():
                        self._sub(tv, 2, self.graph)

    def opset(self, span: tuple[int, int], where: str) -> None:
        for f, wt, v in _fields(self.buf, *span):
            if f == _OPSET["domain"] and wt == 2:
                self.domain(_string(self.buf, v), where)

    @staticmethod
    def domain(d: str, where: str) -> None:
        if d not in ALLOWED_DOMAINS:
            raise ValueError(f"{where} uses operator domain {d!r}: custom operators are not loaded "
                             f"(allowed: {sorted(ALLOWED_DOMAINS)})")

    def graph(self, span: tuple[int, int], depth: int) -> None:
        for f, wt, v in _fields(self.buf, *span):
            if wt != 2:
                continue
            if f == _GRAPH["node"]:
                self._sub(v, depth + 1, self.node)
            elif f == _GRAPH["initializer"]:
                self._sub(v, depth + 1, self.tensor)
            elif f == _GRAPH["sparse_initializer"]:
                self._sub(v, depth + 1, self.sparse)

    def function(self, span: tuple[int, int], depth: int) -> None:
        for f, wt, v in _fields(self.buf, *span):
            if wt != 2:
                continue
            if f == _FUNCTION["node"]:
                self._sub(v, depth + 1, self.node)
            elif f == _FUNCTION["opset_import"]:
                self.opset(v, "function opset_import")
            elif f == _FUNCTION["domain"]:
                self.domain(_string(self.buf, v), "a model-local function")

    def node(self, span: tuple[int, int], depth: int) -> None:
        for f, wt, v in _fields(self.buf, *span):
            if wt != 2:
                continue
            if f == _NODE["domain"]:
                self.domain(_string(self.buf, v), "a node")
            elif f == _NODE["attribute"]:
                self._sub(v, depth + 1, self.attribute)

    def attribute(self, span: tuple[int, int], depth: int) -> None:
        for f, wt, v in _fields(self.buf, *span):
            if wt != 2:
                continue
            if f in (_ATTR["t"], _ATTR["tensors"]):
                self._sub(v, depth + 1, self.tensor)
            elif f in (_ATTR["g"], _ATTR["graphs"]):
                self._sub(v, depth + 1, self.graph)
            elif f in (_ATTR["sparse_tensor"], _ATTR["sparse_tensors"]):
                self._sub(v, depth + 1, self.sparse)

    def sparse(self, span: tuple[int, int], depth: int) -> None:
        for f, wt, v in _fields(self.buf, *span):
            if wt == 2 and f in _SPARSE.values():
                self._sub(v, depth + 1, self.tensor)

    def tensor(self, span: tuple[int, int], depth: int) -> None:
        name = ""
        elements = 1
        for f, wt, v in _fields(self.buf, *span):
            if f == _TENSOR["name"] and wt == 2:
                name = _string(self.buf, v)
            elif f == _TENSOR["external_data"]:
                raise ValueError(f"tensor {name!r} has external data: an artifact's model must hold all "
                                 "its weights (nothing is read from outside the model file)")
            elif f == _TENSOR["data_location"] and wt == 0 and v == _EXTERNAL:
                raise ValueError(f"tensor {name!r} has data_location EXTERNAL: an artifact's model must hold "
                                 "all its weights (nothing is read from outside the model file)")
            elif f == _TENSOR["dims"]:
                dims = [v] if wt == 0 else _packed(self.buf, v) if wt == 2 else []
                for d in dims:
                    if d >= 1 << 63:  # int64 two's complement: a negative dimension
                        raise ValueError(f"tensor {name!r} declares a negative dimension")
                    elements *= d
                    if elements > MAX_TENSOR_ELEMENTS:
                        raise ValueError(f"tensor {name!r} declares more than {MAX_TENSOR_ELEMENTS} elements")


def _packed(buf: memoryview, span: tuple[int, int]) -> list[int]:
    out = []
    pos, end = span
    while pos < end:
        v, pos = _varint(buf, pos, end)
        out.append(v)
    return out


def check_onnx_bytes(data: bytes) -> None:
    """Raise ``ValueError`` if ``data`` (a serialised ``ModelProto``) is malformed or unsafe to load."""
    if not data:
        raise ValueError("empty model file")
    _Scan(bytes(data)).model()

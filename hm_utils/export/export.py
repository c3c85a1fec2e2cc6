"""Embedding export: every article through trained embedding models, written in
shards so that an interrupted run resumes (the models themselves run in
:mod:`hm_utils.model.inference`; the files are read back by :mod:`hm_utils.core.workdir`).

Export
------
:func:`export_embeddings` sends every article's image through a one-tower
embedding model in batches read from disk by :func:`hm_utils.data.images.image_dataset`
(tf.data, parallel decoding at reduced JPEG scale). Articles are cut into
consecutive *shards* of ``shard_size`` rows; each finished shard is written
atomically to ``<out>.shards/part-NNNNN.parquet`` and recorded in
``<out>.shards/manifest.json``. A run that is interrupted (killed, out of
memory, an exception) leaves the finished shards behind; the next call with the
same model, articles and settings reuses them without recomputing and ends with
the same final file as an uninterrupted run. The final file is assembled from
the shards, written to a temporary name and renamed, and the shard folder is
removed. :func:`export_embeddings_many` exports several models in one pass
over the images (each image decoded once; a backbone the models share runs
once per batch, only the heads per model).

Output files (CONTRIBUTING.md):

* image-only model -> ``article_embeddings.parquet``: ``article_id`` int32,
  ``embedding`` list<float32> (null for an article without a usable image);
* image+tabular model -> ``combined_article_embeddings.parquet``: all the
  articles.csv columns plus ``embedding``.

An article without an image gets a null embedding (counted in the report);
an image that cannot be decoded (truncated JPEG, not an image at all, missing
file) gets a warning naming the article id and a null embedding, and the export
goes on.

Notebook 04's settings are one :class:`ExportSettings` (from the profile and the
notebook's parameters), passed whole to
:func:`hm_utils.export.from_features.export_embeddings_auto` and recorded whole.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hm_utils.core.checks import require_columns
from hm_utils.core.config import ARTICLE_ID, EMBEDDING, HAS_IMAGE
from hm_utils.core.settings import StageSettings
from hm_utils.core.similarity import pairwise_cosine
from hm_utils.core.storage import read_json, write_json, write_parquet
from hm_utils.core.workdir import load_embeddings
from hm_utils.data.images import UnreadableImageWarning, article_image_paths, load_image
from hm_utils.model.inference import make_embed_fn, model_digest
from hm_utils.model.numeric_precision import PRECISIONS, resolve_precision

MANIFEST = "manifest.json"
STATUS_OK, STATUS_NO_IMAGE, STATUS_UNREADABLE = 0, 1, 2
DEFAULT_BATCH_SIZE = 64
DEFAULT_SHARD_SIZE = 2048
DEFAULT_VARIANCE_SHARE = 0.95


@dataclass(frozen=True)
class ExportSettings(StageSettings):
    """Notebook 04's settings, resolved once (:meth:`~hm_utils.core.settings.StageSettings.from_notebook`; the
    profile sets ``batch_size``).

    ``batch_size`` images per model call (profile: its ``batch_size``); ``shard_size``
    articles per shard, the unit an interrupted export resumes from (2048);
    ``reduced_scale`` decode JPEGs at 1/2, 1/4, 1/8 scale where that still covers the
    model's input (True); ``variance_share`` the share of variance for the "how many
    dimensions" count (0.95); ``precision`` what the backbone computes in: "auto",
    "float32" or "bfloat16" (:mod:`hm_utils.model.numeric_precision`; "auto"); ``use_features`` embed
    from the backbone features notebook 03 stored when they fit the models (True).
    """
    batch_size: int = DEFAULT_BATCH_SIZE
    shard_size: int = DEFAULT_SHARD_SIZE
    reduced_scale: bool = True
    variance_share: float = DEFAULT_VARIANCE_SHARE
    precision: str = "auto"
    use_features: bool = True

    def __post_init__(self):
        for name, kind in (("batch_size", int), ("shard_size", int), ("reduced_scale", bool),
                           ("variance_share", float), ("precision", str), ("use_features", bool)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        if self.batch_size < 1 or self.shard_size < 1:
            raise ValueError(f"batch_size and shard_size must be >= 1, got {self.batch_size}, {self.shard_size}")
        if not 0 < self.variance_share <= 1:
            raise ValueError(f"variance_share must be in (0, 1], got {self.variance_share}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {PRECISIONS}")

    @classmethod
    def profile_values(cls, profile) -> dict:
        return {"batch_size": profile.batch_size}


@dataclass
class ExportReport:
    """What :func:`export_embeddings` did.

    ``n_articles`` rows written (one per article); ``n_embedded`` with an
    embedding; ``n_missing_image`` without an image (``has_image`` False);
    ``n_unreadable`` whose image could not be decoded (ids in
    ``unreadable_ids``); ``embedding_dim`` d; ``shards_total`` and
    ``shards_reused`` (finished by an earlier, interrupted run);
    ``seconds`` wall time of this call; ``images_per_second`` images embedded
    by this call per second (reused shards not counted); ``precision`` what the
    backbone computed in ("float32" or "bfloat16", see :mod:`hm_utils.model.inference`).
    """
    path: str
    n_articles: int
    n_embedded: int
    n_missing_image: int
    n_unreadable: int
    unreadable_ids: list = field(default_factory=list)
    embedding_dim: int | None = None
    shards_total: int = 0
    shards_reused: int = 0
    images_computed: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    precision: str = "float32"


# ------------------------------------------------------------------ helpers ---
def shard_dir_for(out_path: str | Path) -> Path:
    """Default shard folder of an export: ``<out_path>.shards`` beside the output."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".shards")


def _paths_and_flags(images: pd.DataFrame, article_ids, data_dir) -> tuple[np.ndarray, np.ndarray]:
    """(image path str, '' without an image, object [n]; has_image bool [n]) of ``article_ids``
    (:func:`hm_utils.data.images.article_image_paths`)."""
    require_columns(images, [ARTICLE_ID, HAS_IMAGE], "images frame")
    found = article_image_paths(images, article_ids, data_dir)
    has = np.array([p is not None for p in found], dtype=bool)
    return np.array(["" if p is None else p for p in found], dtype=object), has


def _fingerprint(article_ids: np.ndarray, has_image: np.ndarray, settings: dict) -> str:
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(article_ids.astype(np.int64)).tobytes())
    h.update(np.ascontiguousarray(has_image.astype(np.int8)).tobytes())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _read_manifest(shard_dir: Path, fingerprint: str) -> dict:
    """The manifest of an earlier run with the same fingerprint, else a fresh one
    (shards of a different export are deleted, with a warning)."""
    mpath = shard_dir / MANIFEST
    if mpath.is_file():
        try:
            man = read_json(mpath)
        except (OSError, ValueError):
            man = None
        if man and man.get("fingerprint") == fingerprint:
            return man
        warnings.warn(f"{shard_dir} holds shards of a different export (other model, articles or "
                      "settings); starting over", stacklevel=3)
    if shard_dir.exists():
        shutil.rmtree(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    return {"fingerprint": fingerprint, "shards": {}}


def _shard_file(shard_dir: Path, i: int) -> Path:
    return shard_dir / f"part-{i:05d}.parquet"


def _emb_column(name: str) -> str:
    return f"{EMBEDDING}__{name}"


def _list_array(vectors: list, ok: np.ndarray) -> pa.Array:
    """list<float32> array from per-row vectors (None where ``ok`` is False), via one flat buffer."""
    lengths = np.array([0 if v is None else v.shape[0] for v in vectors], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    present = [v for v in vectors if v is not None]
    values = np.concatenate(present).astype(np.float32) if present else np.zeros(0, np.float32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32()), mask=pa.array(~ok))


def _embed_shard(ids, paths, has, tab, names, *, embed_fn, dataset_fn, image_size, batch_size, reduced_scale,
                 on_batch) -> tuple[pa.Table, list[int], dict]:
    """Embed one shard: (shard table, unreadable article ids, {name: embedding dim or None})."""
    n = len(ids)
    status = np.where(has, STATUS_UNREADABLE, STATUS_NO_IMAGE).astype(np.int8)
    rows = np.nonzero(has)[0]
    vectors = {name: [None] * n for name in names}
    dims = {name: None for name in names}
    if rows.size:
        ds = dataset_fn([str(p) for p in paths[rows]], image_size, batch_size, reduced_scale=reduced_scale)
        for idx, imgs in ds:
            idx = np.asarray(idx, dtype=np.int64)
            local = rows[idx]
            out = embed_fn(imgs, None if tab is None else tab[local])
            for name in names:
                emb = out[name]
                if emb.ndim != 2 or emb.shape[0] != len(idx):
                    raise ValueError(f"model {name!r} returned shape {emb.shape} for a batch of {len(idx)} "
                                     "images; expected [batch, embedding_dim]")
                dims[name] = int(emb.shape[1])
                for j, r in enumerate(local):
                    vectors[name][r] = emb[j]
            status[local] = STATUS_OK
            on_batch(len(idx))
    unreadable = [int(a) for a in ids[status == STATUS_UNREADABLE]]
    ok = status == STATUS_OK
    cols = {ARTICLE_ID: pa.array(ids.astype(np.int32)), "status": pa.array(status)}
    cols.update({_emb_column(name): _list_array(vectors[name], ok) for name in names})
    return pa.table(cols, schema=_shard_schema(names)), unreadable, dims


def _shard_schema(names) -> pa.Schema:
    return pa.schema([pa.field(ARTICLE_ID, pa.int32()), pa.field("status", pa.int8())]
                     + [pa.field(_emb_column(n), pa.list_(pa.float32())) for n in names])


# ------------------------------------------------------------------- export ---
def write_embedding_file(path, articles: pd.DataFrame, article_ids, column, include_article_columns: bool,
                         meta: dict) -> Path:
    """Write one embedding file (CONTRIBUTING.md) atomically: ``article_id`` int32 (``article_ids``,
    [n]) + ``embedding`` (``column``, a list<float32> array of n rows, null without an embedding), or,
    with ``include_article_columns``, every column of ``articles`` (n rows, same order) + ``embedding``.
    ``meta`` (embedding_dim, image_size, reduced_scale, precision) goes into the schema metadata under
    ``hm_embeddings``. Used by the image export and by :mod:`hm_utils.export.from_features`."""
    if include_article_columns:
        base = pa.Table.from_pandas(articles.reset_index(drop=True), preserve_index=False)
        if EMBEDDING in base.column_names:
            base = base.drop_columns([EMBEDDING])
        final = base.append_column(pa.field(EMBEDDING, pa.list_(pa.float32())), column)
    else:
        final = pa.table({ARTICLE_ID: article_ids, EMBEDDING: column})
    final = final.replace_schema_metadata({**(final.schema.metadata or {}),
                                           b"hm_embeddings": json.dumps(meta).encode()})
    return write_parquet(final, path)


def export_embeddings(model, articles: pd.DataFrame, images: pd.DataFrame, out_path: str | Path, *,
                      image_size: tuple[int, int], batch_size: int = DEFAULT_BATCH_SIZE, shard_size: int = DEFAULT_SHARD_SIZE,
                      include_article_columns: bool = False, tabular: np.ndarray | None = None,
                      shard_dir: str | Path | None = None, reduced_scale: bool = True,
                      data_dir: str | Path | None = None, dataset_fn: Callable | None = None,
                      progress: bool = True, keep_shards: bool = False, precision: str = "float32") -> ExportReport:
    """Embed every article and write one parquet row per article (streamed, resumable).

    Inputs:
      ``model``: a one-tower keras embedding model (``hm_utils.model.siamese``): the
        image-only one takes ``image`` float32 [B, H, W, 3] raw 0..255 pixels,
        the combined one ``{"image": ..., "tabular": float32 [B, 11]}``; it returns
        float32 [B, d]. Any callable with the same behaviour also works.
      ``articles``: DataFrame with ``article_id`` (int) and, for
        ``include_article_columns``, the articles.csv columns; output row order.
      ``images``: DataFrame ``article_id``, ``has_image`` bool and ``abs_path``
        (as ``hm_utils.core.workdir.load_images`` returns) or ``path`` + ``data_dir``.
      ``out_path``: the parquet file to write.
      ``image_size``: (height, width) in pixels the model expects.
      ``batch_size``: images per model call; ``shard_size``: articles per shard
        (the unit of resumption).
      ``include_article_columns``: write all article columns + ``embedding``
        (the combined file) instead of ``article_id`` + ``embedding``.
      ``tabular``: float32 [n_articles, 11] aligned with ``articles`` for the
        combined model; default ``hm_utils.model.siamese.tabular_features(articles)``.
      ``shard_dir``: default ``<out_path>.shards``; ``keep_shards`` keeps it after success.
      ``reduced_scale``: let the JPEG decoder downscale by 2/4/8 while decoding
        when the file is at least that much larger than ``image_size``.
      ``dataset_fn``: ``(paths, image_size, batch_size, reduced_scale=) ->``
        iterable of ``(index int [B], images float32 [B,H,W,3])`` with
        unreadable files left out; default ``hm_utils.data.images.image_dataset``.
      ``precision``: what an ``hm_utils.model.siamese`` tower's backbone computes in:
        "float32" (default; equal to the model up to float rounding),
        "bfloat16" or "auto" (bfloat16 on a CPU with AMX-BF16 and no GPU: about
        5x faster for ResNet50 there, embeddings within about 1e-2 relative of
        float32; see :mod:`hm_utils.model.inference`). The backbone always runs with its
        batch norms folded into the convolutions and its weights frozen.

    Output: an :class:`ExportReport`. The file has ``article_id`` int32 and
    ``embedding`` list<float32> (null: no image, or image unreadable -> a
    :class:`UnreadableImageWarning` naming the article ids). See
    :func:`export_embeddings_many` for several models in one pass.
    """
    reports = export_embeddings_many(
        {"model": model}, articles, images, {"model": out_path}, image_size=image_size, batch_size=batch_size,
        shard_size=shard_size, include_article_columns={"model": include_article_columns}, tabular=tabular,
        shard_dir=shard_dir, reduced_scale=reduced_scale, data_dir=data_dir, dataset_fn=dataset_fn,
        progress=progress, keep_shards=keep_shards, precision=precision)
    return reports["model"]


def export_embeddings_many(models: dict, articles: pd.DataFrame, images: pd.DataFrame, out_paths: dict, *,
                           image_size: tuple[int, int], batch_size: int = DEFAULT_BATCH_SIZE, shard_size: int = DEFAULT_SHARD_SIZE,
                           include_article_columns: dict | None = None, tabular: np.ndarray | None = None,
                           shard_dir: str | Path | None = None, reduced_scale: bool = True,
                           data_dir: str | Path | None = None, dataset_fn: Callable | None = None,
                           progress: bool = True, keep_shards: bool = False,
                           precision: str = "float32") -> dict[str, ExportReport]:
    """:func:`export_embeddings` for several models in one pass over the images.

    ``models`` ``{name: model}`` and ``out_paths`` ``{name: parquet path}``
    (same keys); ``include_article_columns`` ``{name: bool}`` (default False).
    Every image is decoded once for all models; when the models share a
    backbone with identical weights (:func:`shared_backbone`: the frozen
    backbone of notebook 03's two variants) it also runs once per batch, and
    only the heads run per model. ``precision`` as in :func:`export_embeddings`. Shards (one column per model) live in
    ``shard_dir`` (default ``<first out_path>.shards``) and make the export
    resumable as a whole. Output: ``{name: ExportReport}`` (``seconds`` and
    ``images_per_second`` are those of the shared pass).
    """
    names = list(models)
    if not names:
        raise ValueError("no models to export")
    if set(out_paths) != set(names):
        raise ValueError(f"out_paths keys {sorted(out_paths)} differ from the models {sorted(names)}")
    include = {n: bool((include_article_columns or {}).get(n, False)) for n in names}
    out_paths = {n: Path(out_paths[n]) for n in names}
    require_columns(articles, [ARTICLE_ID], "articles frame")
    if articles[ARTICLE_ID].duplicated().any():
        dup = articles.loc[articles[ARTICLE_ID].duplicated(), ARTICLE_ID].iloc[0]
        raise ValueError(f"articles frame lists article {dup} more than once")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be >= 1, got {batch_size}, {shard_size}")
    if dataset_fn is None:
        from hm_utils.data.images import image_dataset as dataset_fn
    t0 = time.perf_counter()
    ids = articles[ARTICLE_ID].astype(np.int64).to_numpy()
    paths, has = _paths_and_flags(images, ids, data_dir)
    from hm_utils.model.siamese import model_variant
    combined = {n: model_variant(m) == "combined" for n, m in models.items()}
    tab = None
    if any(combined.values()):
        if tabular is None:
            from hm_utils.model.siamese import tabular_features
            tabular = tabular_features(articles)
        tab = np.asarray(tabular, dtype=np.float32)
        if tab.shape[0] != len(articles):
            raise ValueError(f"tabular has {tab.shape[0]} rows for {len(articles)} articles")
    requested, precision = precision, resolve_precision(precision)

    settings = {"image_size": list(image_size), "shard_size": int(shard_size), "reduced_scale": bool(reduced_scale),
                "precision": precision,
                "models": {n: [combined[n], model_digest(models[n])] for n in names},
                "tabular": hashlib.sha1(np.ascontiguousarray(tab).tobytes()).hexdigest() if tab is not None else None,
                "paths": hashlib.sha1("\n".join(map(str, paths)).encode()).hexdigest()}
    sdir = Path(shard_dir) if shard_dir is not None else shard_dir_for(out_paths[names[0]])
    manifest = _read_manifest(sdir, _fingerprint(ids, has, settings))
    n_shards = max(1, -(-len(ids) // shard_size))
    manifest["n_shards"] = n_shards
    # a resumed export keeps the precision its first shards were computed in
    used_before = manifest.get("precision_used")
    embed_fn = make_embed_fn(models, combined, tuple(image_size), None if tab is None else tab.shape[1],
                              precision=used_before or precision, strict=requested != "auto" or bool(used_before))

    done = {int(k) for k in manifest["shards"] if _shard_file(sdir, int(k)).is_file()}
    todo = [i for i in range(n_shards) if i not in done]
    n_images_todo = int(sum(has[i * shard_size:(i + 1) * shard_size].sum() for i in todo))
    from tqdm.auto import tqdm
    label = ", ".join(p.name for p in out_paths.values())
    bar = tqdm(total=len(ids), desc=f"export {label}", unit="article", disable=not progress)
    bar.update(len(ids) - sum(min(shard_size, len(ids) - i * shard_size) for i in todo))
    computed = 0
    t_images = time.perf_counter()

    def on_batch(k):
        nonlocal computed
        computed += k
        rate = computed / max(time.perf_counter() - t_images, 1e-9)
        bar.set_postfix({"images/s": f"{rate:.1f}", "images": f"{computed}/{n_images_todo}"}, refresh=False)

    try:
        for i in todo:
            sl = slice(i * shard_size, (i + 1) * shard_size)
            before = computed
            table, unreadable, dims = _embed_shard(
                ids[sl], paths[sl], has[sl], None if tab is None else tab[sl], names, embed_fn=embed_fn,
                dataset_fn=dataset_fn, image_size=tuple(image_size), batch_size=batch_size,
                reduced_scale=reduced_scale, on_batch=on_batch)
            if unreadable:
                shown = ", ".join(map(str, unreadable[:20])) + (" ..." if len(unreadable) > 20 else "")
                warnings.warn(f"{len(unreadable)} image(s) could not be decoded; these articles get a null "
                              f"embedding: {shown}", UnreadableImageWarning, stacklevel=3)
            write_parquet(table, _shard_file(sdir, i))
            manifest["precision_used"] = getattr(embed_fn, "state", {}).get("precision", precision)
            manifest["shards"][str(i)] = {"rows": table.num_rows, "embedded": computed - before,
                                          "unreadable": unreadable, "dims": dims}
            write_json(manifest, sdir / MANIFEST)
            bar.update(table.num_rows)
    finally:
        bar.close()
    elapsed_images = time.perf_counter() - t_images

    used_precision = getattr(embed_fn, "state", {}).get("precision", precision)
    schema = _shard_schema(names)
    shards = pa.concat_tables([pq.read_table(_shard_file(sdir, i), schema=schema)
                               for i in range(n_shards)]).combine_chunks()
    if shards.num_rows != len(ids) or not np.array_equal(shards[ARTICLE_ID].to_numpy(), ids.astype(np.int32)):
        raise RuntimeError(f"the shards in {sdir} do not line up with the articles; delete the folder and rerun")
    status = shards["status"].to_numpy()
    unreadable_ids = [a for m in (manifest["shards"][str(i)] for i in range(n_shards)) for a in m["unreadable"]]
    reports = {}
    for name in names:
        dims = {int(m["dims"][name]) for m in manifest["shards"].values() if m["dims"].get(name) is not None}
        if len(dims) > 1:
            raise RuntimeError(f"shards in {sdir} have different embedding sizes {sorted(dims)} for {name!r}; "
                               "delete the folder and rerun")
        dim = next(iter(dims), None)
        write_embedding_file(out_paths[name], articles, shards[ARTICLE_ID], shards[_emb_column(name)], include[name],
                             {"embedding_dim": dim, "image_size": list(image_size),
                              "reduced_scale": bool(reduced_scale), "precision": used_precision})
        reports[name] = ExportReport(
            path=str(out_paths[name]), n_articles=len(ids), n_embedded=int((status == STATUS_OK).sum()),
            n_missing_image=int((status == STATUS_NO_IMAGE).sum()),
            n_unreadable=int((status == STATUS_UNREADABLE).sum()), unreadable_ids=list(unreadable_ids),
            embedding_dim=dim, shards_total=n_shards, shards_reused=n_shards - len(todo), images_computed=computed,
            seconds=time.perf_counter() - t0,
            images_per_second=computed / elapsed_images if computed and elapsed_images > 0 else 0.0,
            precision=used_precision)
    if not keep_shards:
        shutil.rmtree(sdir, ignore_errors=True)
    return reports


# ---------------------------------------------------------------- summaries ---

def export_summary(reports: dict[str, ExportReport]) -> pd.DataFrame:
    """One row per exported file: file name, rows, embedded, missing (no image),
    unreadable, embedding size, shards (reused), precision, images/second, seconds."""
    rows = []
    for name, r in reports.items():
        rows.append({"model": name, "file": Path(r.path).name, "rows": r.n_articles, "embedded": r.n_embedded,
                     "no_image": r.n_missing_image, "unreadable": r.n_unreadable, "dim": r.embedding_dim,
                     "shards": r.shards_total, "shards_reused": r.shards_reused, "precision": r.precision,
                     "images_per_second": round(r.images_per_second, 1), "seconds": round(r.seconds, 2)})
    return pd.DataFrame(rows)


def verify_export(model, path: str | Path, images: pd.DataFrame, *, image_size: tuple[int, int],
                  n: int = 8, seed: int = 0, tabular: np.ndarray | None = None,
                  articles: pd.DataFrame | None = None, data_dir=None) -> dict:
    """Re-embed a few articles one by one and compare with the exported file.

    Takes ``n`` random articles (seeded) that have an embedding in ``path``,
    decodes each image with :func:`hm_utils.data.images.load_image` and runs
    ``model`` on it alone (batch of 1, no tf.data, no shards). For the combined
    model pass ``articles`` (same row order as the file) or ``tabular``.
    Output: ``{"checked": k, "max_abs_diff": float, "max_rel_diff": float,
    "min_cosine": float}`` (``max_rel_diff``: largest absolute difference over
    the largest absolute value of the fresh embeddings; the measure for a
    bfloat16 export, whose file differs from the float32 model by about 1e-2).
    """

    emb = load_embeddings(path, keep_raw=True)
    ids, (mat, has) = emb.given_ids, emb.aligned()
    if not has.any():
        return {"checked": 0, "max_abs_diff": float("nan"), "max_rel_diff": float("nan"), "min_cosine": float("nan")}
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(np.flatnonzero(has), size=min(n, int(has.sum())), replace=False))
    paths, _ = _paths_and_flags(images, ids, data_dir)
    from hm_utils.model.siamese import model_variant
    combined = model_variant(model) == "combined"
    if combined and tabular is None:
        if articles is None:
            raise ValueError("verify_export needs articles (or tabular) for the combined model")
        from hm_utils.model.siamese import tabular_features
        tabular = tabular_features(articles)
    fresh = []
    for r in rows:
        img = load_image(paths[r], image_size)[None]
        inputs = {"image": img, "tabular": np.asarray(tabular, np.float32)[r:r + 1]} if combined else (
            {"image": img} if isinstance(getattr(model, "input", None), dict) else img)
        fresh.append(np.asarray(model(inputs, training=False), dtype=np.float32)[0])
    fresh = np.stack(fresh)
    diff = float(np.abs(fresh - mat[rows]).max())
    return {"checked": int(len(rows)), "max_abs_diff": diff,
            "max_rel_diff": diff / max(float(np.abs(fresh).max()), 1e-12),
            "min_cosine": float(pairwise_cosine(fresh, mat[rows]).min())}

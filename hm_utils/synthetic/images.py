"""Article images for the synthetic dataset (Pillow + numpy only).

Each article is drawn as its product type's silhouette (a simple polygon: top,
sweater, dress, trousers, shoe, bag, ...) on a light background, filled with its
colour group's RGB and a pattern by its graphical appearance (stripes, dots,
checks, all-over print, front print, colour block, denim twill, melange noise),
with jitter in position and scale and pixel noise. Every image has its own
generator seeded by ``(seed, article row)``, so the images never change the
CSVs and can be drawn in parallel.

Public: :func:`render_article_image`, :func:`write_images`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hm_utils.core import config as C
from hm_utils.synthetic.catalogue import COLOURS, PATTERNS, PRODUCT_TYPES


def _shape(name: str):
    """Silhouette primitives in a unit box (x right, y down): list of (kind, data)."""
    P = "poly"
    sweater = [(0.30, 0.10), (0.42, 0.10), (0.5, 0.15), (0.58, 0.10), (0.70, 0.10), (0.90, 0.25), (0.96, 0.80),
               (0.86, 0.82), (0.76, 0.38), (0.74, 0.88), (0.26, 0.88), (0.24, 0.38), (0.14, 0.82), (0.04, 0.80),
               (0.10, 0.25)]
    shapes = {
        "tee": [(P, [(0.30, 0.10), (0.42, 0.10), (0.5, 0.16), (0.58, 0.10), (0.70, 0.10), (0.92, 0.28),
                     (0.82, 0.36), (0.74, 0.30), (0.74, 0.90), (0.26, 0.90), (0.26, 0.30), (0.18, 0.36),
                     (0.08, 0.28)])],
        "sweater": [(P, sweater)],
        "jacket": [(P, sweater), ("line", [(0.5, 0.15), (0.5, 0.88)])],
        "coat": [(P, [(x, 0.96 if y > 0.85 else y) for x, y in sweater]), ("line", [(0.5, 0.15), (0.5, 0.96)])],
        "hoodie": [(P, sweater), ("ellipse", (0.36, 0.02, 0.64, 0.2))],
        "vest": [(P, [(0.34, 0.08), (0.40, 0.08), (0.42, 0.24), (0.58, 0.24), (0.60, 0.08), (0.66, 0.08),
                      (0.68, 0.30), (0.74, 0.40), (0.74, 0.90), (0.26, 0.90), (0.26, 0.40), (0.32, 0.30)])],
        "trousers": [(P, [(0.25, 0.06), (0.75, 0.06), (0.82, 0.95), (0.58, 0.95), (0.50, 0.32), (0.42, 0.95),
                          (0.18, 0.95)])],
        "leggings": [(P, [(0.30, 0.06), (0.70, 0.06), (0.66, 0.95), (0.54, 0.95), (0.50, 0.30), (0.46, 0.95),
                          (0.34, 0.95)])],
        "shorts": [(P, [(0.22, 0.25), (0.78, 0.25), (0.86, 0.70), (0.56, 0.72), (0.50, 0.48), (0.44, 0.72),
                        (0.14, 0.70)])],
        "skirt": [(P, [(0.32, 0.15), (0.68, 0.15), (0.86, 0.80), (0.14, 0.80)])],
        "dress": [(P, [(0.36, 0.06), (0.42, 0.06), (0.5, 0.12), (0.58, 0.06), (0.64, 0.06), (0.66, 0.34),
                       (0.62, 0.42), (0.88, 0.94), (0.12, 0.94), (0.38, 0.42), (0.34, 0.34)])],
        "jumpsuit": [(P, [(0.32, 0.06), (0.42, 0.06), (0.5, 0.12), (0.58, 0.06), (0.68, 0.06), (0.70, 0.44),
                          (0.78, 0.95), (0.56, 0.95), (0.50, 0.56), (0.44, 0.95), (0.22, 0.95), (0.30, 0.44)])],
        "bra": [(P, [(0.12, 0.42), (0.30, 0.26), (0.46, 0.40), (0.5, 0.42), (0.54, 0.40), (0.70, 0.26),
                     (0.88, 0.42), (0.88, 0.52), (0.12, 0.52)])],
        "briefs": [(P, [(0.16, 0.32), (0.84, 0.32), (0.82, 0.42), (0.58, 0.64), (0.42, 0.64), (0.18, 0.42)])],
        "swimsuit": [(P, [(0.34, 0.08), (0.40, 0.08), (0.44, 0.28), (0.56, 0.28), (0.60, 0.08), (0.66, 0.08),
                          (0.70, 0.34), (0.68, 0.62), (0.80, 0.78), (0.56, 0.86), (0.44, 0.86), (0.20, 0.78),
                          (0.32, 0.62), (0.30, 0.34)])],
        "sock": [(P, [(0.38, 0.10), (0.58, 0.10), (0.58, 0.62), (0.80, 0.72), (0.82, 0.84), (0.70, 0.88),
                      (0.38, 0.80)])],
        "shoe": [(P, [(0.08, 0.55), (0.40, 0.50), (0.55, 0.42), (0.70, 0.45), (0.90, 0.60), (0.92, 0.70),
                      (0.08, 0.70)])],
        "boot": [(P, [(0.30, 0.15), (0.58, 0.15), (0.60, 0.55), (0.88, 0.65), (0.90, 0.78), (0.30, 0.78)])],
        "sandal": [(P, [(0.08, 0.62), (0.30, 0.48), (0.35, 0.62), (0.55, 0.48), (0.60, 0.61), (0.90, 0.60),
                        (0.92, 0.68), (0.08, 0.70)])],
        "bag": [(P, [(0.18, 0.38), (0.82, 0.38), (0.88, 0.85), (0.12, 0.85)]), ("arc", (0.30, 0.18, 0.70, 0.58))],
        "hat": [(P, [(0.10, 0.55), (0.25, 0.52), (0.28, 0.35), (0.40, 0.26), (0.60, 0.26), (0.72, 0.35),
                     (0.75, 0.52), (0.90, 0.55), (0.90, 0.61), (0.10, 0.61)])],
        "scarf": [(P, [(0.30, 0.05), (0.62, 0.05), (0.70, 0.95), (0.40, 0.95)])],
        "earring": [("ellipse", (0.22, 0.40, 0.42, 0.56)), ("ellipse", (0.58, 0.40, 0.78, 0.56))],
        "belt": [(P, [(0.04, 0.46), (0.96, 0.46), (0.96, 0.54), (0.04, 0.54)]), ("rect", (0.08, 0.43, 0.2, 0.57))],
        "sunglasses": [("ellipse", (0.10, 0.40, 0.45, 0.58)), ("ellipse", (0.55, 0.40, 0.90, 0.58)),
                       ("rect", (0.42, 0.44, 0.58, 0.47))],
        "gloves": [(P, [(0.30, 0.20), (0.40, 0.20), (0.42, 0.35), (0.50, 0.18), (0.60, 0.18), (0.62, 0.40),
                        (0.72, 0.30), (0.78, 0.36), (0.66, 0.60), (0.66, 0.85), (0.32, 0.85)])],
    }
    return shapes[name]


def render_article_image(shape: str, rgb: tuple[int, int, int], pattern: str, image_size: tuple[int, int],
                         rng: np.random.Generator):
    """Draw one article image.

    Inputs: ``shape`` a silhouette name (``PRODUCT_TYPES``' 6th field), ``rgb`` the
    colour group's RGB (0..255), ``pattern`` one of ``PATTERNS``, ``image_size``
    (height, width) in pixels, ``rng`` for jitter and noise.
    Returns a ``PIL.Image.Image`` in mode RGB of that size.
    """
    from PIL import Image, ImageDraw

    h, w = image_size
    bg = int(rng.integers(228, 250))
    canvas = Image.new("RGB", (w, h), (bg, bg, bg - int(rng.integers(0, 6))))
    scale = rng.uniform(0.78, 0.98)
    bw, bh = w * scale, h * scale
    x0 = (w - bw) / 2 + rng.uniform(-0.06, 0.06) * w
    y0 = (h - bh) / 2 + rng.uniform(-0.05, 0.05) * h

    def tx(pts):
        return [(x0 + x * bw, y0 + y * bh) for x, y in pts]

    mask = Image.new("L", (w, h), 0)
    md = ImageDraw.Draw(mask)
    lw = max(1, int(round(min(w, h) * 0.03)))
    prims = _shape(shape)
    for kind, data in prims:
        if kind == "poly":
            md.polygon(tx(data), fill=255)
        elif kind in ("ellipse", "rect"):
            (a, b), (c, d) = tx([data[:2], data[2:]])
            (md.ellipse if kind == "ellipse" else md.rectangle)([a, b, c, d], fill=255)
        elif kind == "arc":
            (a, b), (c, d) = tx([data[:2], data[2:]])
            md.arc([a, b, c, d], 180, 360, fill=255, width=max(2, lw))

    base = np.array(rgb, dtype=np.float64)
    lum = base @ np.array([0.299, 0.587, 0.114])
    second = np.clip(base * 0.45, 0, 255) if lum > 110 else np.clip(base + (255 - base) * 0.65, 0, 255)
    col, col2 = tuple(int(v) for v in base), tuple(int(v) for v in second)
    fill = Image.new("RGB", (w, h), col)
    fd = ImageDraw.Draw(fill)
    step = max(4, int(min(w, h) * rng.uniform(0.08, 0.12)))
    off = int(rng.integers(0, step))
    if pattern == "stripe":
        for y in range(-step + off, h, step):
            fd.rectangle([0, y, w, y + step // 2 - 1], fill=col2)
    elif pattern == "check":
        for y in range(-step + off, h, step * 2):
            fd.rectangle([0, y, w, y + step - 1], fill=col2)
        for x in range(-step + off, w, step * 2):
            fd.rectangle([x, 0, x + step // 2, h], fill=col2)
    elif pattern == "dot":
        r = max(1, step // 4)
        for y in range(off, h, step):
            for x in range((y // step % 2) * step // 2, w, step):
                fd.ellipse([x - r, y - r, x + r, y + r], fill=col2)
    elif pattern == "allover":
        n = int(w * h / (step * step) * 1.2)
        xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
        rs = rng.uniform(0.15, 0.4, n) * step
        for x, y, r in zip(xs, ys, rs):
            fd.ellipse([x - r, y - r, x + r, y + r], fill=col2)
    elif pattern == "print":
        cx, cy = x0 + bw * 0.5, y0 + bh * rng.uniform(0.35, 0.5)
        r = bw * rng.uniform(0.12, 0.2)
        fd.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col2)
        fd.rectangle([cx - r * 0.9, cy + r * 1.3, cx + r * 0.9, cy + r * 1.6], fill=col2)
    elif pattern == "block":
        fd.rectangle([0, y0 + bh * rng.uniform(0.4, 0.6), w, h], fill=col2)
    elif pattern == "lace":
        r = max(1, step // 3)
        for y in range(off, h, step):
            for x in range(0, w, step):
                fd.ellipse([x - r, y - r, x + r, y + r], outline=col2)
    elif pattern == "denim":
        for x in range(-h, w, max(2, step // 3)):
            fd.line([(x, h), (x + h, 0)], fill=col2, width=1)
    canvas.paste(fill, (0, 0), mask)
    # outline and construction lines, darker than the garment, so white garments still show
    dark = tuple(int(v * 0.6) for v in base)
    cd = ImageDraw.Draw(canvas)
    for kind, data in prims:
        if kind == "poly":
            pts = tx(data)
            cd.line(pts + pts[:1], fill=dark, width=1)
        elif kind == "line":
            cd.line(tx(data), fill=dark, width=max(1, lw // 2))
    arr = np.asarray(canvas, dtype=np.int16)
    sigma = 14.0 if pattern == "melange" else 4.0
    arr = arr + rng.normal(0.0, sigma, size=arr.shape[:2] + (1,)).astype(np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _render_chunk(args) -> int:
    """Worker: render and save one chunk of images. ``args`` = (root, image_size, seed, rows) where
    rows are (article_row, article_id, shape, rgb, pattern). Returns the number written."""
    root, image_size, seed, rows = args
    root = Path(root)
    for row, aid, shape, rgb, pattern in rows:
        img = render_article_image(shape, rgb, pattern, image_size, np.random.default_rng([seed, row]))
        path = root / C.image_relpath(int(aid))
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, format="JPEG", quality=88)
    return len(rows)


def write_images(root: Path, articles: pd.DataFrame, art: dict, has_image: np.ndarray,
                 image_size: tuple[int, int], seed: int, workers: int, progress: bool) -> int:
    """Write ``root/images/0XX/0XXXXXXXXX.jpg`` for every article row with ``has_image``.

    ``articles``: the catalogue (``article_id`` strings, row order of the truth);
    ``art``: its truth dict (``type``, ``colour``, ``pattern`` int arrays aligned with
    the rows); ``image_size`` (height, width) pixels; ``workers`` > 1 renders in
    that many spawned processes. Returns the number of images written.
    """
    from tqdm.auto import tqdm

    rows = [(int(i), articles["article_id"].iat[i], PRODUCT_TYPES[art["type"][i]][5], COLOURS[art["colour"][i]][2],
             PATTERNS[art["pattern"][i]]) for i in np.flatnonzero(has_image)]
    chunk = 64
    jobs = [(str(root), tuple(image_size), int(seed), rows[i:i + chunk]) for i in range(0, len(rows), chunk)]
    bar = tqdm(total=len(rows), desc="synthetic images", unit="img", disable=not progress)
    if workers > 1 and len(rows) > 400:
        import multiprocessing as mp

        # spawn: safe even when the caller has TensorFlow (threads) loaded
        with mp.get_context("spawn").Pool(workers) as pool:
            for n in pool.imap_unordered(_render_chunk, jobs):
                bar.update(n)
    else:
        for job in jobs:
            bar.update(_render_chunk(job))
    bar.close()
    return len(rows)


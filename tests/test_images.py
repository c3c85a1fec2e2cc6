"""The tf.data image pipeline: shapes, reduced-scale decoding, unreadable files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hm_utils.images import (choose_jpeg_ratio, find_unreadable, image_dataset, load_image,
                             report_unreadable)


def _jpeg(path: Path, h: int, w: int, colour=(200, 40, 40)) -> Path:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:] = colour
    arr[: h // 2, : w // 2] = (20, 20, 220)  # a blue top-left quarter
    Image.fromarray(arr).save(path, quality=95)
    return path


def _sample_images(hm_sample: Path, n: int) -> list[Path]:
    paths = sorted((hm_sample / "images").glob("*/*.jpg"))[:n]
    if len(paths) < n:
        pytest.skip(f"hm_sample has fewer than {n} images")
    return paths


def test_choose_jpeg_ratio_by_hand():
    # 1750 x 1166 to 300 x 200: /4 -> 438 x 292 covers, /8 -> 219 x 146 does not
    assert choose_jpeg_ratio(1750, 1166, (300, 200)) == 4
    assert choose_jpeg_ratio(1750, 1166, (96, 64)) == 8
    assert choose_jpeg_ratio(300, 200, (300, 200)) == 1
    assert choose_jpeg_ratio(599, 400, (300, 200)) == 2   # ceil(599/2) = 300, ceil(400/2) = 200: covers
    assert choose_jpeg_ratio(597, 400, (300, 200)) == 1   # ceil(597/2) = 299 < 300


def test_real_jpeg_decodes_to_shape_and_range(hm_sample):
    path = _sample_images(hm_sample, 1)[0]
    img = load_image(path, (300, 200))
    assert img.shape == (300, 200, 3) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 255.0 and img.max() > 100  # raw pixels, not 0..1


def test_reduced_scale_close_to_full_decode(hm_sample):
    for path in _sample_images(hm_sample, 3):
        small = load_image(path, (300, 200), reduced_scale=True)
        full = load_image(path, (300, 200), reduced_scale=False)
        assert np.abs(small - full).mean() < 4.0  # out of 255
        assert np.abs(small - full).mean() > 0.0  # really a different decode path


def test_dataset_streams_indices_and_batches(tmp_path, hm_sample):
    paths = [str(p) for p in _sample_images(hm_sample, 5)] + [str(_jpeg(tmp_path / "x.jpg", 60, 40))]
    batches = list(image_dataset(paths, (48, 32), batch_size=4))
    assert [b[0].shape[0] for b in batches] == [4, 2]
    idx = np.concatenate([b[0].numpy() for b in batches])
    assert idx.tolist() == [0, 1, 2, 3, 4, 5]
    assert batches[0][1].shape == (4, 48, 32, 3) and batches[0][1].dtype.name == "float32"


def test_small_jpeg_content_kept(tmp_path):
    # 80 x 40 red image with a blue top-left quarter, stretched to 40 x 20 (ratio 2)
    img = load_image(_jpeg(tmp_path / "a.jpg", 80, 40), (40, 20))
    assert img[5, 3, 2] > 150 and img[5, 3, 0] < 80      # blue quarter
    assert img[35, 15, 0] > 150 and img[35, 15, 2] < 80  # red elsewhere


def test_png_named_jpg_still_decodes(tmp_path):
    p = tmp_path / "png.jpg"
    Image.fromarray(np.full((20, 10, 3), 128, np.uint8)).save(p, format="PNG")
    img = load_image(p, (20, 10))
    assert img.shape == (20, 10, 3) and abs(float(img.mean()) - 128) < 1


def test_unreadable_files_are_skipped_and_reported(tmp_path):
    good = _jpeg(tmp_path / "good.jpg", 60, 40)
    raw = (tmp_path / "good.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(raw[: len(raw) // 3])
    text = tmp_path / "text.jpg"
    text.write_text("this is not an image")
    missing = tmp_path / "missing.jpg"
    paths = [str(good), str(truncated), str(text), str(missing), str(good)]
    seen = np.concatenate([i.numpy() for i, _ in image_dataset(paths, (30, 20), batch_size=2)])
    assert seen.tolist() == [0, 4]
    with pytest.warns(UserWarning, match="truncated.jpg.*text.jpg.*missing.jpg"):
        assert report_unreadable(paths, seen) == [1, 2, 3]
    with pytest.warns(UserWarning, match="3 of 5"):
        assert find_unreadable(paths) == [1, 2, 3]
    with pytest.raises(ValueError, match="text.jpg"):
        load_image(text, (30, 20))
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        load_image(missing, (30, 20))


def test_empty_path_list():
    assert list(image_dataset([], (30, 20))) == []

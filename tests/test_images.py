"""The tf.data image pipeline: shapes, reduced-scale decoding, unreadable files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hm_utils.data.images import (PAD_VALUE, choose_jpeg_ratio, find_unreadable, fitted_size, image_dataset, load_image,
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


def _png_block(path: Path, h: int, w: int, colour=(200, 40, 40)) -> Path:
    Image.fromarray(np.full((h, w, 3), colour, np.uint8)).save(path, format="PNG")
    return path


def test_fitted_size_by_hand():
    assert fitted_size(10, 20, (40, 40)) == (20, 40)        # scale min(4, 2) = 2
    assert fitted_size(128, 128, (300, 200)) == (200, 200)  # the catalogue's square photos
    assert fitted_size(1750, 1166, (300, 200)) == (300, 200)  # 1166 * 300 / 1750 = 199.9 -> 200
    assert fitted_size(1000, 10, (30, 20)) == (30, 1)       # never below one pixel


def test_pad_keeps_the_aspect_ratio_and_pads_white(tmp_path):
    # a 10 x 20 solid red block into 40 x 40: resized to 20 x 40, 10 white rows above and below
    p = _png_block(tmp_path / "block.png", 10, 20)
    img = load_image(p, (40, 40), fit="pad")
    assert img.shape == (40, 40, 3)
    np.testing.assert_array_equal(img[:10], PAD_VALUE)
    np.testing.assert_array_equal(img[30:], PAD_VALUE)
    np.testing.assert_allclose(img[10:30], np.broadcast_to([200.0, 40.0, 40.0], (20, 40, 3)), atol=1e-3)
    # odd padding: 41 rows -> 10 above, 11 below
    img = load_image(p, (41, 40))  # "pad" is the default
    assert (img[:10] == PAD_VALUE).all() and (img[30:] == PAD_VALUE).all() and img[30:].shape[0] == 11
    np.testing.assert_allclose(img[10:30, :, 0], 200.0, atol=1e-3)
    # a tall block into a wide frame: white columns left and right (20 x 10 into 20 x 40: 15 + 10 + 15)
    img = load_image(_png_block(tmp_path / "tall.png", 20, 10), (20, 40))
    assert (img[:, :15] == PAD_VALUE).all() and (img[:, 25:] == PAD_VALUE).all()
    np.testing.assert_allclose(img[:, 15:25, 1], 40.0, atol=1e-3)
    # "stretch" (the original's) fills the whole frame
    img = load_image(p, (40, 40), fit="stretch")
    np.testing.assert_allclose(img[..., 0], 200.0, atol=1e-3)
    with pytest.raises(ValueError, match="crop"):
        load_image(p, (40, 40), fit="crop")


def test_pad_in_the_stream_and_with_reduced_jpeg_decoding(tmp_path):
    # 80 x 40 JPEG (red, blue top-left quarter) into 40 x 40: 40 x 20 in the middle columns
    jpg = _jpeg(tmp_path / "a.jpg", 80, 40)
    (_, imgs), = list(image_dataset([str(jpg)], (40, 40), batch_size=1, fit="pad"))
    img = imgs.numpy()[0]
    assert (img[:, :10] == PAD_VALUE).all() and (img[:, 30:] == PAD_VALUE).all()
    assert img[5, 13, 2] > 150 and img[5, 13, 0] < 80     # blue quarter, now at columns 10..19
    assert img[35, 25, 0] > 150 and img[35, 25, 2] < 80   # red
    np.testing.assert_array_equal(img, load_image(jpg, (40, 40)))
    stretched = next(iter(image_dataset([str(jpg)], (40, 40), batch_size=1, fit="stretch")))[1].numpy()[0]
    assert stretched[:, :10, 0].min() < 100  # no white band: the photo covers the frame


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


def test_article_image_paths_is_the_one_lookup(tmp_path):
    import pandas as pd

    from hm_utils.core.config import ARTICLE_ID, HAS_IMAGE, IMAGE_ABS_PATH, IMAGE_PATH
    from hm_utils.data.images import article_image_paths

    table = pd.DataFrame({ARTICLE_ID: [5, 3, 9, 4, 8], HAS_IMAGE: [True, False, True, True, True],
                          IMAGE_ABS_PATH: ["/p/5.jpg", "/p/3.jpg", "/p/9.jpg", "", None]})
    # any order of ids; no image (has_image False, empty or missing path) and unknown ids -> None
    got = article_image_paths(table, np.array([9, 3, 5, 7, 4, 8], np.int32))
    assert got.dtype == object and got.tolist() == ["/p/9.jpg", None, "/p/5.jpg", None, None, None]
    # the relative path joined to data_dir when there is no absolute one; without has_image every row has one
    rel = pd.DataFrame({ARTICLE_ID: [5, 9], IMAGE_PATH: ["images/005/5.jpg", "images/009/9.jpg"]})
    assert article_image_paths(rel, [9], data_dir=tmp_path).tolist() == [str(tmp_path / "images/009/9.jpg")]
    with pytest.raises(KeyError, match=IMAGE_ABS_PATH):
        article_image_paths(rel, [9])                                   # relative paths but no data_dir
    with pytest.raises(KeyError, match=ARTICLE_ID):
        article_image_paths(table.drop(columns=ARTICLE_ID), [9])
    with pytest.raises(ValueError, match="article 5 more than once"):
        article_image_paths(pd.concat([table, table.iloc[:1]]), [5])
    assert article_image_paths(None, [1, 2]).tolist() == [None, None]   # no table: no images

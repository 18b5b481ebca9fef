"""PairedVideoDataset: pairing, frame replacement, reversal, determinism, fitting and error messages."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from relumix_core.data.dataset import PairedVideoDataset, natural_key
from relumix_core.data.synth import write_dataset
from relumix_core.errors import ReLumixError


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """2 scenes x 3 lights x 6 frames x 32 px, rendered once for the module."""
    return write_dataset(tmp_path_factory.mktemp("ds") / "data", 2, 3, 6, 32, seed=0)


def pixels(path: Path) -> torch.Tensor:
    """A file as [3,H,W] in [-1,1], the dataset's convention."""
    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1.0


def frame_file(item: dict, light: str, k: int) -> Path:
    return Path(item["scene"]) / light / f"{k:05d}.png"


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_shapes_ranges_and_length(synth_root):
    ds = PairedVideoDataset(synth_root, num_frames=4, reverse_prob=0.0)
    assert len(ds) == 2 * 3 * 2
    item = ds[0]
    for key in ("source", "target", "source_raw", "noise"):
        assert item[key].shape == (4, 3, 32, 32), key
        assert item[key].dtype == torch.float32
    assert item["reference"].shape == (3, 32, 32)
    for key in ("source", "target", "source_raw", "reference"):
        assert item[key].min() >= -1.0 and item[key].max() <= 1.0
        assert item[key].max() - item[key].min() > 0.1  # real image content, not a constant
    assert item["cond_aug"].ndim == 0 and item["cond_aug"].item() == pytest.approx(0.02)
    assert abs(item["noise"].mean().item()) < 0.2 and 0.8 < item["noise"].std().item() < 1.2


def test_frame_replacement_and_pixels_match_files(synth_root):
    ds = PairedVideoDataset(synth_root, num_frames=3, stride=2, reverse_prob=0.0)
    for i in range(len(ds)):
        item = ds[i]
        assert item["source_light"] != item["target_light"]
        start = item["start"]
        assert 0 <= start <= 6 - 5
        assert torch.equal(item["source"][0], item["reference"])
        assert torch.equal(item["target"][0], item["reference"])
        assert torch.equal(item["source"][1:], item["source_raw"][1:])
        assert not torch.equal(item["source"][0], item["source_raw"][0])
        for t in range(3):
            k = start + 2 * t
            assert torch.allclose(item["source_raw"][t], pixels(frame_file(item, item["source_light"], k)))
            assert torch.allclose(item["target"][t], pixels(frame_file(item, item["target_light"], k)))


def test_every_ordered_pair_once_per_epoch(synth_root):
    ds = PairedVideoDataset(synth_root, num_frames=2)
    pairs = {(ds[i]["scene"], ds[i]["source_light"], ds[i]["target_light"]) for i in range(len(ds))}
    assert len(pairs) == len(ds)
    assert all(Path(scene).parent.parent == synth_root for scene, _, _ in pairs)


def test_reversal_flips_both_clips(synth_root):
    fwd = PairedVideoDataset(synth_root, num_frames=4, reverse_prob=0.0)
    rev = PairedVideoDataset(synth_root, num_frames=4, reverse_prob=1.0)
    for i in (0, 5):
        a, b = fwd[i], rev[i]
        assert a["start"] == b["start"] and not a["reversed"] and b["reversed"]
        assert torch.equal(b["source_raw"], a["source_raw"].flip(0))
        assert torch.equal(b["target"], a["target"].flip(0))
        assert torch.equal(b["reference"], a["target"][-1])  # replacement uses the reversed clip's first frame
        assert torch.equal(b["source"][0], a["target"][-1])


def test_reverse_prob_is_a_probability(synth_root):
    ds = PairedVideoDataset(synth_root, num_frames=2, reverse_prob=0.5, length=200)
    flips = sum(ds[i]["reversed"] for i in range(200))
    assert 60 < flips < 140


def test_deterministic_and_seed_dependent(synth_root):
    a = PairedVideoDataset(synth_root, num_frames=2, reverse_prob=0.5, seed=3, length=40)
    b = PairedVideoDataset(synth_root, num_frames=2, reverse_prob=0.5, seed=3, length=40)
    c = PairedVideoDataset(synth_root, num_frames=2, reverse_prob=0.5, seed=4, length=40)
    for i in (0, 7, 39):
        x, y = a[i], b[i]
        assert torch.equal(x["noise"], y["noise"]) and torch.equal(x["source"], y["source"])
        assert (x["start"], x["reversed"]) == (y["start"], y["reversed"])
    assert torch.equal(a[7]["noise"], a[7]["noise"])
    assert not torch.equal(a[0]["noise"], a[1]["noise"])
    assert not torch.equal(a[0]["noise"], c[0]["noise"])
    assert [a[i]["start"] for i in range(40)] != [c[i]["start"] for i in range(40)]


def test_crop_and_resize(synth_root, tmp_path):
    assert PairedVideoDataset(synth_root, 2, size=16)[0]["target"].shape == (2, 3, 16, 16)
    assert PairedVideoDataset(synth_root, 2, size=(24, 16), fit="resize")[0]["target"].shape == (2, 3, 24, 16)
    # a wide 64x32 render: crop keeps the centre, resize squeezes the whole width
    root = tmp_path / "wide"
    for light in ("a", "b"):
        folder = root / "m" / "s" / light
        folder.mkdir(parents=True)
        img = np.zeros((32, 64, 3), np.uint8)
        img[:, 16:48] = 255  # white centre half, black sides
        for k in range(2):
            Image.fromarray(img).save(folder / f"{k}.png")
    crop = PairedVideoDataset(root, 2, size=32, fit="crop")[0]["target"]
    squeeze = PairedVideoDataset(root, 2, size=32, fit="resize")[0]["target"]
    assert crop.shape == squeeze.shape == (2, 3, 32, 32)
    assert torch.all(crop == 1.0)
    assert squeeze[..., 0].max() < -0.9 and squeeze[..., 16].min() > 0.9


def test_authors_layout_with_other_names(tmp_path):
    root = tmp_path / "carla"
    names = ["frame_1.jpg", "frame_2.jpg", "frame_10.jpg", "frame_3.jpg"]
    for light, value in (("light_sunset", 40), ("light_noon", 200)):
        folder = root / "Town01" / "scene_a" / light
        folder.mkdir(parents=True)
        for name in names:
            k = int(name[6:-4])
            Image.fromarray(np.full((16, 16, 3), value + k, np.uint8)).save(folder / name, quality=100)
    (root / "meta.json").write_text("{}")
    ds = PairedVideoDataset(root, num_frames=4, reverse_prob=0.0)
    assert len(ds) == 2
    item = ds[0]
    assert Path(item["scene"]) == root / "Town01" / "scene_a"
    assert {item["source_light"], item["target_light"]} == {"light_sunset", "light_noon"}
    # natural order 1, 2, 3, 10: the mean brightness climbs 1, 1, 7 levels
    means = (item["source_raw"][:, 0].mean(dim=(1, 2)) + 1) * 127.5
    steps = (means[1:] - means[:-1]).round().tolist()
    assert steps == [1.0, 1.0, 7.0]
    assert sorted(names, key=natural_key) == ["frame_1.jpg", "frame_2.jpg", "frame_3.jpg", "frame_10.jpg"]


def test_unequal_frame_counts_use_the_minimum(synth_root, tmp_path):
    root = copy_tree(synth_root, tmp_path / "d")
    (root / "map_00" / "scene_0000" / "light_01" / "00005.png").unlink()
    ds = PairedVideoDataset(root, num_frames=5)
    assert ds.scenes[0].num_frames == 5 and ds.scenes[1].num_frames == 6
    with pytest.raises(ReLumixError, match=r"light_01 has 5 frames, fewer than the 6 needed"):
        PairedVideoDataset(root, num_frames=6)


def test_error_root_missing_or_empty(tmp_path):
    with pytest.raises(ReLumixError, match="nope"):
        PairedVideoDataset(tmp_path / "nope", 2)
    (tmp_path / "empty" / "map").mkdir(parents=True)
    with pytest.raises(ReLumixError, match=r"empty has no scenes"):
        PairedVideoDataset(tmp_path / "empty", 2)


def test_error_one_light(synth_root, tmp_path):
    root = copy_tree(synth_root, tmp_path / "d")
    scene = root / "map_00" / "scene_0001"
    for light in ("light_01", "light_02"):
        shutil.rmtree(scene / light)
    with pytest.raises(ReLumixError, match=r"scene_0001 has 1 light.*needs at least two lights to make pairs"):
        PairedVideoDataset(root, 2)


def test_error_too_few_frames(synth_root):
    with pytest.raises(ReLumixError, match=r"light_00 has 6 frames, fewer than the 7 needed"):
        PairedVideoDataset(synth_root, num_frames=4, stride=2)
    PairedVideoDataset(synth_root, num_frames=3, stride=2)  # span 5 fits in 6


def test_error_unreadable_image(synth_root, tmp_path):
    root = copy_tree(synth_root, tmp_path / "d")
    bad = root / "map_00" / "scene_0000" / "light_00" / "00000.png"
    bad.write_bytes(b"not a png")
    ds = PairedVideoDataset(root, num_frames=6, reverse_prob=0.0)
    with pytest.raises(ReLumixError, match=r"cannot read image .*light_00.00000\.png"):
        ds[0]  # item 0 is light_00 -> light_01 of scene_0000, the only start is 0


@pytest.mark.parametrize("size", [30, (32, 20), 0])
def test_error_size_not_multiple_of_8(synth_root, size):
    with pytest.raises(ReLumixError, match="multiples of 8"):
        PairedVideoDataset(synth_root, 2, size=size)


def test_error_native_size_not_multiple_of_8(tmp_path):
    root = tmp_path / "odd"
    for light in ("a", "b"):
        (root / "m" / "s" / light).mkdir(parents=True)
        Image.new("RGB", (20, 16)).save(root / "m" / "s" / light / "0.png")
    ds = PairedVideoDataset(root, 1)
    with pytest.raises(ReLumixError, match=r"0\.png is 20x16, not multiples of 8"):
        ds[0]
    assert PairedVideoDataset(root, 1, size=16)[0]["target"].shape == (1, 3, 16, 16)


def test_bad_options(synth_root):
    for kwargs in ({"fit": "pad"}, {"reverse_prob": 1.5}, {"stride": 0}, {"length": 0}):
        with pytest.raises(ReLumixError):
            PairedVideoDataset(synth_root, 2, **kwargs)
    with pytest.raises(IndexError):
        PairedVideoDataset(synth_root, 2)[12]


def test_dataloader_collates(synth_root):
    loader = torch.utils.data.DataLoader(PairedVideoDataset(synth_root, 2, size=16), batch_size=3)
    batch = next(iter(loader))
    assert batch["source"].shape == (3, 2, 3, 16, 16) and batch["cond_aug"].shape == (3,)
    assert len(batch["scene"]) == 3

"""Several relit keyframes in ComfyUI (issue 21): the keyframe_indices widget of Reference Replace and Embedding Fuse.

Called directly, without ComfyUI: parsing and each refusal, both keyframes placed in their frames, both reaching
``ReLumixPipeline.encode`` as a list with the reference batch, the shipped keyframes workflow's indices matching the
frames it loads, and workflows saved before the widget existed still valid.
"""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch
from comfy_graph import core_definition, definition_of, validate_prompt
from comfy_images import video
from pack_loader import PACK, load_pack

from relumix_core.errors import ReLumixError

REPO = Path(__file__).resolve().parents[2]
TINY = "relumix-tiny-random.safetensors"


def reference_module() -> ModuleType:
    load_pack()
    return importlib.import_module(f"{PACK}.nodes.reference")


def relit(frames: torch.Tensor, index: int, tint: tuple[float, float, float]) -> torch.Tensor:
    """Frame ``index`` of ``frames`` with a colour grade: a stand-in for an IC-Light result, [1,H,W,3]."""
    return (frames[index : index + 1] * torch.tensor(tint)).clamp(0, 1)


# ------------------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("text", "expected"), [
    ("0, 120", [0, 120]),
    ("0,120", [0, 120]),
    (" 5 ", [5]),
    ("0 12 24", [0, 12, 24]),
    ("0, 12, 24,", [0, 12, 24]),
    ("24, 0", [24, 0]),  # the batch's order, not sorted: image 1 is frame 24
    ("", None),
    ("   ", None),
])
def test_keyframe_indices_are_parsed(text: str, expected: list[int] | None) -> None:
    assert reference_module().parse_keyframe_indices(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("0, x", "'x' is not a frame index; write whole frame numbers separated by commas"),
    ("0, 1.5", "'1.5' is not a frame index"),
    ("0; 2e3", "'2e3' is not a frame index"),
    ("0, -1", "-1 is negative; frames count from 0"),
    ("7, 3, 7", "names frame 7 twice"),
])
def test_bad_keyframe_indices_are_explained(text: str, message: str) -> None:
    with pytest.raises(ReLumixError, match=message.replace(".", r"\.")) as caught:
        reference_module().parse_keyframe_indices(text)
    assert "\n" not in str(caught.value)


def test_the_count_must_match_the_reference_batch() -> None:
    keyframes = reference_module().keyframes
    two = torch.zeros(2, 8, 8, 3)
    assert keyframes("3, 9", two) == [3, 9]
    assert keyframes("4", two[:1]) == [4]  # one keyframe written as text is one reference at that frame
    assert keyframes("", two[:1]) is None
    with pytest.raises(ReLumixError, match=r"lists 3 frames \(0, 5, 9\) but the reference batch holds 2 images: "
                                           "give one frame index per image, in batch order"):
        keyframes("0, 5, 9", two)
    with pytest.raises(ReLumixError, match="lists 2 frames .* holds 1 image:"):
        keyframes("0, 5", two[:1])
    with pytest.raises(ReLumixError, match='batch of 2 images but keyframe_indices is empty: set keyframe_indices to '
                                           'one frame index per image'):
        keyframes("", two)


def test_widgets_are_optional_and_appended_after_the_old_ones(nodes: dict[str, type]) -> None:
    """Saved workflows keep working: the new widget is optional and comes after every old one."""
    tooltip = ('several relit keyframes: one frame index per image of the reference batch, e.g. "0, 120"; empty: '
               'one reference at reference_index')
    for name in ("ReferenceReplace", "EmbeddingFuse"):
        spec = nodes[name].INPUT_TYPES()
        assert spec["optional"]["keyframe_indices"] == ("STRING", {"default": "", "tooltip": tooltip})
        assert "keyframe_indices" not in spec["required"]
        assert "not used when keyframe_indices is set" in spec["required"]["reference_index"][1]["tooltip"]
    replace = nodes["ReferenceReplace"]
    assert replace.RETURN_TYPES == ("IMAGE", "IMAGE", "INT", "STRING")  # old links keep their slots
    assert replace.RETURN_NAMES[-1] == "keyframe_indices"


# ------------------------------------------------------------------------------------------- Reference Replace


def test_reference_replace_puts_each_keyframe_in_its_frame(nodes: dict[str, type]) -> None:
    frames = video(10)
    first, last = relit(frames, 0, (1.2, 0.9, 0.7)), relit(frames, 9, (0.6, 0.8, 1.3))
    batch = torch.cat([first, last])
    replaced, reference, index, keyframe_indices = nodes["ReferenceReplace"]().replace(frames, batch, 4, "auto",
                                                                                       "0, 9")
    assert replaced.shape == frames.shape and reference.shape == (2, 48, 80, 3)
    assert torch.equal(replaced[0], first[0]) and torch.equal(replaced[9], last[0])
    assert torch.equal(replaced[1:9], frames[1:9])
    assert torch.equal(reference, batch)
    assert (index, keyframe_indices) == (0, "0, 9")  # reference_index is not used; the first keyframe goes on


def test_reference_replace_conforms_every_keyframe(nodes: dict[str, type]) -> None:
    frames = video(6)
    batch = torch.cat([video(1, 96, 160), video(1, 96, 160) * 0.5])  # the same aspect at twice the size
    replaced, reference, _, keyframe_indices = nodes["ReferenceReplace"]().replace(frames, batch, 0, "auto",
                                                                                   "5 ,2")
    assert reference.shape == (2, 48, 80, 3) and keyframe_indices == "5, 2"
    assert torch.equal(replaced[5], reference[0]) and torch.equal(replaced[2], reference[1])
    with pytest.raises(ReLumixError, match="aspect"):
        nodes["ReferenceReplace"]().replace(frames, torch.cat([video(1, 80, 48)] * 2), 0, "auto", "0, 5")


def test_reference_replace_refuses_what_does_not_fit(nodes: dict[str, type]) -> None:
    replace = nodes["ReferenceReplace"]().replace
    two = torch.cat([video(1), video(1)])
    with pytest.raises(ReLumixError, match=r"keyframe_indices: frame 10 is outside the 10 frames of the video \(use "
                                           r"0\.\.9\)"):
        replace(video(10), two, 0, "auto", "0, 10")
    with pytest.raises(ReLumixError, match="lists 3 frames"):
        replace(video(10), two, 0, "auto", "0, 4, 9")
    with pytest.raises(ReLumixError, match="keyframe_indices is empty"):
        replace(video(10), two, 0, "auto", "")
    with pytest.raises(ReLumixError, match="negative"):
        replace(video(10), two, 0, "auto", "-1, 4")


# ---------------------------------------------------------------------------------------------- Embedding Fuse


def test_embedding_fuse_refuses_bad_indices_before_any_work(nodes: dict[str, type]) -> None:
    untouched = SimpleNamespace(reference_range="official", pipeline=None)  # any use of the pipeline would fail
    fuse = nodes["EmbeddingFuse"]().fuse
    two = torch.cat([video(1), video(1)])
    for text, message in (("0, 5, 9", "lists 3 frames"), ("0, nine", "not a frame index"), ("-2, 5", "negative"),
                          ("5, 5", "twice"), ("", "keyframe_indices is empty")):
        with pytest.raises(ReLumixError, match=message):
            fuse(untouched, video(10), two, 0, "custom", 64, "resize", 15, 0.02, 0, text)


def test_two_keyframes_reach_encode_as_a_list_and_sample(nodes: dict[str, type],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (model,) = nodes["LoadReLumixModel"]().load(TINY, "auto", "keep on GPU", "official")
    calls: list[tuple] = []
    encode = model.pipeline.encode

    def spy(frames, reference, reference_index, settings, generator):  # noqa: ANN001, ANN202
        calls.append((frames, reference, reference_index))
        return encode(frames, reference, reference_index, settings, generator)

    monkeypatch.setattr(model.pipeline, "encode", spy)
    frames = video(10)
    batch = torch.cat([relit(frames, 0, (1.2, 0.9, 0.7)), relit(frames, 9, (0.6, 0.8, 1.3))])
    replaced, reference, k, keyframe_indices = nodes["ReferenceReplace"]().replace(frames, batch, 0, "auto", "0, 9")
    (cond,) = nodes["EmbeddingFuse"]().fuse(model, replaced, reference, k, "custom", 64, "resize", 15, 0.02, 0,
                                            keyframe_indices)
    (_, given_reference, given_index), = calls
    assert given_index == [0, 9] and torch.equal(given_reference, batch)
    assert tuple(cond.reference_indices) == (0, 9)
    out, latent = nodes["ReLumixSampler"]().sample(model, cond, 0, 2, 1.0, 1.5, 6, 2, "anchor", 0, True)
    assert out.shape == frames.shape and 0 <= out.min() and out.max() <= 1
    assert latent["samples"].shape == (10, 4, 8, 8)


def test_a_keyframe_outside_the_clip_is_refused(nodes: dict[str, type]) -> None:
    """By the node, naming its widget; the library refuses a list of frames it is given the same way."""
    (model,) = nodes["LoadReLumixModel"]().load(TINY, "auto", "keep on GPU", "official")
    two = torch.cat([video(1), video(1)])
    with pytest.raises(ReLumixError, match=r"keyframe_indices: frame 6 is outside the 6 frames of the video \(use "
                                           r"0\.\.5\)"):
        nodes["EmbeddingFuse"]().fuse(model, video(6), two, 0, "custom", 64, "resize", 15, 0.02, 0, "0, 6")
    with pytest.raises(ReLumixError, match="outside the clip of 6 frames"):
        model.pipeline.encode(video(6), two, [0, 6])


# ------------------------------------------------------------------------------------------------- workflows


def test_the_keyframes_workflow_relights_the_first_and_last_frame_it_loads() -> None:
    """keyframe_indices "0, N-1" with N the frames the graph keeps, two relit images batched in that order."""
    wf = json.loads((REPO / "workflows" / "api" / "relumix_keyframes.json").read_text())

    def source(link: list) -> dict:
        return wf[str(link[0])]

    (replace,) = [n for n in wf.values() if n["class_type"] == "ReferenceReplace"]
    (fuse,) = [n for n in wf.values() if n["class_type"] == "EmbeddingFuse"]
    trim = source(replace["inputs"]["frames"])
    assert trim["class_type"] == "ImageFromBatch" and trim["inputs"]["batch_index"] == 0
    count = trim["inputs"]["length"]
    assert replace["inputs"]["keyframe_indices"] == f"0, {count - 1}"
    assert fuse["inputs"]["keyframe_indices"] == [next(k for k, n in wf.items() if n is replace), 3]
    batch = source(replace["inputs"]["reference"])
    assert batch["class_type"] == "ImageBatch"
    loaders = [source(batch["inputs"][key]) for key in ("image1", "image2")]
    assert [n["class_type"] for n in loaders] == ["LoadImage", "LoadImage"]
    previews = sorted(n["inputs"]["batch_index"] for n in wf.values()
                      if n["class_type"] == "ImageFromBatch" and n is not trim)
    assert previews == [0, count - 1]  # the two frames shown for relighting are the keyframes


def test_workflows_saved_before_keyframes_still_validate() -> None:
    """An API workflow without keyframe_indices (as every one saved before issue 21) is still a valid prompt."""
    pack = load_pack().NODE_CLASS_MAPPINGS
    wf = json.loads((REPO / "workflows" / "api" / "relumix_basic.json").read_text())
    old = copy.deepcopy(wf)
    for node in old.values():
        node["inputs"].pop("keyframe_indices", None)
    defs = {name: core_definition(name) for name in {n["class_type"] for n in old.values()} if name not in pack}
    defs.update({name: definition_of(cls) for name, cls in pack.items()})
    validate_prompt(old, defs, {"relumix_input.mp4", "relumix_reference.png", "relumix-tiny.safetensors"})
    assert any("keyframe_indices" in n["inputs"] for n in wf.values())  # the shipped one has the widget's default

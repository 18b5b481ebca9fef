"""relumix train: config checking, EDM pieces, the data order, both stages, ablations, checkpoints and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from relumix_core.checkpoints.loading import load_relumix
from relumix_core.cli.main import main as cli_main
from relumix_core.data.synth import write_dataset
from relumix_core.errors import ReLumixError
from relumix_core.pipeline.pipeline import ReLumixPipeline
from relumix_core.pipeline.settings import RelightSettings
from relumix_core.training import load_config, train
from relumix_core.training.config import BUILTIN_DIR, ConfigError, dump_toml
from relumix_core.training.data import StepSampler, item_index
from relumix_core.training.edm import loss_weight, sample_sigmas, weighted_mse
from relumix_core.training.ema import WeightAverage
from relumix_core.training.steps import chroma_l1, unet_inputs

pytest.importorskip("accelerate")

pytestmark = pytest.mark.slow  # every test here trains


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """2 scenes x 2 lights x 5 frames x 32 px."""
    return write_dataset(tmp_path_factory.mktemp("train") / "data", 2, 2, 5, 32, seed=3)


def tiny_overrides(root: Path, out: Path, **extra: object) -> list[str]:
    values = {
        "data.root": str(root), "data.num_frames": 4, "data.size": 32, "optim.batch_size": 1,
        "run.output_dir": str(out), "run.log_every": 1, "run.sample_every": 0, "run.checkpoint_every": 2,
        **extra,
    }
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


# ----------------------------------------------------------------------------------------------- config


def test_learning_rate_schedules():
    from relumix_core.training.trainer import lr_factor

    constant = load_config("tiny-unet", ["optim.warmup_steps=10", "run.max_steps=100"])
    assert [lr_factor(constant, s) for s in (0, 9, 50, 99)] == [0.1, 1.0, 1.0, 1.0]
    cosine = load_config("tiny-unet", ["optim.warmup_steps=0", "run.max_steps=100", 'optim.lr_schedule="cosine"',
                                       "optim.decay_start=40", "optim.min_lr_ratio=0.1"])
    assert lr_factor(cosine, 39) == 1.0 and lr_factor(cosine, 40) == 1.0
    assert lr_factor(cosine, 70) == pytest.approx(0.1 + 0.9 * 0.5)  # half way down the cosine
    assert lr_factor(cosine, 100) == pytest.approx(0.1)
    assert lr_factor(cosine, 60) > lr_factor(cosine, 61)
    for bad, key in (("optim.min_lr_ratio=2", "min_lr_ratio"), ("optim.decay_start=-1", "decay_start"),
                     ('optim.lr_schedule="linear"', "lr_schedule")):
        with pytest.raises(ConfigError, match=key):
            load_config("tiny-unet", ["run.max_steps=100", bad])


def test_a_run_saved_before_a_new_key_existed_still_resumes(tmp_path):
    from relumix_core.training.trainer import check_run_folder

    defaults = ['optim.lr_schedule="constant"', "optim.decay_start=0", "optim.min_lr_ratio=0.0"]
    config = load_config("tiny-unet", [f'run.output_dir="{tmp_path}"', *defaults])
    saved = config.to_dict()
    for key in ("lr_schedule", "decay_start", "min_lr_ratio"):
        del saved["optim"][key]  # as written by an older version
    (tmp_path / "config.json").write_text(json.dumps(saved))
    check_run_folder(tmp_path, config)  # the new keys are at their defaults: the same run
    changed = load_config("tiny-unet", [f'run.output_dir="{tmp_path}"', *defaults, "optim.lr=0.123"])
    with pytest.raises(ReLumixError, match="optim changed"):
        check_run_folder(tmp_path, changed)


def test_builtin_configs_load_and_round_trip(tmp_path):
    names = sorted(path.stem for path in BUILTIN_DIR.glob("*.toml"))  # every shipped config, none listed by hand
    assert {"relumix-svd", "tiny-vae", "tiny-unet-ema", "tiny-unet-colour-long"} <= set(names)
    for name in names:
        config = load_config(name)
        copy = tmp_path / f"{name}.toml"
        copy.write_text(dump_toml(config))
        assert load_config(copy).to_dict() == config.to_dict()
    svd = load_config("relumix-svd")  # the authors' recipe
    assert (svd.optim.lr, svd.diffusion.p_mean, svd.diffusion.p_std, svd.diffusion.sigma_data) == (2e-5, 1.0, 1.6, 1.0)
    assert svd.diffusion.concat_dropout == 0.1 and svd.data.cond_aug == 0.02 and svd.data.reverse_prob == 0.2
    refine, stage2 = load_config("tiny-unet-refine"), load_config("tiny-unet")
    assert (refine.model.init, refine.model.unet) == ("checkpoint", "keep")  # stage 3 warm-starts from stage 2
    assert refine.model.path == f"{stage2.run.output_dir}/model.safetensors"
    polish = load_config("tiny-unet-polish")  # stage 4 warm-starts from stage 3
    assert (polish.model.init, polish.model.unet) == ("checkpoint", "keep")
    assert polish.model.path == f"{refine.run.output_dir}/model.safetensors"
    ema = load_config("tiny-unet-ema")  # stage 5 warm-starts from stage 4 and keeps a weight average
    assert (ema.model.init, ema.model.unet) == ("checkpoint", "keep")
    assert ema.model.path == f"{polish.run.output_dir}/model.safetensors"
    assert 0 < ema.optim.ema_decay < 1
    decoder = load_config("tiny-vae-decoder")  # the last stage fine-tunes the decoder of stage 5's model
    assert (decoder.stage, decoder.vae.train_encoder, decoder.model.path) == (
        "vae", False, f"{ema.run.output_dir}/model.safetensors")
    assert decoder.data.num_frames == ema.data.num_frames
    chroma = load_config("tiny-vae-chroma")  # the latent lacks the axis: only the encoder can add it
    assert chroma.vae.train_encoder and chroma.vae.chroma_weight > 0 and chroma.model.init == "checkpoint"
    colour_vae, colour_unet = load_config("tiny-vae-colour"), load_config("tiny-unet-colour")
    assert colour_vae.model.init == "tiny" and colour_vae.vae.chroma_weight > 0  # a first stage from scratch
    assert colour_unet.model.first_stage == f"{colour_vae.run.output_dir}/model.safetensors"
    assert (colour_unet.model.init, colour_unet.model.unet) == ("checkpoint", "keep")
    # relumix-tiny v2: the colour first stage trained on, its decoder tuned, the UNet moved onto it
    long_vae, decoder_v2 = load_config("tiny-vae-colour-long"), load_config("tiny-vae-colour-decoder")
    assert long_vae.model.path == f"{colour_vae.run.output_dir}/model.safetensors" and long_vae.vae.train_encoder
    assert decoder_v2.model.path == f"{long_vae.run.output_dir}/model.safetensors" and not decoder_v2.vae.train_encoder
    assert decoder_v2.data.num_frames == colour_unet.data.num_frames
    unet_v2 = load_config("tiny-unet-colour-long")
    assert unet_v2.model.path == f"{colour_unet.run.output_dir}/model.safetensors"
    assert unet_v2.model.first_stage == f"{decoder_v2.run.output_dir}/model.safetensors"
    assert (unet_v2.model.init, unet_v2.model.unet) == ("checkpoint", "keep") and unet_v2.optim.ema_decay > 0


def test_config_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('stage = "unet"\n[optim]\nlearning_rate = 1e-4\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: unknown config key 'optim\.learning_rate'"):
        load_config(bad)
    bad.write_text('[data]\nnum_frames = "eight"\n')
    with pytest.raises(ConfigError, match="data.num_frames must be int"):
        load_config(bad)
    bad.write_text('stage = "vea"\n')
    with pytest.raises(ConfigError, match="stage must be one of unet, vae"):
        load_config(bad)
    bad.write_text("[data\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="built-in config"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="--set run.nothing=1: unknown config key 'run.nothing'"):
        load_config("tiny-vae", ["run.nothing=1"])
    assert load_config("tiny-vae", ["run.max_steps=7", "data.root=some/where"]).run.max_steps == 7


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    assert cli_main(["train", "tiny-vae", "--set", "bogus=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unknown config key 'bogus'" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------- EDM


def test_edm_sigmas_weighting_and_loss():
    gen = torch.Generator().manual_seed(0)
    sigmas = sample_sigmas(20000, 1.0, 1.6, gen)
    logs = sigmas.log()
    assert abs(logs.mean().item() - 1.0) < 0.05 and abs(logs.std().item() - 1.6) < 0.05
    sigma = torch.tensor([0.5, 1.0, 2.0])
    assert torch.allclose(loss_weight(sigma), (sigma**2 + 1) / sigma**2)
    x = torch.zeros(3, 2)
    d = torch.ones(3, 2)
    assert weighted_mse(d, x, torch.tensor([1.0, 2.0, 3.0])).item() == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------------- data order


def test_item_order_visits_every_pair_once_per_epoch():
    pairs = 12
    first = [item_index(5, p, pairs) for p in range(pairs)]
    second = [item_index(5, p, pairs) for p in range(pairs, 2 * pairs)]
    assert sorted(i % pairs for i in first) == list(range(pairs))
    assert sorted(i % pairs for i in second) == list(range(pairs))
    assert [i % pairs for i in first] != [i % pairs for i in second]  # reshuffled each epoch
    assert all(i >= pairs for i in second)  # other clip starts / reversals in the next epoch


def test_step_sampler_resumes_where_it_stopped_and_splits_processes():
    full = list(StepSampler(10, 1, 0, 6, batch=2, accum=2, rank=0, world=1))
    resumed = list(StepSampler(10, 1, 3, 6, batch=2, accum=2, rank=0, world=1))
    assert resumed == full[3 * 4 :]
    ranks = [list(StepSampler(10, 1, 0, 6, batch=2, accum=1, rank=r, world=2)) for r in range(2)]
    both = ranks[0] + ranks[1]
    assert len(set(both)) == len(both) == 24  # no clip twice across the two processes


# ----------------------------------------------------------------------------------------------- stages


@pytest.fixture(scope="module")
def vae_run(data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "vae"
    config = load_config("tiny-vae", tiny_overrides(data_root, out, **{"run.max_steps": 2}))
    return train(config, show_progress=False)


def test_vae_stage_exports_a_calibrated_model(vae_run):
    model, _ = load_relumix(vae_run)
    assert model.latent_factor == 4
    assert model.frame_encoder.encoder is model.vae.encoder
    assert 0 < model.config.scale_factor < 1e3 and model.config.scale_factor != pytest.approx(0.18215)
    log = (vae_run.parent / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,loss,") and len(log) == 3
    assert {"psnr", "kl"} <= set(log[0].split(","))


def test_unet_stage_trains_only_the_unet_and_resumes_exactly(vae_run, data_root, tmp_path):
    before, _ = load_relumix(vae_run)
    straight = tmp_path / "straight"
    overrides = tiny_overrides(data_root, straight, **{"model.path": str(vae_run), "run.max_steps": 4})
    out = train(load_config("tiny-unet", overrides), show_progress=False)
    after, _ = load_relumix(out)
    vae_same = all(torch.equal(a, b) for a, b in zip(before.vae.state_dict().values(),
                                                         after.vae.state_dict().values(), strict=True))
    assert vae_same, "the VAE must stay frozen in the UNet stage"
    split = tmp_path / "split"
    overrides = tiny_overrides(data_root, split, **{"model.path": str(vae_run), "run.max_steps": 2})
    train(load_config("tiny-unet", overrides), show_progress=False)
    overrides = tiny_overrides(data_root, split, **{"model.path": str(vae_run), "run.max_steps": 4})
    resumed = train(load_config("tiny-unet", overrides), show_progress=False)
    a = load_file(str(straight / "checkpoints" / "step_0000004" / "trainable.safetensors"))
    b = load_file(str(split / "checkpoints" / "step_0000004" / "trainable.safetensors"))
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, f"resumed run differs from the straight run by {worst}"
    rows = (split / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    model, _ = load_relumix(resumed)
    video = torch.rand(4, 3, 32, 32)
    frames = ReLumixPipeline(model).relight(video, video[0], settings=RelightSettings(num_steps=2, size=None))
    assert frames.shape == (4, 32, 32, 3) and torch.isfinite(frames).all()


def test_ablations_change_the_model_and_the_inputs(vae_run, data_root, tmp_path):
    overrides = tiny_overrides(
        data_root, tmp_path / "abl",
        **{"model.path": str(vae_run), "run.max_steps": 1, "ablation.gates": False,
           "ablation.embedding_fusion": False, "ablation.frame_replacement": False, "run.sample_every": 1,
           "run.sample_steps": 2},
    )
    config = load_config("tiny-unet", overrides)
    out = train(config, show_progress=False)
    model, _ = load_relumix(out)
    assert model.config.unet.in_channels == 8
    assert model.unet.gated_attention == []
    assert not any("gate" in name for name in model.unet.state_dict())
    assert (tmp_path / "abl" / "samples" / "step_0000001.gif").stat().st_size > 0
    from relumix_core.training.data import collate, make_dataset

    batch = collate([make_dataset(config)[0]])
    x0, cond, b, t = unet_inputs(model, batch, config, torch.Generator().manual_seed(0))
    assert cond.concat.shape[1] == 4  # no reference latent without embedding fusion
    config.ablation.frame_replacement = True
    _, cond_fr, _, _ = unet_inputs(model, batch, config, torch.Generator().manual_seed(0))
    assert not torch.allclose(cond.concat[0], cond_fr.concat[0])  # frame 0: source vs relit reference
    assert torch.allclose(cond.concat[1:], cond_fr.concat[1:])


def test_concat_dropout_zeroes_frames_and_reference_independently(vae_run, data_root, tmp_path):
    overrides = tiny_overrides(data_root, tmp_path / "x", **{"model.path": str(vae_run),
                                                             "diffusion.concat_dropout": 1.0})
    config = load_config("tiny-unet", overrides)
    from relumix_core.training.data import collate, make_dataset
    from relumix_core.training.setup import initial_model

    model = initial_model(config)
    batch = collate([make_dataset(config)[0]])
    _, cond, _, _ = unet_inputs(model, batch, config, torch.Generator().manual_seed(0))
    assert cond.concat.abs().max() == 0 and cond.crossattn.abs().max() > 0  # CLIP context is never dropped
    config.diffusion.concat_dropout = 0.0
    _, cond, _, _ = unet_inputs(model, batch, config, torch.Generator().manual_seed(0))
    assert (cond.concat.flatten(1).abs().amax(dim=1) > 0).all()


def test_a_run_folder_refuses_another_config(vae_run, data_root, tmp_path):
    out = tmp_path / "run"
    overrides = tiny_overrides(data_root, out, **{"model.path": str(vae_run), "run.max_steps": 1})
    train(load_config("tiny-unet", overrides), show_progress=False)
    with pytest.raises(ReLumixError, match="different config .*optim"):
        train(load_config("tiny-unet", overrides + ["optim.lr=0.1"]), show_progress=False)


def test_bad_dataset_errors_name_the_path(tmp_path):
    root = write_dataset(tmp_path / "d", 1, 2, 3, 32, seed=0)
    overrides = tiny_overrides(root, tmp_path / "run")
    with pytest.raises(ReLumixError, match=r"light_\d+ has 3 frames, fewer than the 4 needed"):
        train(load_config("tiny-vae", overrides), show_progress=False)
    one_light = tmp_path / "one" / "map" / "scene" / "light"
    one_light.mkdir(parents=True)
    with pytest.raises(ReLumixError, match=r"scene .*one/map/scene has 1 light folder"):
        train(load_config("tiny-vae", tiny_overrides(tmp_path / "one", tmp_path / "run2")), show_progress=False)


def test_killed_training_resumes_from_its_last_checkpoint(vae_run, data_root, tmp_path):
    """A real kill (SIGKILL) mid-run: the next run starts at the newest checkpoint and ends at max_steps."""
    out = tmp_path / "killed"
    args = ["train", "tiny-unet", "--quiet"]
    for text in tiny_overrides(data_root, out, **{"model.path": str(vae_run), "run.max_steps": 40,
                                                  "run.checkpoint_every": 1}):
        args += ["--set", text]
    proc = subprocess.Popen([sys.executable, "-m", "relumix_core", *args], cwd=REPO)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and not (out / "checkpoints" / "step_0000002").exists():
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    done = sorted(p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith("."))
    assert done, "no checkpoint was written before the kill"
    last = int(done[-1].split("_")[1])
    assert last < 40
    assert cli_main([*args[:2], "--quiet", *[a for a in args[3:]], "--max-steps", str(last + 2)]) == 0
    state = json.loads((out / "checkpoints" / f"step_{last + 2:07d}" / "state.json").read_text())
    assert state["step"] == last + 2
    steps = [int(r.split(",")[0]) for r in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, last + 3))  # rows logged after the last checkpoint were dropped on resume


def test_sigterm_saves_a_checkpoint_before_exiting(vae_run, data_root, tmp_path):
    """kill (SIGTERM, a cluster's preemption) and SIGINT of a background run save the current step, not lose it."""
    out = tmp_path / "terminated"
    args = ["train", "tiny-unet", "--quiet"]
    for text in tiny_overrides(data_root, out, **{"model.path": str(vae_run), "run.max_steps": 1000,
                                                  "run.checkpoint_every": 1000, "run.log_every": 1}):
        args += ["--set", text]
    proc = subprocess.Popen([sys.executable, "-m", "relumix_core", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = out / "log.csv"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 3):
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        printed, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert "interrupted: saved step" in printed, printed
    saved = [p for p in (out / "checkpoints").iterdir() if not p.name.startswith(".")]
    assert len(saved) == 1
    assert json.loads((saved[0] / "state.json").read_text())["step"] >= 2


def test_synth_train_eval_from_the_command_line(tmp_path, capsys):
    """The issue's check, at toy scale: relumix synth -> relumix train (both tiny stages) -> relumix eval."""
    train_data, test_data = tmp_path / "train", tmp_path / "test"
    assert cli_main(["synth", str(train_data), "--scenes", "2", "--lights", "2", "--frames", "5", "--size", "32"]) == 0
    assert cli_main(["synth", str(test_data), "--scenes", "1", "--lights", "2", "--frames", "4", "--size", "32",
                     "--seed", "900"]) == 0
    common = ["--quiet", "--set", f'data.root="{train_data}"', "--set", "data.num_frames=4", "--set", "data.size=32",
              "--set", "optim.batch_size=1", "--set", "run.sample_every=0", "--max-steps", "1"]
    assert cli_main(["train", "tiny-vae", *common, "--output-dir", str(tmp_path / "vae")]) == 0
    vae = tmp_path / "vae" / "model.safetensors"
    assert cli_main(["train", "tiny-unet", *common, "--output-dir", str(tmp_path / "unet"),
                     "--set", f'model.path="{vae}"']) == 0
    model = tmp_path / "unet" / "model.safetensors"
    report_dir = tmp_path / "report"
    assert cli_main(["eval", str(test_data), "-o", str(report_dir), "-c", str(model), "--steps", "2"]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    methods = report["methods"]
    assert set(methods) == {"relumix", "input_unchanged", "reference_repeated", "colour_transfer",
                            "ratio_propagation"}
    for name, values in methods.items():
        for metric in ("psnr", "ssim", "temporal_error", "temporal_ssim"):
            assert np.isfinite(values[metric]), (name, metric)
        assert "temporal_lpips" in values
    from PIL import Image

    for png in report_dir.glob("*.png"):
        with Image.open(png) as im:
            im.verify()
    assert (report_dir / "psnr_per_frame.png").exists()


def test_trained_model_records_its_size_and_the_pipeline_defaults_to_it(vae_run):
    model, _ = load_relumix(vae_run)
    assert (model.config.trained_size, model.config.trained_frames) == (32, 4)  # the run's data.size / num_frames
    pipe = ReLumixPipeline(model)
    video = torch.rand(5, 3, 48, 48)
    conditioning = pipe.encode(video, video[0], 0, RelightSettings(num_steps=1))
    assert model.size_multiple == 16  # VAE factor 4 x UNet downsampling 4
    assert conditioning.framing.size == (32, 32)  # about 32x32 pixels: the size it was trained at
    assert RelightSettings().resolved(model).size == 32


def test_decoder_fine_tune_keeps_the_encoder_the_unet_and_the_latent_scale(vae_run, data_root, tmp_path):
    unet_overrides = tiny_overrides(data_root, tmp_path / "unet", **{"model.path": str(vae_run), "run.max_steps": 1})
    with_unet = train(load_config("tiny-unet", unet_overrides), show_progress=False)
    overrides = tiny_overrides(data_root, tmp_path / "decoder", **{"model.path": str(with_unet),
                                                                   "run.max_steps": 2, "data.num_frames": 3})
    tuned = train(load_config("tiny-vae-decoder", overrides), show_progress=False)
    (before, _), (after, _) = load_relumix(with_unet), load_relumix(tuned)
    old, new = before.state_dict(), after.state_dict()
    changed = {k.split(".")[0] + "." + k.split(".")[1] for k in old if not torch.equal(old[k], new[k])}
    assert changed == {"vae.decoder"} or changed == {"vae.decoder", "vae.post_quant_conv"}
    assert after.config.scale_factor == before.config.scale_factor  # not recalibrated
    assert after.config.trained_frames == before.config.trained_frames == 4  # the UNet's, not data.num_frames
    with pytest.raises(ConfigError, match="fine-tunes the decoder of a trained model"):
        load_config("tiny-vae", ["vae.train_encoder=false"])


def test_chroma_loss_sees_colour_errors_and_not_grey_ones():
    grey = torch.full((2, 3, 4, 4), 0.3)  # the same error in every channel: a brightness error, no chroma
    assert float(chroma_l1(grey)) == pytest.approx(0.0, abs=1e-7)
    green = torch.zeros(2, 3, 4, 4)
    green[:, 1] = 0.3  # too green: green-magenta error 0.3 * 2 / sqrt(6), red-blue none
    assert float(chroma_l1(green)) == pytest.approx(0.3 * 2 / 6**0.5 / 2, rel=1e-5)
    red = torch.zeros(2, 3, 4, 4)
    red[:, 0] = 0.3  # too red: 0.3 / sqrt(2) on red-blue, 0.3 / sqrt(6) on green-magenta
    assert float(chroma_l1(red)) == pytest.approx((0.3 / 2**0.5 + 0.3 / 6**0.5) / 2, rel=1e-5)


def test_chroma_weight_adds_the_chroma_loss_to_a_vae_step(vae_run, data_root, tmp_path):
    from relumix_core.training.steps import vae_step

    model, _ = load_relumix(vae_run)
    config = load_config("tiny-vae", tiny_overrides(data_root, tmp_path / "unused"))
    batch = {"target": torch.rand(1, 2, 3, 32, 32)}
    plain = vae_step(model, batch, config, torch.Generator().manual_seed(0))
    config.vae.chroma_weight = 2.0
    weighted = vae_step(model, batch, config, torch.Generator().manual_seed(0))
    assert plain.stats["chroma_l1"] > 0
    assert plain.stats["chroma_l1"] == pytest.approx(weighted.stats["chroma_l1"])  # same noise, same error
    assert float(weighted.loss - plain.loss) == pytest.approx(2.0 * plain.stats["chroma_l1"], rel=1e-4)


def test_weight_average_follows_its_formula_and_swaps_back():
    weight = torch.nn.Parameter(torch.zeros(3))
    params = {"w": weight}
    average = WeightAverage(params, decay=0.9)
    assert average.decay_at(0) == pytest.approx(0.1) and average.decay_at(1000) == 0.9  # warm-up, then the decay
    with torch.no_grad():
        weight.fill_(1.0)
    average.update(params, 1000)
    torch.testing.assert_close(average.shadow["w"], torch.full((3,), 0.1))
    with average.swapped_in(params):
        torch.testing.assert_close(weight.detach(), torch.full((3,), 0.1))
    torch.testing.assert_close(weight.detach(), torch.ones(3))  # the trained weights are back
    with pytest.raises(ReLumixError, match="does not match"):
        average.load({"other": torch.zeros(3)})


def test_weight_average_is_exported_and_resumes_exactly(vae_run, data_root, tmp_path):
    def run(out: Path, steps: int) -> Path:
        overrides = tiny_overrides(data_root, out, **{"model.path": str(vae_run), "run.max_steps": steps,
                                                      "optim.ema_decay": 0.9})
        return train(load_config("tiny-unet", overrides), show_progress=False)

    exported = run(tmp_path / "straight", 4)
    run(tmp_path / "split", 2)
    run(tmp_path / "split", 4)
    step4 = [tmp_path / name / "checkpoints" / "step_0000004" for name in ("straight", "split")]
    a, b = (load_file(str(folder / "average.safetensors")) for folder in step4)
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    trained = load_file(str(step4[0] / "trainable.safetensors"))
    assert any(not torch.equal(a[k], trained[k]) for k in a)  # the average is not the last weights
    model, _ = load_relumix(exported)
    weights = dict(model.named_parameters())
    for name, value in a.items():
        torch.testing.assert_close(weights[name].detach().float(), value)  # the export holds the average
    with pytest.raises(ConfigError, match="ema_decay must be in"):
        load_config("tiny-unet", ["optim.ema_decay=1.0"])


def test_first_stage_swaps_the_autoencoder_and_its_scale_under_a_kept_unet(vae_run, data_root, tmp_path):
    from relumix_core.training.setup import initial_model

    unet_overrides = tiny_overrides(data_root, tmp_path / "unet", **{"model.path": str(vae_run), "run.max_steps": 1})
    with_unet = train(load_config("tiny-unet", unet_overrides), show_progress=False)
    other_overrides = tiny_overrides(data_root, tmp_path / "vae2", **{"run.max_steps": 1, "model.seed": 5})
    other_vae = train(load_config("tiny-vae", other_overrides), show_progress=False)
    overrides = [f"model.path={json.dumps(str(with_unet))}", f"model.first_stage={json.dumps(str(other_vae))}"]
    model = initial_model(load_config("tiny-unet-refine", overrides))
    (unet_source, _), (donor, _) = load_relumix(with_unet), load_relumix(other_vae)
    got = model.state_dict()
    for name, value in donor.state_dict().items():
        if name.startswith(("vae.", "frame_encoder.")):
            assert torch.equal(got[name], value), f"{name} was not taken from model.first_stage"
    for name, value in unet_source.state_dict().items():
        if name.startswith("unet."):
            assert torch.equal(got[name], value), f"{name} was not kept from model.path"
    assert not torch.equal(got["vae.decoder.conv_out.weight"], unet_source.state_dict()["vae.decoder.conv_out.weight"])
    assert model.config.scale_factor == donor.config.scale_factor != unet_source.config.scale_factor
    assert model.frame_encoder.encoder is model.vae.encoder
    with pytest.raises(ConfigError, match="first_stage swaps the autoencoder"):
        load_config("tiny-vae", [f"model.first_stage={json.dumps(str(other_vae))}"])

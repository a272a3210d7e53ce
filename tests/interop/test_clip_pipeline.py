"""A CLIP model on your own data from the command line, random weights standing in for the
download (issue 33's walk-through): the class names' text features from the checkpoint
(``ltjax clip-text``), cRT on the frozen CLIP image tower with the text-initialised cosine
head, and one evaluation with the zero-shot, NCM, tau-norm and logit-adjustment rows."""

import json

import numpy as np
import pytest
from helpers import run_ltjax

torch = pytest.importorskip("torch")

from ltjax.data import example  # noqa: E402
from ltjax.interop import torch_extras  # noqa: E402
from ltjax.models import text_features  # noqa: E402

try:
  open_clip = torch_extras.import_open_clip()
except ImportError:
  pytest.skip("open_clip is not installed (the torch extra)", allow_module_level=True)

CLIP_MEAN = "0.48145466,0.4578275,0.40821073"
CLIP_STD = "0.26862954,0.26130258,0.27577711"
SMALL = [
  "--config.dataset.root=mine",
  "--config.data.crop_size=32",
  "--config.model.backbone=clip_vit_tiny",
  "--config.batch_size=32",
  "--config.eval.batch_size=64",
  "--config.eval.many_threshold=40",
  "--config.eval.few_threshold=15",
  f"--config.dataset.mean={CLIP_MEAN}",
  f"--config.dataset.std={CLIP_STD}",
]


def tiny_clip():
  """open_clip's CLIP whose image tower is ltjax's ``clip_vit_tiny`` at 32 px (patch 4,
  width 32, 2 blocks of 2 heads, MLP 64, joint width 16), QuickGELU as OpenAI's."""
  torch.manual_seed(0)
  model = open_clip.model.CLIP(
    embed_dim=16,
    vision_cfg=open_clip.model.CLIPVisionCfg(
      layers=2, width=32, head_width=16, mlp_ratio=2.0, patch_size=4, image_size=32
    ),
    text_cfg=open_clip.model.CLIPTextCfg(
      context_length=77, vocab_size=49408, width=64, heads=1, layers=1
    ),
    quick_gelu=True,
  )
  return model.eval()


@pytest.mark.parametrize(
  "projection",
  # Before the projection, the head's and zero-shot's mapping is unit-tested in
  # test_clip_text.py and the backbone's features in test_vit_weights.py: end to end, slow.
  # End to end from the command line, both in the slow set (CI's 20 minutes): the default
  # run checks the pieces (test_clip_text.py, test_vit_weights.py, train/test_text_head.py).
  [pytest.param(True, marks=pytest.mark.slow), pytest.param(False, marks=pytest.mark.slow)],
)
def test_clip_text_crt_and_zero_shot_from_the_command_line(tmp_path, projection):
  """Both feature widths: CLIP's joint space (the head is the text features) and before
  the projection (LIFT's: the text features mapped back through it; zero-shot projects
  the features itself)."""
  example.write_example_dataset(str(tmp_path / "mine"))
  model = tiny_clip()
  torch.save(model.state_dict(), tmp_path / "clip.pt")

  out = run_ltjax(
    "clip-text", "clip.pt", "--config=custom/crt.py", "--out=text.npz", *SMALL, cwd=tmp_path
  )
  assert out.returncode == 0, out.stderr[-3000:]
  tf = text_features.load(str(tmp_path / "text.npz"))
  names = tuple(sorted(p.name for p in (tmp_path / "mine" / "train").iterdir()))
  assert tf.class_names == names  # The folders' names, in class order.

  args = [
    "--config.model.pretrained=clip.pt",
    "--config.model.head=cosine",
    "--config.model.text_features=text.npz",
    "--config.model.head_init=text_features",
    "--config.num_epochs=2",
    f"--config.model.clip_projection={projection}",
  ]
  out = run_ltjax("train", "--config=custom/crt.py", "--workdir=crt", *SMALL, *args, cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "head initialised from the text features of 5 class names" in out.stderr
  assert ("mapped back through CLIP's projection" in out.stderr) == (not projection)
  # The run keeps its own copy, byte for byte.
  assert (tmp_path / "crt" / "text_features.npz").read_bytes() == (
    tmp_path / "text.npz"
  ).read_bytes()
  # The file given changes after training: evaluation reads the run's copy, and says so.
  other = text_features.TextFeatures(tf.class_names, -tf.features, tf.logit_scale)
  text_features.save(str(tmp_path / "text.npz"), other)

  out = run_ltjax("evaluate", "--workdir=crt", "--posthoc", cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "differs from the run's own copy" in out.stderr
  results = json.loads((tmp_path / "crt" / "results.json").read_text())
  for row in ("crt", "zero_shot", "ncm", "tau_norm", "logit_adjustment"):
    assert {"many", "medium", "few", "all"} <= set(results[row]), row

  # The row's computation is checked against open_clip's logits in test_clip_text.py.


@pytest.mark.slow
def test_zero_shot_is_refused_where_the_backbone_trained(tmp_path):
  """A joint run fine-tunes the tower: its features are no longer CLIP's, so no zero-shot
  row, and the log says why."""
  example.write_example_dataset(str(tmp_path / "mine"))
  torch.save(tiny_clip().state_dict(), tmp_path / "clip.pt")
  names = tuple(sorted(p.name for p in (tmp_path / "mine" / "train").iterdir()))
  rng = np.random.default_rng(0)  # Any text features of these classes: no row is made.
  tf = text_features.TextFeatures(names, rng.normal(size=(5, 16)), logit_scale=100.0)
  text_features.save(str(tmp_path / "text.npz"), tf)
  out = run_ltjax(
    "train",
    "--config=custom/joint.py",
    "--workdir=joint",
    *SMALL,
    "--config.model.pretrained=clip.pt",
    "--config.model.text_features=text.npz",
    "--config.num_epochs=1",
    cwd=tmp_path,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  out = run_ltjax("evaluate", "--workdir=joint", "--posthoc", cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "zero_shot: no row: the backbone is not a CLIP tower from model.pretrained" in out.stderr
  results = json.loads((tmp_path / "joint" / "results.json").read_text())
  assert "zero_shot" not in results and "ncm" in results
  assert np.isfinite(results["joint"]["all"])
  # LWS on the ViT's joint run: its classifier and tower frozen, one scale per class.
  out = run_ltjax(
    "train",
    "--config=custom/lws.py",
    "--workdir=lws",
    "--config.init_from=joint",
    *SMALL,
    "--config.num_epochs=1",
    cwd=tmp_path,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  lws = json.loads((tmp_path / "lws" / "results.json").read_text())
  assert np.isfinite(lws["lws"]["all"])


@pytest.mark.slow
def test_an_openclip_vit_b16_checkpoint_end_to_end(tmp_path):
  """The walk-through with an OpenCLIP ViT-B/16 (open_clip's ``ViT-B-16``, GELU, random
  weights): clip-text, cRT with the text-initialised cosine head, evaluation with the
  zero-shot, NCM and tau-norm rows. At 112 px (the 224-px checkpoint's position embeddings
  resampled to 7x7), which keeps the evaluation's feature extraction of every split to
  minutes on two cores: the slow set."""
  example.write_example_dataset(str(tmp_path / "mine"))
  torch.manual_seed(0)
  model = open_clip.create_model("ViT-B-16", pretrained=None)
  torch.save(model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
  big = [
    a for a in SMALL if not a.startswith(("--config.model.backbone", "--config.data.crop_size"))
  ]
  big += ["--config.model.backbone=openclip_vit_b16", "--config.data.crop_size=112"]
  out = run_ltjax(
    "clip-text",
    "open_clip_pytorch_model.bin",
    "--config=custom/crt.py",
    "--out=text.npz",
    *big,
    cwd=tmp_path,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  args = [
    "--config.model.pretrained=open_clip_pytorch_model.bin",
    "--config.model.head=cosine",
    "--config.model.text_features=text.npz",
    "--config.model.head_init=text_features",
    "--config.num_epochs=1",
  ]
  out = run_ltjax("train", "--config=custom/crt.py", "--workdir=crt", *big, *args, cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  out = run_ltjax("evaluate", "--workdir=crt", "--posthoc", cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.loads((tmp_path / "crt" / "results.json").read_text())
  for row in ("crt", "zero_shot", "ncm", "tau_norm"):
    assert np.isfinite(results[row]["all"]), row

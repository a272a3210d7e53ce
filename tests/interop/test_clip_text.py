"""CLIP text features (``ltjax clip-text``, ``ltjax.models.text_features``) against
open_clip's own CLIP model with random weights: the features, the text-initialised head
of both feature widths (LIFT's mapping back through the projection) and zero-shot logits."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ltjax.interop import clip_text, torch_extras  # noqa: E402
from ltjax.models import text_features  # noqa: E402

try:
  open_clip = torch_extras.import_open_clip()
except ImportError:
  pytest.skip("open_clip is not installed (the torch extra)", allow_module_level=True)

NAMES = ("golden_retriever", "tabby cat", "fire truck")


def tiny_clip(quick_gelu: bool = True, seed: int = 0):
  """An open_clip CLIP with OpenAI's layout, small: image width 64 (one 64-wide head, as
  OpenAI's builder infers heads), text width 64, joint width 16."""
  torch.manual_seed(seed)
  model = open_clip.model.CLIP(
    embed_dim=16,
    vision_cfg=open_clip.model.CLIPVisionCfg(layers=1, width=64, patch_size=8, image_size=16),
    text_cfg=open_clip.model.CLIPTextCfg(
      context_length=77, vocab_size=49408, width=64, heads=1, layers=2
    ),
    quick_gelu=quick_gelu,
  )
  with torch.no_grad():  # Not the init's constant: a scale the file must carry over.
    model.logit_scale.fill_(3.7)
  return model.eval()


def reference_text(model, names=NAMES, prompt="a photo of a {}."):
  texts = [prompt.format(n.replace("_", " ")) for n in names]
  with torch.no_grad():
    t = model.encode_text(open_clip.tokenize(texts)).double()
  return torch.nn.functional.normalize(t, dim=-1).numpy()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  model = tiny_clip()
  path = str(tmp_path_factory.mktemp("clip") / "clip.pt")
  torch.save(model.state_dict(), path)
  return model, path


def test_features_are_open_clips_encode_text(saved):
  model, path = saved
  tf = clip_text.compute(path, NAMES, quick_gelu=True)
  assert tf.class_names == NAMES and tf.prompt == "a photo of a {}."
  np.testing.assert_allclose(tf.features, reference_text(model), atol=1e-6)
  np.testing.assert_allclose(tf.logit_scale, np.exp(3.7), rtol=1e-6)
  np.testing.assert_array_equal(tf.projection, model.visual.proj.detach().numpy())
  # Another prompt, another activation: other features (the flags are not ignored).
  other = clip_text.compute(path, NAMES, quick_gelu=True, prompt="{}")
  np.testing.assert_allclose(other.features, reference_text(model, prompt="{}"), atol=1e-6)
  gelu = clip_text.compute(path, NAMES, quick_gelu=False)
  assert np.abs(gelu.features - tf.features).max() > 1e-3


def test_a_training_checkpoint_safetensors_and_a_torchscript_archive_read_the_same(saved, tmp_path):
  model, path = saved
  wrapped = str(tmp_path / "epoch_1.pt")
  torch.save(
    {"epoch": 1, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, wrapped
  )
  st = pytest.importorskip("safetensors.torch")
  sfile = str(tmp_path / "open_clip_model.safetensors")
  st.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, sfile)
  archive = str(tmp_path / "ViT-tiny.pt")  # OpenAI's files are traced TorchScript archives.
  traced = torch.jit.trace_module(
    model,
    {"encode_text": (open_clip.tokenize(["a"]),), "encode_image": (torch.ones(1, 3, 16, 16),)},
  )
  torch.jit.save(traced, archive)
  want = clip_text.compute(path, NAMES, quick_gelu=True).features
  for p in (wrapped, sfile, archive):
    np.testing.assert_allclose(
      clip_text.compute(p, NAMES, quick_gelu=True).features, want, atol=1e-7
    )


def test_an_image_tower_alone_is_refused_naming_what_it_lacks(saved, tmp_path):
  model, _ = saved
  path = str(tmp_path / "visual.pt")
  torch.save({k: v for k, v in model.state_dict().items() if k.startswith("visual.")}, path)
  with pytest.raises(
    ValueError, match=r"not a CLIP ViT checkpoint with its text tower \(no text_projection"
  ):
    clip_text.compute(path, NAMES, quick_gelu=True)


def test_head_kernel_and_zero_shot_on_both_feature_widths(saved):
  """On CLIP's joint space the head is the text features; before the projection it is
  LIFT's normalize(t @ proj.T); zero-shot logits are open_clip's model(image, text)."""
  model, path = saved
  tf = clip_text.compute(path, NAMES, quick_gelu=True)
  images = torch.randn(5, 3, 16, 16)
  with torch.no_grad():
    joint = model.encode_image(images).double().numpy()
    proj = model.visual.proj
    model.visual.proj = None
    before = model.visual(images).double().numpy()  # ln_post of the class token.
    model.visual.proj = proj
    image_f, text_f, scale = model(images, open_clip.tokenize(text_features.prompts(NAMES)))
  want = (scale * image_f @ text_f.T).numpy()
  np.testing.assert_allclose(text_features.zero_shot_logits(tf, joint), want, atol=2e-4)
  np.testing.assert_allclose(text_features.zero_shot_logits(tf, before), want, atol=2e-4)
  np.testing.assert_allclose(text_features.head_kernel(tf, 16), tf.features.T, atol=1e-7)
  lift = reference_text(model) @ proj.detach().double().numpy().T
  lift /= np.linalg.norm(lift, axis=1, keepdims=True)
  np.testing.assert_allclose(text_features.head_kernel(tf, 64), lift.T, atol=1e-6)
  with pytest.raises(
    ValueError, match=r"sees 32-wide features, but the text features fit 16 or 64"
  ):
    text_features.head_kernel(tf, 32)


def test_the_file_keeps_everything_and_refuses_other_classes(saved, tmp_path):
  _, path = saved
  tf = clip_text.compute(path, NAMES, quick_gelu=True)
  out = str(tmp_path / "text.npz")
  text_features.save(out, tf)
  back = text_features.load(out)
  assert back.class_names == NAMES and back.source == path
  np.testing.assert_array_equal(back.features, tf.features)
  np.testing.assert_array_equal(back.projection, tf.projection)
  text_features.check_classes(back, list(NAMES), "here")
  with pytest.raises(ValueError, match=r"class 1: 'tabby cat' in the file, 'dog' in the dataset"):
    text_features.check_classes(back, ["golden_retriever", "dog", "fire truck"], "here")
  with pytest.raises(ValueError, match=r"of 3 classes, the dataset has 2"):
    text_features.check_classes(back, NAMES[:2], "here")
  with pytest.raises(ValueError, match=r"no class names.*dataset.class_names=FILE"):
    text_features.check_classes(back, None, "here")
  bad = tmp_path / "bad.npz"
  bad.write_bytes(b"not a zip")
  with pytest.raises(ValueError, match=r"cannot be read.*ltjax clip-text"):
    text_features.load(str(bad))
  with pytest.raises(ValueError, match=r"do not exist.*ltjax clip-text"):
    text_features.load(str(tmp_path / "none.npz"))

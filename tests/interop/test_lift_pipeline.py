"""LIFT on your own data from the command line, random CLIP weights standing in for the
download (issue 34's walk-through): the text features, a run of each fine-tuning method
(``model.peft``) with LIFT's recipe, the five-crop test-time ensemble, Decoupling's
classifier methods on top of the AdaptFormer run, and one ``report --compare`` table. Slow
(CI's 20 minutes): the pieces are checked in process by tests/train/test_peft.py,
tests/interop/test_lift_reference.py and tests/data/test_five_crop.py."""

import json
import os

import pytest
from helpers import run_ltjax

torch = pytest.importorskip("torch")

from ltjax.data import example  # noqa: E402
from ltjax.models import peft  # noqa: E402

pytestmark = pytest.mark.slow

from test_clip_pipeline import SMALL, tiny_clip  # noqa: E402

#: configs/custom/lift.py (LIFT's recipe) at the example's sizes.
LIFT = [
  "--config.model.pretrained=clip.pt",
  "--config.model.text_features=text.npz",
  "--config.num_epochs=2",
  "--config.data.eval_transform=resize_center_crop",  # The ensemble at evaluation, below.
]


def test_lift_with_every_method_tte_and_decoupling_on_top(tmp_path):
  example.write_example_dataset(str(tmp_path / "mine"))
  torch.save(tiny_clip().state_dict(), tmp_path / "clip.pt")
  out = run_ltjax(
    "clip-text", "clip.pt", "--config=custom/lift.py", "--out=text.npz", *SMALL, cwd=tmp_path
  )
  assert out.returncode == 0, out.stderr[-3000:]

  methods = [m for m in peft.PEFT_METHODS if m]
  for method in methods:
    out = run_ltjax(
      "train",
      "--config=custom/lift.py",
      f"--workdir=lift_{method}",
      *SMALL,
      *LIFT,
      f"--config.model.peft={method}",
      cwd=tmp_path,
    )
    assert out.returncode == 0, (method, out.stderr[-3000:])
    assert "trained of" in out.stderr
    row = json.loads((tmp_path / f"lift_{method}" / "results.json").read_text())["lift"]
    assert row["trained_parameters"] < row["parameters"], method
    # The checkpoints hold what trains; the tower is read back from clip.pt.
    steps = os.listdir(tmp_path / f"lift_{method}" / "checkpoints")
    assert any(s.isdigit() for s in steps), method

  # LIFT's test-time ensemble on the finished AdaptFormer run, with Decoupling's post-hoc
  # rows (NCM, tau-norm, logit adjustment) on its features.
  out = run_ltjax(
    "evaluate",
    "--workdir=lift_adaptformer",
    "--posthoc",
    "--config.data.eval_transform=five_crop",
    cwd=tmp_path,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.loads((tmp_path / "lift_adaptformer" / "results.json").read_text())
  for row in ("lift", "ncm", "tau_norm", "logit_adjustment"):
    assert results[row]["computed_with"]["test_views"] == "five_crop+24", row

  # The head alone on CLIP's untouched tower: the zero-shot row beside it.
  out = run_ltjax("evaluate", "--workdir=lift_linear", "--posthoc", cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "zero_shot" in json.loads((tmp_path / "lift_linear" / "results.json").read_text())

  # cRT and LWS on the AdaptFormer run: its adapters and its tower (read from clip.pt through
  # the checkpoint's reference) frozen, the classifier re-trained / re-scaled.
  for stage in ("crt", "lws"):
    out = run_ltjax(
      "train",
      f"--config=custom/{stage}.py",
      f"--workdir={stage}_on_lift",
      *SMALL,
      "--config.init_from=lift_adaptformer",
      "--config.model.peft=adaptformer",
      "--config.model.clip_projection=False",
      "--config.model.head=cosine" if stage == "crt" else "--config.model.head=lws_cosine",
      "--config.num_epochs=1",
      cwd=tmp_path,
    )
    assert out.returncode == 0, (stage, out.stderr[-3000:])

  out = run_ltjax(
    "report",
    "--workdir=compare",
    "--compare",
    *[f"lift_{m}" for m in methods],
    "crt_on_lift",
    "lws_on_lift",
    cwd=tmp_path,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  report = (tmp_path / "compare" / "report.md").read_text()
  rows = json.loads((tmp_path / "compare" / "results.json").read_text())
  for name in ("lift@lift_adaptformer (five_crop+24)", "lift@lift_lora", "crt", "lws"):
    assert name in rows and name in report, name
  assert "zero_shot" in rows and "ncm@lift_adaptformer (five_crop+24)" in rows

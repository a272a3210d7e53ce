"""Learning-rate schedules: the references' per-epoch sequences, exactly; and the SGD groups."""

import warnings

import numpy as np
import pytest

from ltjax import config as config_lib
from ltjax.train import optim, stages


def schedule_config(schedule, lr_update, num_epochs, **optim_fields):
  c = config_lib.base_config()
  c.num_epochs, c.batch_size = num_epochs, 64
  c.optim.schedule, c.optim.lr_update = schedule, lr_update
  for k, v in optim_fields.items():
    c.optim[k] = v
  return c


def torch_epoch_lrs(kind, placement, base, num_epochs, step_size=10, gamma=0.1):
  """The lr each epoch's batches see in the reference loops, computed with torch."""
  torch = pytest.importorskip("torch")
  param = torch.nn.Parameter(torch.zeros(1))
  opt = torch.optim.SGD([param], lr=base, momentum=0.9)
  if kind == "cosine":
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, num_epochs, eta_min=0.0)
  else:
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
  lrs = []
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # torch warns about scheduler.step() before opt.step().
    for _ in range(num_epochs):
      if placement == "epoch_start":  # classifier-balancing run_networks.py
        sched.step()
      lrs.append(opt.param_groups[0]["lr"])
      opt.step()  # The epoch's batches.
      if placement == "epoch_end":  # OLTR run_networks.py
        sched.step()
  return np.array(lrs)


def closed_form(kind, placement, base, num_epochs, step_size=10, gamma=0.1):
  """The same sequences from the schedulers' formulas (PyTorch >= 1.1)."""
  x = np.arange(num_epochs) + (1 if placement == "epoch_start" else 0)
  if kind == "cosine":
    return base * (1 + np.cos(np.pi * x / num_epochs)) / 2
  return base * gamma ** np.floor(x / step_size)


@pytest.mark.parametrize(
  "kind, placement, base, num_epochs",
  [
    ("cosine", "epoch_start", 0.2, 10),  # classifier-balancing cRT (cls_crt.yaml)
    ("cosine", "epoch_start", 0.2, 90),  # classifier-balancing representation learning
    ("step", "epoch_end", 0.1, 30),  # OLTR stage 1: StepLR(10, 0.1)
    ("step", "epoch_start", 0.1, 30),  # the same scheduler stepped first: decays after 9
    ("cosine", "epoch_end", 0.2, 12),
  ],
)
def test_per_epoch_schedule_is_the_reference_sequence(kind, placement, base, num_epochs):
  num_train = 1000  # 15.6 steps of 64 per epoch: batches straddle epochs.
  config = schedule_config(kind, placement, num_epochs, lr=base, step_every_epochs=10)
  schedule = optim.from_config(config).lr_schedule(num_train)
  _, total = optim.from_config(config).run_length(num_train)
  steps = np.arange(total)
  got = np.array([float(schedule(s)) for s in steps])
  expected = closed_form(kind, placement, base, num_epochs)
  np.testing.assert_allclose(
    expected, torch_epoch_lrs(kind, placement, base, num_epochs), atol=1e-7
  )
  epoch = steps * 64 // num_train
  np.testing.assert_allclose(got, expected[epoch], rtol=1e-6, atol=1e-8)
  if kind == "cosine" and placement == "epoch_start":
    assert got[-1] == 0.0  # The last epoch runs at lr 0, as the reference's.


def test_per_step_schedule_is_unchanged_and_bad_settings_are_refused():
  config = schedule_config("cosine", "step", 2, lr=0.2)
  schedule = optim.from_config(config).lr_schedule(640)  # 10 steps per epoch, 20 in all.
  np.testing.assert_allclose([float(schedule(s)) for s in (0, 10, 20)], [0.2, 0.1, 0.0], atol=1e-7)
  with pytest.raises(ValueError, match="warmup_epochs=1.5 with a per-epoch lr_update"):
    optim.from_config(schedule_config("cosine", "epoch_start", 2, warmup_epochs=1.5)).lr_schedule(
      640
    )
  with pytest.raises(ValueError, match="unknown --config.optim.lr_update 'epoch'"):
    optim.from_config(schedule_config("cosine", "epoch", 2)).lr_schedule(640)
  with pytest.raises(ValueError, match="needs increasing --config.optim.milestones"):
    optim.from_config(schedule_config("multistep", "step", 2, milestones=(5, 3))).lr_schedule(640)
  with pytest.raises(
    ValueError,
    match=r"optim.milestones=\(1,\) is an option of optim.schedule='multistep', not of 'cosine'",
  ):
    optim.from_config(schedule_config("cosine", "step", 2, milestones=(1,))).lr_schedule(640)
  two = r"optim.step_gamma=0.5 is an option of optim.schedule='step' / 'multistep', not of 'cos"
  with pytest.raises(ValueError, match=two):  # A recipe's leftover is refused, not ignored.
    optim.from_config(schedule_config("cosine", "step", 2, step_gamma=0.5)).lr_schedule(640)


def ldam_drw_lrs(base, num_epochs):
  """LDAM-DRW's ``adjust_learning_rate`` (kaidic/LDAM-DRW cifar_train.py), restated."""
  lrs = []
  for epoch in range(num_epochs):
    epoch = epoch + 1
    if epoch <= 5:
      lr = base * epoch / 5
    elif epoch > 180:
      lr = base * 0.0001
    elif epoch > 160:
      lr = base * 0.01
    else:
      lr = base
    lrs.append(lr)
  return np.array(lrs)


def test_the_ldam_drw_schedule_is_the_papers_sequence():
  from ltjax.configs.cifar10_lt import ldam_drw

  c = ldam_drw.get_config()
  num_train = 12406
  schedule = optim.from_config(c).lr_schedule(num_train)
  _, total = optim.from_config(c).run_length(num_train)
  steps = np.arange(total)
  got = np.array([float(schedule(s)) for s in steps])
  epoch = steps * c.batch_size // num_train
  np.testing.assert_allclose(got, ldam_drw_lrs(0.1, 200)[epoch], rtol=1e-6)


def test_the_logit_adjustment_schedule_is_the_papers():
  """google-research/logit_adjustment: lr 0.1 * epoch / 20 in the warm-up (per step), then
  x0.1 at epochs 604, 926 and 1128, for CIFAR-10-LT's 1241 epochs."""
  from ltjax.configs.cifar10_lt import logit_adjusted

  c = logit_adjusted.get_config()
  num_train = 12800  # 100 steps of 128 per epoch: the epochs are whole steps.
  schedule = optim.from_config(c).lr_schedule(num_train)
  for step, want in [
    (0, 0.0),
    (500, 0.1 * 5 / 20),
    (2000, 0.1),
    (60399, 0.1),
    (60400, 0.01),
    (92600, 0.001),
    (112800, 0.0001),
    (124099, 0.0001),
  ]:
    np.testing.assert_allclose(float(schedule(step)), want, rtol=1e-5, err_msg=str(step))


def test_groups_take_their_own_learning_rates():
  c = config_lib.base_config()
  c.optim.lr, c.optim.head_lr, c.oltr.centroids_lr = 0.001, 0.1, 0.01
  tree = {
    "params": {
      "backbone": {"conv1": {"kernel": 0}},
      "neck": {"fc_add": {"kernel": 0}},
      "head": {"fc": {"kernel": 0}},
    },
    "centroids": 0,
  }
  labels = optim.group_labels(tree, ("^backbone/",))
  assert labels == {
    "params": {
      "backbone": {"conv1": {"kernel": "frozen"}},
      "neck": {"fc_add": {"kernel": "backbone"}},
      "head": {"fc": {"kernel": "head"}},
    },
    "centroids": "centroids",
  }
  hyper = optim.from_config(c).group_hyperparameters(stages.get_stage("oltr").of(c).extra_groups())
  assert [hyper[g][0] for g in ("backbone", "head", "centroids")] == [0.001, 0.1, 0.01]
  assert (
    "centroids" not in optim.from_config(c).group_hyperparameters()
  )  # Only OLTR's stage names them.
  c.optim.head_lr = None  # Unset: the head follows optim.lr.
  assert optim.from_config(c).group_hyperparameters()["head"][0] == 0.001


def test_adamw_is_pytorchs_and_sgds_options_are_refused_with_it():
  """optim.name='adamw': each group is optax's adamw at the group's rate, beta1 the group's
  momentum, weight decay decoupled (lr x wd x p, as torch.optim.AdamW); an SGD option set
  with it is refused naming it."""
  import jax.numpy as jnp
  import optax

  c = config_lib.base_config()
  c.optim.name, c.optim.lr, c.optim.momentum, c.optim.weight_decay = "adamw", 0.01, 0.8, 0.1
  c.optim.b2, c.optim.eps = 0.99, 1e-6
  tree = {"params": {"backbone": {"w": jnp.ones(3)}, "head": {"w": jnp.full(3, 2.0)}}}
  grads = {"params": {"backbone": {"w": jnp.asarray([0.1, -0.2, 0.3])}, "head": {"w": jnp.ones(3)}}}
  tx = optim.from_config(c).transformation(lambda lr: lr, tree)
  updates, _ = tx.update(grads, tx.init(tree), tree)
  want = optax.adamw(0.01, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1)
  for group in ("backbone", "head"):
    ref, _ = want.update(
      grads["params"][group], want.init(tree["params"][group]), tree["params"][group]
    )
    np.testing.assert_allclose(updates["params"][group]["w"], ref["w"], rtol=1e-6)
  # The first AdamW step is -lr (sign(g) + wd p): the decoupled decay, not SGD's L2.
  np.testing.assert_allclose(
    updates["params"]["head"]["w"], -0.01 * (1 / (1 + 1e-6) + 0.1 * 2.0), rtol=1e-5
  )
  c.optim.nesterov = True
  with pytest.raises(ValueError, match="optim.nesterov=True is an option of optim.name='sgd'"):
    optim.from_config(c)
  c.optim.nesterov, c.optim.name = False, "lamb"
  with pytest.raises(ValueError, match="name='lamb': unknown optimizer; valid: 'sgd', 'adamw'"):
    optim.from_config(c)

"""The training loop: exact resume after an interruption, early stopping on validation loss,
bf16 autocast on CPU, device/precision errors, checkpoint safety."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.encoders import create_encoder
from benchmark.errors import UserError
from benchmark.losses import supervised_loss
from benchmark.device import resolve_device
from benchmark.training import Batch, batch_plan, fit, resolve_precision


class Interrupt(Exception):
    pass


def tiny_classifier(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    enc = create_encoder("resnet1d-tiny", width=8)
    return nn.Sequential(enc, nn.Dropout(0.2), nn.Linear(enc.dim, 5))


def supervised_step(model, y):
    def step(batch: Batch):
        return supervised_loss(model(batch.x), y[torch.as_tensor(batch.idx)], True)

    return step


@pytest.fixture(scope="module")
def small(ptbxl_set):
    y, valid = ptbxl_set.labels("superdiagnostic")
    tr = ptbxl_set.split_indices("train")
    va = ptbxl_set.split_indices("val")
    return ptbxl_set, torch.from_numpy(y), tr[valid[tr]][:24], va[valid[va]][:8]


KW = dict(epochs=3, batch_size=8, lr=3e-3, seed=5, device="cpu", progress=False, max_steps_per_epoch=2)


def test_resume_after_interruption_gives_identical_weights(small, tmp_path):
    data, y, tr, va = small
    ref = tiny_classifier()
    h_ref = fit(ref, supervised_step(ref, y), data, tr, va, checkpoint_dir=tmp_path / "ref", **KW)

    def die_after_first_epoch(epoch, row):
        if epoch == 0:
            raise Interrupt  # like kill -9 right after the epoch-0 checkpoint was written

    killed = tiny_classifier()
    with pytest.raises(Interrupt):
        fit(killed, supervised_step(killed, y), data, tr, va, checkpoint_dir=tmp_path / "run", on_epoch_end=die_after_first_epoch, **KW)
    resumed = tiny_classifier()  # a fresh process: same construction, state comes from the checkpoint
    seen = []
    h_res = fit(resumed, supervised_step(resumed, y), data, tr, va, checkpoint_dir=tmp_path / "run",
                on_epoch_end=lambda e, r: seen.append(e), **KW)
    assert seen == [1, 2]  # epoch 0 was not trained again
    sa, sb = ref.state_dict(), resumed.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "ecgs_per_s")} for r in h]  # noqa: E731
    assert strip(h_ref) == strip(h_res)
    # a finished run resumes to its final state without training
    again = tiny_classifier(seed=9)
    h_again = fit(again, supervised_step(again, y), data, tr, va, checkpoint_dir=tmp_path / "run",
                  on_epoch_end=lambda e, r: pytest.fail("trained again"), **KW)
    assert strip(h_again) == strip(h_ref)
    assert all(torch.equal(sa[k], again.state_dict()[k]) for k in sa)


def test_same_seed_same_weights_other_seed_differs(small):
    data, y, tr, va = small
    runs = []
    for seed in (5, 5, 6):
        m = tiny_classifier()
        fit(m, supervised_step(m, y), data, tr, None, **{**KW, "epochs": 1, "seed": seed})
        runs.append(m.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


class Toy(nn.Module):
    """One weight w (starts at 0); train loss (w-1)^2 falls while val loss (w+1)^2 rises."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def step(self, batch: Batch):
        target = 1.0 if batch.train else -1.0
        return (self.w - target) ** 2 + 0 * batch.x.mean()


def test_early_stopping_uses_validation_loss_and_keeps_the_best_state(small):
    data, _, tr, va = small
    toy = Toy()
    states = []
    hist = fit(toy, toy.step, data, tr, va, epochs=10, batch_size=8, lr=0.01, optimizer="sgd", schedule="constant",
               seed=0, device="cpu", progress=False, early_stopping_patience=2,
               on_epoch_end=lambda e, r: states.append(toy.w.item()))
    train = [r["train_loss"] for r in hist]
    val = [r["val_loss"] for r in hist]
    assert train == sorted(train, reverse=True) and val == sorted(val)  # the constructed conflict
    assert len(hist) == 3  # best at epoch 0, then 2 epochs without improvement -> stop
    assert toy.w.item() == states[0]  # the best-validation state is restored, not the last
    assert set(hist[0]) == {"epoch", "train_loss", "val_loss", "seconds", "lr", "ecgs_per_s"}
    assert all(r["ecgs_per_s"] > 0 for r in hist)


def test_bf16_autocast_runs_on_cpu(small):
    data, y, tr, _ = small
    model = tiny_classifier()
    seen = {}

    def step(batch):
        out = model(batch.x)
        seen["dtype"] = out.dtype
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        return supervised_loss(out, y[torch.as_tensor(batch.idx)], True)

    hist = fit(model, step, data, tr, None, **{**KW, "epochs": 1, "precision": "bf16"})
    assert seen == {"dtype": torch.bfloat16, "autocast": True}
    assert np.isfinite(hist[0]["train_loss"])
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32


def test_changed_settings_do_not_resume_a_foreign_checkpoint(small, tmp_path):
    data, y, tr, va = small
    m = tiny_classifier()
    fit(m, supervised_step(m, y), data, tr, va, checkpoint_dir=tmp_path, **{**KW, "epochs": 1})
    m2 = tiny_classifier()
    with pytest.raises(UserError, match="different settings"):
        fit(m2, supervised_step(m2, y), data, tr, va, checkpoint_dir=tmp_path, **{**KW, "epochs": 1, "lr": 1e-2})


def test_device_precision_and_input_errors(small):
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda")
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(UserError, match="fp16"):
        resolve_precision("fp16", cpu)
    with pytest.raises(UserError, match="unknown precision"):
        resolve_precision("int8", cpu)
    data, y, tr, va = small
    m = tiny_classifier()
    with pytest.raises(UserError, match="validation"):
        fit(m, supervised_step(m, y), data, tr, [], early_stopping_patience=2, **KW)
    with pytest.raises(UserError, match="empty"):
        fit(m, supervised_step(m, y), data, [], va, **KW)
    # non-finite loss is reported with where it happened
    with pytest.raises(UserError, match="loss became nan"):
        fit(m, lambda b: m(b.x).sum() * float("nan"), data, tr, None, **KW)


def test_batch_plan_drops_only_an_incomplete_tail():
    assert [s.stop - s.start for s in batch_plan(20, 8)] == [8, 8]
    assert [s.stop - s.start for s in batch_plan(5, 8)] == [5]  # smaller than one batch: keep it
    assert [s.stop - s.start for s in batch_plan(20, 8, drop_last=False)] == [8, 8, 4]

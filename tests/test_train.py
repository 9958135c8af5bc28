"""Two-stage stacked training: a planted signal is recovered, shuffled targets stay at chance, each head
keeps its own best epoch, the stacked update equals training heads separately, exports reload exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from emonet_face.data.store import read_store, read_store_targets
from emonet_face.heads import FusedHeads, HeadArchitecture, build_head_module, load_heads
from emonet_face.taxonomy import HEAD_KEYS, NEUTRAL_STATS_FILENAME, head_stats_key
from emonet_face.train import StageConfig, StageData, TrainConfig, predict, train_heads, train_stage
from emonet_face.train.stage import epoch_metric, head_metric
from synthetic_stores import make_stores

pytestmark = pytest.mark.usefixtures("one_thread")


CONFIG = TrainConfig(
    arch="small",
    hidden=(16, 8),
    seed=0,
    pretrain=StageConfig(epochs=10, lr=1e-2, batch_size=128),
    finetune=StageConfig(epochs=8, lr=3e-3, batch_size=128),
)


def _run(root, shuffle: bool):
    big, binary = make_stores(root, n_big=2000, n_binary=2000, shuffle=shuffle)
    result = train_heads(
        root / "out", pretrain=big, finetune=binary, config=CONFIG, neutral="emotion=neutral", progress=False
    )
    return result, big, binary


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("planted"), shuffle=False)


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("shuffled"), shuffle=True)


def _pooled_vote_auc(result) -> float:
    """ROC-AUC over every held-out (image, emotion) judgement, recomputed from the store with scikit-learn."""
    data = result.splits["finetune"]
    pred = predict(result.heads, data.embeddings[data.val_idx])
    t, w = data.targets[data.val_idx], data.weights[data.val_idx]
    decided = (w > 0) & (t != 3.5)
    return roc_auc_score(t[decided] > 3.5, pred[decided])


def test_planted_signal_is_recovered(planted):
    result, _, _ = planted
    report = result.report.set_index("head")
    assert len(report) == 44
    assert report["spearman"].min() >= 0.8  # every head, held-out BIG ratings
    assert report["roc_auc"].mean() >= 0.9  # per head, held-out BINARY votes (few images per head)
    assert _pooled_vote_auc(result) >= 0.9
    assert report["kappa_votes"].median() > 0.4


def test_shuffled_targets_stay_at_chance(shuffled):
    result, _, _ = shuffled
    report = result.report
    assert report["spearman"].abs().mean() < 0.2
    assert 0.35 <= _pooled_vote_auc(result) <= 0.65
    assert 0.35 <= report["roc_auc"].mean() <= 0.65


def test_report_numbers_are_scipy_and_sklearn(planted):
    result, _, _ = planted
    data = result.splits["pretrain"]
    pred = predict(result.heads, data.embeddings[data.val_idx])
    h = HEAD_KEYS.index("anger")
    expected = spearmanr(pred[:, h], data.targets[data.val_idx, h]).statistic
    assert result.report.set_index("head").loc["anger", "spearman"] == pytest.approx(expected, abs=1e-9)
    # The per-epoch rank metrics agree with the library ones.
    fin = result.splits["finetune"]
    pv = predict(result.heads, fin.embeddings[fin.val_idx])
    for h in range(0, 40, 7):
        args = ("votes", pv[:, h], fin.targets[fin.val_idx, h], fin.weights[fin.val_idx, h])
        a, b = epoch_metric(*args), head_metric(*args)
        assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-9)
    args = ("ratings", pred[:, 3], data.targets[data.val_idx, 3], data.weights[data.val_idx, 3])
    assert epoch_metric(*args) == pytest.approx(head_metric(*args), abs=1e-9)


def test_exports_reload_in_both_layouts(planted):
    result, _big, binary = planted
    out = result.out
    probe = torch.from_numpy(np.random.default_rng(5).normal(size=(64, 32)).astype(np.float32))
    with torch.no_grad():
        expected = result.heads.eval()(probe)
        for layout in ("released", "safetensors"):
            loaded = load_heads(out / layout)
            assert loaded.keys == HEAD_KEYS
            torch.testing.assert_close(loaded(probe), expected, atol=1e-6, rtol=0)
            torch.testing.assert_close(loaded.neutral_mean, result.heads.neutral_mean, atol=1e-6, rtol=0)
    assert sorted(p.name for p in (out / "released").glob("model_*_best.pth")) == sorted(
        f"model_{k}_best.pth" for k in HEAD_KEYS
    )
    # Neutral stats: mean and std of each head's raw output over the rows whose metadata says neutral.
    stats = json.loads((out / "released" / NEUTRAL_STATS_FILENAME).read_text())
    embeddings, frame = read_store(binary)
    raw = predict(result.heads, embeddings[(frame["emotion"] == "neutral").to_numpy()])
    anger = stats[head_stats_key("anger")]
    h = HEAD_KEYS.index("anger")
    assert anger["mean"] == pytest.approx(float(raw[:, h].mean()), abs=1e-5)
    assert anger["std"] == pytest.approx(float(raw[:, h].std(ddof=1)), abs=1e-5)
    assert anger["count"] == int((frame["emotion"] == "neutral").sum())


def test_metrics_plot_and_record(planted):
    result, _, _ = planted
    out = result.out
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"stage", "epoch", "head", "train_loss", "val_loss", "val_metric", "lr", "best_epoch"} <= set(
        metrics.columns
    )
    runs = {k: v.epochs_run for k, v in result.stages.items()}
    assert len(metrics) == 44 * sum(runs.values())
    assert (out / "metrics.png").stat().st_size > 1000
    record = json.loads((out / "training.json").read_text())
    assert record["seed"] == 0 and record["config"]["widths"] == [16, 8]
    assert record["neutral"]["source"] == "filter emotion=neutral"
    assert set(pd.read_csv(out / "validation_report.csv").columns) >= {"head", "spearman", "roc_auc", "kappa_votes"}
    # Stage 2 only had votes for the 40 emotions: the extra-dimension heads keep their stage-1 weights.
    assert record["stages"]["finetune"]["best_epoch"]["valence"] == 0


def test_each_head_keeps_its_own_best_epoch(tmp_path):
    """Small noisy data and a high learning rate make heads peak at different epochs; after the stage
    each head's validation loss is the minimum over its epochs (including the start)."""
    rng = np.random.default_rng(0)
    n, dim = 160, 8
    x = rng.normal(size=(n, dim)).astype(np.float32)
    t = np.clip(3.5 + x @ rng.normal(size=(dim, 44)) * 0.5 + rng.normal(size=(n, 44)), 0, 7).astype(np.float32)
    data = StageData("pretrain", "ratings", x, t, np.ones_like(t), np.arange(80), np.arange(80, n))
    torch.manual_seed(0)
    heads = FusedHeads(HEAD_KEYS, HeadArchitecture(dim, (16,), 0.0))
    start_loss = _val_loss(heads, data)
    result = train_stage(heads, data, StageConfig(epochs=12, lr=0.05, batch_size=16, patience=100), progress=False)
    rows = pd.DataFrame(result.rows).pivot(index="epoch", columns="head", values="val_loss")[list(HEAD_KEYS)]
    best = np.minimum(rows.min().to_numpy(), start_loss)
    np.testing.assert_allclose(_val_loss(heads, data), best, rtol=1e-5)
    assert len(set(result.best_epoch.tolist())) > 3


def _val_loss(heads, data):
    pred = predict(heads, data.embeddings[data.val_idx])
    return ((pred - data.targets[data.val_idx]) ** 2).mean(0)


def test_stacked_training_equals_training_heads_one_by_one():
    """Same batches, same AdamW: 3 stacked heads end with the weights of 3 heads trained separately."""
    rng = np.random.default_rng(1)
    keys = HEAD_KEYS[:3]
    n, dim = 96, 6
    x = rng.normal(size=(n, dim)).astype(np.float32)
    t = rng.uniform(0, 7, size=(n, 44)).astype(np.float32)
    w = (rng.random((n, 44)) < 0.7).astype(np.float32)  # per-head masks differ
    arch = HeadArchitecture(dim, (5, 4), 0.0)
    torch.manual_seed(0)
    stacked = FusedHeads(HEAD_KEYS, arch)
    separate = {k: build_head_module(arch) for k in keys}
    for k, module in separate.items():
        module.load_state_dict(stacked.head_state_dict(k))
    train_idx = np.arange(n)
    data = StageData("pretrain", "ratings", x, t, w, train_idx, train_idx)  # validate on train: every head improves
    config = StageConfig(epochs=1, lr=1e-2, batch_size=32, patience=1)
    result = train_stage(stacked, data, config, seed=3, progress=False)
    assert (result.best_epoch[:3] == 1).all()

    order = train_idx[torch.randperm(n, generator=torch.Generator().manual_seed(3)).numpy()]
    for h, (k, module) in enumerate(separate.items()):
        opt = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3)
        for s in range(0, n, 32):
            idx = order[s : s + 32]
            pred = module(torch.from_numpy(x[idx]))[:, 0]
            wt, tt = torch.from_numpy(w[idx, h]), torch.from_numpy(t[idx, h])
            loss = (wt * (pred - tt) ** 2).sum() / wt.sum().clamp_min(1e-8)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        for name, value in module.state_dict().items():
            torch.testing.assert_close(stacked.head_state_dict(k)[name], value, atol=1e-5, rtol=1e-5)


def test_targets_reach_the_store(planted):
    _, big, binary = planted
    assert (~np.isnan(read_store_targets(big).ratings)).all()
    yes = read_store_targets(binary).votes_yes
    assert yes.shape == (2000, 44) and yes[:, 40:].sum() == 0


def test_heads_without_any_target_are_not_exported(tmp_path):
    """Fine-tuning alone gives the 4 extra dimensions no target: they are left out, with a warning."""
    _, binary = make_stores(tmp_path, n_big=10, n_binary=300)
    config = TrainConfig(hidden=(8,), finetune=StageConfig(epochs=2, batch_size=64))
    with pytest.warns(UserWarning, match="no training targets for 4 head"):
        result = train_heads(
            tmp_path / "out", finetune=binary, config=config, neutral="emotion=neutral", progress=False
        )
    assert len(result.heads.keys) == 40 and "valence" not in result.heads.keys
    assert load_heads(tmp_path / "out" / "released").keys == result.heads.keys
    assert set(result.report["head"]) == set(result.heads.keys) and "spearman" not in result.report


def test_plateau_schedule_and_a_neutral_store(tmp_path):
    from emonet_face.data.store import write_embeddings

    big, _ = make_stores(tmp_path, n_big=400, n_binary=10)
    neutral_rows = np.random.default_rng(3).normal(size=(25, 32)).astype(np.float32)
    write_embeddings(tmp_path / "neutral", neutral_rows)
    config = TrainConfig(hidden=(8,), pretrain=StageConfig(epochs=3, batch_size=64, schedule="plateau"))
    result = train_heads(
        tmp_path / "out", pretrain=big, config=config, neutral=str(tmp_path / "neutral"), progress=False
    )
    expected = predict(result.heads, neutral_rows).mean(0)
    np.testing.assert_allclose(result.heads.neutral_mean.numpy(), expected, atol=1e-6)
    record = json.loads((tmp_path / "out" / "training.json").read_text())
    assert record["neutral"] == {"source": f"store {tmp_path / 'neutral'}", "count": 25}
    assert record["config"]["pretrain"]["schedule"] == "plateau" and "finetune" not in record["stages"]

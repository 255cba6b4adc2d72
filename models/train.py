"""Training: the float twin first, then quantization-aware training of the Brevitas net
starting from the float weights. Deterministic under a seed on a given machine."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import data as datasets
from . import zoo
from .errors import ZooError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; stored beside its results."""

    model: str = zoo.DEFAULT_MODEL
    dataset: str | None = None          # None: the model's default data set
    weight_bits: int | None = None      # None: the model's default
    act_bits: int | None = None
    scaling: str = zoo.Scaling.POW2.value
    batch_norm: bool = True
    epochs: int = 10                    # float twin
    qat_epochs: int = 3                 # QAT fine-tuning from the float weights
    batch_size: int = 128
    lr: float = 3e-3
    qat_lr: float = 5e-4
    seed: int = 0
    data_dir: str | None = None
    threads: int | None = None          # None: leave torch's default
    float_init: str | None = None       # a float.pt to start from instead of training the twin
    augment: bool = True                # random horizontal flips where the data set allows

    def resolved(self) -> "TrainConfig":
        """The same config with every default filled in from the zoo entry."""
        entry = zoo.info(self.model)
        if self.epochs < 1:
            raise ZooError(f"epochs must be at least 1, not {self.epochs}")
        if self.qat_epochs < 1:
            raise ZooError(f"QAT epochs must be at least 1, not {self.qat_epochs}")
        return TrainConfig(**{
            **asdict(self),
            "dataset": self.dataset or entry.dataset,
            "weight_bits": self.weight_bits or entry.default_weight_bits,
            "act_bits": self.act_bits or entry.default_act_bits,
        })


def build_nets(cfg: TrainConfig) -> tuple[nn.Module, nn.Module]:
    """(quantized, float) networks of a resolved config."""
    quant = zoo.build(cfg.model, cfg.weight_bits, cfg.act_bits, scaling=cfg.scaling,
                      batch_norm=cfg.batch_norm)
    return quant, zoo.build_float(cfg.model, batch_norm=cfg.batch_norm)


@torch.no_grad()
def predict(net: nn.Module, x, batch_size: int = 1000, desc: str | None = None) -> torch.Tensor:
    """Top-1 labels of `net` on images `x` (a tensor or an array), in eval mode; `desc`
    shows a progress bar."""
    net.eval()
    x = torch.as_tensor(x)
    batches = range(0, len(x), batch_size)
    if desc is not None:
        batches = tqdm(batches, desc=desc, unit="batch", leave=False,
                       disable=len(x) <= batch_size)
    return torch.cat([torch.as_tensor(net(x[i:i + batch_size])).argmax(1) for i in batches])


def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of `net` on (x, y), 0..1."""
    return (predict(net, x, batch_size) == y).sum().item() / len(x)


def _fit(net, x, y, x_test, y_test, epochs, lr, batch_size, generator, label, hflip=False):
    """Adam with a one-cycle schedule; returns the per-epoch history. `hflip` mirrors a
    random half of every batch."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        bar = tqdm(range(steps), desc=f"{label} epoch {epoch + 1}/{epochs}", unit="batch",
                   leave=False, dynamic_ncols=True)
        for step in bar:
            idx = order[step * batch_size:(step + 1) * batch_size]
            batch = x[idx]
            if hflip:
                flip = torch.rand(len(idx), generator=generator) < 0.5
                batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(batch.contiguous(memory_format=torch.channels_last)), y[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        acc = evaluate(net, x_test, y_test)
        history.append({"epoch": epoch + 1, "loss": total / len(x), "test_accuracy": acc})
        tqdm.write(f"{label} epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}, "
                   f"test accuracy {acc:.4f}")
    return history


def train(cfg: TrainConfig, out: str | Path) -> dict:
    """Train the float twin and the QAT net of `cfg`; write model.pt, float.pt,
    metrics.json and curves.png to `out`. Returns the metrics."""
    cfg = cfg.resolved()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = datasets.load(cfg.dataset, cfg.data_dir)
    entry = zoo.info(cfg.model)
    if ds.input_shape != entry.input_shape:
        raise ZooError(f"{cfg.model} takes {entry.input_shape} inputs but {cfg.dataset} has "
                       f"{ds.input_shape}; pick a model made for {cfg.dataset} or another dataset")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)

    x, y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    x_test, y_test = torch.from_numpy(ds.x_test), torch.from_numpy(ds.y_test)
    quant, float_net = build_nets(cfg)
    # NHWC makes the CPU convolutions markedly faster here; results are unchanged.
    quant = quant.to(memory_format=torch.channels_last)
    float_net = float_net.to(memory_format=torch.channels_last)
    hflip = cfg.augment and ds.hflip_invariant

    start = time.perf_counter()
    if cfg.float_init:
        float_net.load_state_dict(_load_checkpoint(Path(cfg.float_init), cfg)["state_dict"])
        float_hist = []
    else:
        float_hist = _fit(float_net, x, y, x_test, y_test, cfg.epochs, cfg.lr, cfg.batch_size,
                          generator, "float", hflip)
    float_seconds = time.perf_counter() - start
    zoo.load_float_weights(quant, float_net)
    qat_hist = _fit(quant, x, y, x_test, y_test, cfg.qat_epochs, cfg.qat_lr, cfg.batch_size,
                    generator, f"QAT {cfg.weight_bits}w{cfg.act_bits}a", hflip)
    seconds = time.perf_counter() - start

    metrics = {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "weight_bits": cfg.weight_bits,
        "act_bits": cfg.act_bits,
        "float_accuracy": evaluate(float_net, x_test, y_test),
        "quant_accuracy": evaluate(quant, x_test, y_test),
        "epochs": cfg.epochs,
        "qat_epochs": cfg.qat_epochs,
        "seconds": seconds,
        "float_seconds": float_seconds,
        "threads": torch.get_num_threads(),
        "history": {"float": float_hist, "qat": qat_hist},
        "config": asdict(cfg),
    }
    meta = {"zoo": cfg.model, "weight_bits": cfg.weight_bits, "act_bits": cfg.act_bits,
            "scaling": cfg.scaling, "batch_norm": cfg.batch_norm, "dataset": cfg.dataset,
            "input_shape": list(entry.input_shape)}
    torch.save({**meta, "state_dict": quant.state_dict()}, out / "model.pt")
    torch.save({**meta, "state_dict": float_net.state_dict()}, out / "float.pt")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_curves(metrics, out / "curves.png")
    return metrics


def _load_checkpoint(path: Path, cfg: TrainConfig) -> dict:
    if not path.exists():
        raise ZooError(f"float weights {path} do not exist; give the float.pt written by "
                       "`samoyed train`")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved.get("zoo") != cfg.model or saved.get("batch_norm") != cfg.batch_norm:
        raise ZooError(f"{path} holds {saved.get('zoo')!r} (batch_norm={saved.get('batch_norm')}), "
                       f"not {cfg.model!r} (batch_norm={cfg.batch_norm}); give a float.pt of "
                       "the same model")
    return saved


def load_trained(model_dir: str | Path) -> tuple[nn.Module, dict]:
    """Rebuild the QAT net saved by `train` in `model_dir`; returns (net, metadata)."""
    path = Path(model_dir) / "model.pt"
    if not path.exists():
        raise ZooError(f"{path} does not exist; train a model first with "
                       f"`samoyed train --out {model_dir}`")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    net = zoo.build(saved["zoo"], saved["weight_bits"], saved["act_bits"],
                    scaling=saved["scaling"], batch_norm=saved["batch_norm"])
    net.load_state_dict(saved["state_dict"])
    net.eval()
    return net, {k: v for k, v in saved.items() if k != "state_dict"}


def load_float_twin(model_dir: str | Path) -> nn.Module:
    """Rebuild the float twin saved by `train` in `model_dir` (DIR/float.pt)."""
    path = Path(model_dir) / "float.pt"
    if not path.exists():
        raise ZooError(f"{path} does not exist; train a model first with "
                       f"`samoyed train --out {model_dir}`")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    net = zoo.build_float(saved["zoo"], batch_norm=saved["batch_norm"])
    net.load_state_dict(saved["state_dict"])
    return net.eval()


def plot_curves(metrics: dict, path: Path) -> None:
    """Loss and test accuracy per epoch of both phases, one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    offset = 0
    for phase, label in (("float", "float twin"),
                         ("qat", f"QAT {metrics['weight_bits']}w{metrics['act_bits']}a")):
        hist = metrics["history"][phase]
        epochs = [offset + h["epoch"] for h in hist]
        ax_loss.plot(epochs, [h["loss"] for h in hist], marker="o", label=label)
        ax_acc.plot(epochs, [100 * h["test_accuracy"] for h in hist], marker="o", label=label)
        offset = epochs[-1] if epochs else offset
    ax_loss.set(xlabel="epoch", ylabel="train loss", title=f"{metrics['model']} on {metrics['dataset']}")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

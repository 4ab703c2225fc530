"""An example user training function: a small PyTorch MLP on scikit-learn's bundled 8x8 digits.

`search_spaces/user_function_example.yaml` searches its learning rate, weight decay, hidden
width and optimizer against the parameter count it reports. It shows the whole contract of
`ranksearch.userfn`: read the values from `config`, report each epoch, save a checkpoint into
`reporter.checkpoint_dir` and restore it when `reporter.resumed`.
"""

from __future__ import annotations

from typing import Any

CHECKPOINT = "digits_mlp.pt"


def train(config: dict[str, Any], reporter: Any) -> None:
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    torch.manual_seed(int(config.get("seed", 0)))
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = np.random.default_rng(0).permutation(len(y))  # a fixed split, the same for every trial
    n_val = len(y) // 5
    val, tr = torch.tensor(order[:n_val]), torch.tensor(order[n_val:])

    hidden = int(config.get("hidden", 64))
    model = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))
    lr, wd = float(config.get("lr", 1e-2)), float(config.get("weight_decay", 0.0))
    if config.get("optimizer", "adam") == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wd, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    start = 0
    ckpt = reporter.checkpoint_dir / CHECKPOINT if reporter.checkpoint_dir is not None else None
    if ckpt is not None and reporter.resumed and ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
    params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(int(config.get("seed", 0)))
    for epoch in range(start + 1, int(config.get("epochs", 5)) + 1):
        model.train()
        for idx in tr[torch.randperm(len(tr), generator=gen)].split(64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(x[val]).argmax(1) == y[val]).float().mean().item()
        if ckpt is not None:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch}, ckpt)
        reporter(epoch=epoch, val_accuracy=acc, train_loss=loss.item(), params=params)

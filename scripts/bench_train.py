#!/usr/bin/env python3
"""The moe-mnist model's training step in PyTorch from Python: the yardstick scripts/bench-train.sh
compares `moe-mnist train` against.

Written from the model description, not from the C++ code: 784 -> Linear(16) -> MoE(8 experts
Linear-ReLU-Linear 16-16-16, gate Linear(16, 8) + softmax, noisy top-2 gating, softmax over the two
chosen scores, weighted sum, importance loss 0.01 * CV^2) -> Linear(10); Adam 1e-3. No DataLoader:
the images are one pre-stacked float tensor and each step indexes a shuffled batch out of it, as the
C++ loop does. --style picks the expert dispatch (sparse: rows sorted by expert, each expert run on
its slice; batched: every expert on every row with a combine matrix that is zero for unchosen experts).

Prints one JSON object per epoch: {"epoch": i, "seconds": s, "loss": l} (training steps only).
"""
import argparse
import json
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    n_dims = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims)]
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=4 + 4 * n_dims).reshape(dims)


class MoE(nn.Module):
    def __init__(self, emb=16, n_experts=8, k=2, w_importance=0.01):
        super().__init__()
        self.k, self.w_importance = k, w_importance
        self.gate = nn.Linear(emb, n_experts)
        self.noise = nn.Linear(emb, n_experts)
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(emb, emb), nn.ReLU(), nn.Linear(emb, emb))
                                     for _ in range(n_experts))

    def forward(self, x, style):
        probs = torch.softmax(self.gate(x), 1)                               # [B, E]
        scores = probs + torch.randn_like(probs) * F.softplus(self.noise(x))
        top_v, top_i = scores.topk(self.k, 1)                                # [B, k]
        top_w = torch.softmax(top_v, 1)
        E = len(self.experts)
        if style == "batched":
            combine = torch.zeros_like(probs).scatter(1, top_i, top_w)      # [B, E]
            outs = torch.stack([e(x) for e in self.experts], 1)             # [B, E, emb]
            y = (outs * combine.unsqueeze(2)).sum(1)
        else:
            flat_e = top_i.reshape(-1)
            order = flat_e.argsort()
            rows = torch.arange(x.size(0)).repeat_interleave(self.k)[order]
            w = top_w.reshape(-1)[order].unsqueeze(1)
            xs = x[rows]
            counts = torch.bincount(flat_e, minlength=E).tolist()
            outs = [self.experts[e](part) for e, part in enumerate(xs.split(counts)) if part.size(0)]
            y = torch.zeros_like(x).index_add_(0, rows, torch.cat(outs) * w)
        importance = probs.sum(0)
        return y, self.w_importance * (importance.std() / importance.mean()) ** 2


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Linear(784, 16)
        self.moe = MoE()
        self.classifier = nn.Linear(16, 10)

    def forward(self, x, style):
        y, aux = self.moe(self.embedding(x), style)
        return self.classifier(y), aux


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("MOE_MNIST_DATA", "data/mnist"))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-train", type=int, default=0, help="train on the first N images (0 = all)")
    p.add_argument("--style", choices=["sparse", "batched"], default="sparse")
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    images = read_idx(os.path.join(a.data, "train-images-idx3-ubyte"))
    labels = read_idx(os.path.join(a.data, "train-labels-idx1-ubyte"))
    n = a.n_train or len(images)
    x = images[:n].reshape(n, 784).float().div_(255.0)   # [n, 784]
    y = labels[:n].long()                               # [n]
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for epoch in range(1, a.epochs + 1):
        perm = torch.randperm(n)
        t0 = time.perf_counter()
        loss_sum, steps = 0.0, 0
        for i in range(0, n, a.batch):
            idx = perm[i:i + a.batch]
            logits, aux = net(x[idx], a.style)
            loss = F.cross_entropy(logits, y[idx]) + aux
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            steps += 1
        seconds = time.perf_counter() - t0
        print(json.dumps({"epoch": epoch, "seconds": round(seconds, 4), "loss": round(loss_sum / steps, 5)}), flush=True)


if __name__ == "__main__":
    main()

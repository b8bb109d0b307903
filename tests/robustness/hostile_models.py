"""Factories for `ncd import` that misbehave: copied into a scratch folder by the tests."""

import torch


class Lin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.l(x)


class Dict(torch.nn.Module):
    def forward(self, x):
        return {"a": x * 2, "b": x + 1}


class Chunk(torch.nn.Module):
    def forward(self, x):
        return x.chunk(2, dim=-1)


def lin():
    return Lin()


def raises():
    raise RuntimeError("boom")


def exits():
    raise SystemExit(3)


def number():
    return 42


def dict_model():
    return Dict()


def chunk():
    return Chunk()

"""Plain PyTorch estimators of the weight gradient of a linear map, from the paper's
equations (Liu et al. 2023, Winner-Take-All Column Row Sampling; CRS: Drineas, Kannan and
Mahoney 2006). The ground truth for tests of `sampled.py`; they share no code with it.

For Y = X Wᵀ over n rows (batch · tokens), the weight gradient is a sum of n outer products,

    dW = dYᵀ X = Σ_i dy_iᵀ x_i,                      x_i = X[i, :],  dy_i = dY[i, :]

Column-row sampling (CRS) draws k indices i.i.d. with probabilities p_i and averages
dy_iᵀ x_i / p_i; WTA-CRS keeps the |C| most probable pairs exactly and samples the other
k − |C| from the rest (paper eq. 5).
"""

import torch


def exact_weight_grad(x, dy):
    """dW = dYᵀ X. x: [n, D], dy: [n, J] -> [J, D]."""
    return dy.transpose(0, 1) @ x


def crs_estimate(x, dy, p, k, generator=None):
    """Plain CRS: (1/k) Σ_{t=1}^{k} dy_{i_t}ᵀ x_{i_t} / p_{i_t}, i_t ~ p i.i.d. (unbiased).
    x: [n, D], dy: [n, J], p: [n] summing to 1 -> [J, D]."""
    idx = torch.multinomial(p, k, replacement=True, generator=generator)
    est = torch.zeros(dy.shape[1], x.shape[1], dtype=x.dtype, device=x.device)
    for i in idx.tolist():
        est += torch.outer(dy[i], x[i]) / (k * p[i])
    return est


def wtacrs_estimate(x, dy, p, k, generator=None):
    """WTA-CRS (paper eq. 5): C = the |C| indices of largest p (the winners, taken exactly),
    then k − |C| indices j_t drawn i.i.d. from p restricted to the rest and renormalised:

        Σ_{c ∈ C} dy_cᵀ x_c + (1 − Σ_{c∈C} p_c) / (k − |C|) · Σ_t dy_{j_t}ᵀ x_{j_t} / p_{j_t}

    |C| is the size in 0 .. k−1 that minimises (1 − Σ_{c∈C} p_c) / (k − |C|), the factor of
    the estimator's variance bound (paper, Theorem 1). k ≥ n: every pair, exactly."""
    n = x.shape[0]
    if k >= n:
        return exact_weight_grad(x, dy)
    order = sorted(range(n), key=lambda i: -float(p[i]))
    best, size = None, 0
    taken = 0.0
    for c in range(k):
        factor = (1.0 - taken) / (k - c)
        if best is None or factor < best:
            best, size = factor, c
        taken += float(p[order[c]])
    winners = order[:size]
    est = torch.zeros(dy.shape[1], x.shape[1], dtype=x.dtype, device=x.device)
    for c in winners:
        est += torch.outer(dy[c], x[c])
    rest = torch.ones(n, dtype=torch.bool)
    rest[winners] = False
    q = torch.where(rest.to(p.device), p, torch.zeros_like(p))
    mass = float(q.sum())
    if mass <= 0:
        return est
    draws = torch.multinomial(q / mass, k - size, replacement=True, generator=generator)
    for j in draws.tolist():
        est += torch.outer(dy[j], x[j]) * (mass / ((k - size) * float(p[j])))
    return est

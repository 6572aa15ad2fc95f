"""The baselines of ``benchmarks/run.py``: what a researcher would write without ssm-jax.

(a) ``torch_*``: a per-configuration loop in eager PyTorch on the CPU (torch.optim.SGD,
    metrics every ``save_every`` steps), the optional ``bench`` extra.
(b) ``jax_loop_*``: a per-configuration Python loop over a jitted JAX step (one compile per
    distinct problem shape, metrics every ``save_every`` steps through a jitted function).

Both use the ssm-jax conventions (loss = mean over examples of omega_y x loss, squared loss
1/2 ||z - y||^2, power-law class weights with mean per-example weight 1, gaussian init of
std ``init_scale``) so their results can be compared with ssm-jax's (see ``check_*``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Run:
    """One configuration of a workload."""

    counts: tuple[int, ...]
    gamma: float
    seed: int
    dim: int
    loss: str
    lr: float
    steps: int
    save_every: int
    init_scale: float

    @property
    def labels(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.counts)), self.counts)

    def omega(self) -> np.ndarray:
        counts = np.asarray(self.counts, float)
        raw = (counts / counts.max()) ** (-self.gamma)
        return raw * counts.sum() / np.sum(counts * raw)


# ------------------------------------------------------------------------- (a) PyTorch


def torch_run(run: Run, threads: int | None = None, gamma_shift: float = 0.0,
              record: bool = True):
    """Train one configuration in eager PyTorch; returns the per-save balanced accuracy and
    the final balanced loss (mean over classes of the mean per-example loss)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(run.seed)
    k, d, n = len(run.counts), run.dim, sum(run.counts)
    labels = torch.as_tensor(run.labels)
    onehot = torch.nn.functional.one_hot(labels, k).T.float()  # (k, n)
    shifted = Run(**{**run.__dict__, "gamma": run.gamma + gamma_shift})
    weights = torch.as_tensor(shifted.omega(), dtype=torch.float32)[labels]
    W = (run.init_scale * torch.randn(k, d, generator=gen)).requires_grad_()
    H = (run.init_scale * torch.randn(d, n, generator=gen)).requires_grad_()
    opt = torch.optim.SGD([W, H], lr=run.lr)
    counts = onehot.sum(1)

    def per_example(Z):
        if run.loss == "mse":
            return 0.5 * ((Z - onehot) ** 2).sum(0)
        return torch.nn.functional.cross_entropy(Z.T, labels, reduction="none")

    history = []

    def metrics():
        with torch.no_grad():
            Z = W @ H
            losses = per_example(Z)
            own = Z[labels, torch.arange(n)]
            others = Z.masked_fill(onehot.bool(), -math.inf).max(0).values
            accuracy = (onehot @ (own > others).float()) / counts
            history.append(float(accuracy.mean()))
            return (onehot @ losses) / counts

    for step in range(run.steps):
        if record and step % run.save_every == 0:
            metrics()
        opt.zero_grad()
        loss = (weights * per_example(W @ H)).mean()
        loss.backward()
        opt.step()
    per_class_loss = metrics()
    return np.asarray(history), float(per_class_loss.mean())


def torch_gamma_gradient(run: Run, threads: int | None = None, h: float = 1e-3) -> float:
    """d(final balanced loss)/d(gamma) by central finite differences (two eager runs):
    the straightforward route in PyTorch (backpropagating through 2,000 unrolled SGD steps
    with ``create_graph`` would hold every step's graph in memory)."""
    plus = torch_run(run, threads, +h, record=False)[1]
    minus = torch_run(run, threads, -h, record=False)[1]
    return (plus - minus) / (2 * h)


def scipy_flow(run: Run, t1: float, rtol: float, atol: float):
    """Gradient flow of one configuration with ``scipy.integrate.solve_ivp`` (RK45) and a
    NumPy vector field, saved at ``steps / save_every + 1`` times; returns the balanced
    accuracies."""
    from scipy.integrate import solve_ivp

    rng = np.random.default_rng(run.seed)
    k, d, n = len(run.counts), run.dim, sum(run.counts)
    labels = run.labels
    onehot = np.eye(k)[labels].T
    weights = run.omega()[labels]
    W0 = run.init_scale * rng.standard_normal((k, d))
    H0 = run.init_scale * rng.standard_normal((d, n))

    def field(t, y):
        W, H = y[: k * d].reshape(k, d), y[k * d:].reshape(d, n)
        R = (W @ H - onehot) * (weights / n)
        return -np.concatenate([(R @ H.T).ravel(), (W.T @ R).ravel()])

    times = np.linspace(0, t1, run.steps // run.save_every + 1)
    sol = solve_ivp(field, (0, t1), np.concatenate([W0.ravel(), H0.ravel()]), t_eval=times,
                    rtol=rtol, atol=atol)
    accuracies = []
    for y in sol.y.T:
        Z = y[: k * d].reshape(k, d) @ y[k * d:].reshape(d, n)
        own = Z[labels, np.arange(n)]
        others = np.where(onehot > 0, -np.inf, Z).max(0)
        accuracies.append(np.mean((onehot @ (own > others)) / onehot.sum(1)))
    return np.asarray(accuracies)


# -------------------------------------------------------------------- (b) JAX Python loop


class JaxLoop:
    """A per-configuration Python loop over a jitted JAX gradient step (compiled once per
    problem shape and loss), metrics every ``save_every`` steps via a jitted function."""

    def __init__(self):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self._steps: dict = {}

    def _functions(self, loss: str):
        if loss in self._steps:
            return self._steps[loss]
        jax, jnp = self.jax, self.jnp

        def per_example(Z, onehot):
            if loss == "mse":
                return 0.5 * jnp.sum((Z - onehot) ** 2, axis=0)
            return jax.nn.logsumexp(Z, axis=0) - jnp.sum(onehot * Z, axis=0)

        def objective(params, onehot, weights):
            return jnp.mean(weights * per_example(params["W"] @ params["H"], onehot))

        @jax.jit
        def step(params, onehot, weights, lr):
            grads = jax.grad(objective)(params, onehot, weights)
            return jax.tree.map(lambda p, g: p - lr * g, params, grads)

        @jax.jit
        def metrics(params, onehot):
            Z = params["W"] @ params["H"]
            counts = onehot.sum(1)
            own = jnp.sum(Z * onehot, axis=0)
            others = jnp.max(jnp.where(onehot > 0, -jnp.inf, Z), axis=0)
            accuracy = (onehot @ (own > others).astype(Z.dtype)) / counts
            return jnp.mean(accuracy), (onehot @ per_example(Z, onehot)) / counts

        def final_loss(gamma, params0, onehot, counts, lr, steps):
            raw = (counts / counts.max()) ** (-gamma)
            omega = raw * counts.sum() / jnp.sum(counts * raw)
            weights = omega @ onehot

            def body(p, _):
                return jax.tree.map(lambda a, g: a - lr * g, p,
                                    jax.grad(objective)(p, onehot, weights)), None

            params = jax.lax.scan(body, params0, None, length=steps)[0]
            return jnp.mean(metrics(params, onehot)[1])

        self._steps[loss] = (step, metrics, jax.jit(jax.grad(final_loss), static_argnums=5))
        return self._steps[loss]

    def inputs(self, run: Run):
        from ssm_jax.model import init_gaussian
        from ssm_jax.problem import make_problem

        jax, jnp = self.jax, self.jnp
        k = len(run.counts)
        # ssm-jax's initialisation, so that results can be compared run by run
        params = init_gaussian(jax.random.PRNGKey(run.seed), make_problem(run.counts),
                               run.dim, run.init_scale, "sample", False, jnp.float32)
        onehot = jnp.asarray(np.eye(k)[run.labels].T, jnp.float32)
        weights = jnp.asarray(run.omega()[run.labels], jnp.float32)
        return params, onehot, weights

    def train(self, run: Run):
        """Returns the per-save balanced accuracies (as a NumPy array)."""
        step, metrics, _ = self._functions(run.loss)
        params, onehot, weights = self.inputs(run)
        lr = self.jnp.float32(run.lr)
        history = []
        for i in range(run.steps):
            if i % run.save_every == 0:
                history.append(metrics(params, onehot)[0])
            params = step(params, onehot, weights, lr)
        history.append(metrics(params, onehot)[0])
        return np.asarray(self.jax.device_get(history))

    def gamma_gradient(self, run: Run) -> float:
        """d(final balanced loss)/d(gamma) with jax.grad through a jitted lax.scan run."""
        _, _, grad = self._functions(run.loss)
        params, onehot, _ = self.inputs(run)
        counts = self.jnp.asarray(run.counts, self.jnp.float32)
        return float(grad(self.jnp.float32(run.gamma), params, onehot, counts,
                          self.jnp.float32(run.lr), run.steps))

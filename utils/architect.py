"""The architecture step of ProxylessNAS: Proxyless-G (binary-gate gradients) and Proxyless-R (REINFORCE).

Both update the supernet's alphas with Adam on batches of the architecture split, alternating with
weight steps (search_cifar.py calls ``Architect.step`` every K weight steps):

* gradient ("two" mode, the default): two paths per edge are sampled from p, the active one runs with
  autograd, the other without a graph; dL/dalpha flows through the binary gates (models/mixed_op.py,
  _BinaryGate).  After the Adam step the two updated alphas are shifted by a common offset so that
  the probabilities of the unsampled paths stay the same (SuperNet.rescale_sampled).  Memory does
  not grow with the number of candidates.  "full" mode keeps all N paths in the graph.
* reinforce: M whole architectures are sampled and run without gradients, each rewarded on the
  batch; grad alpha = -(1/M) sum_m (R_m - b) grad log p(arch_m) with a moving-average baseline b.

With a latency table, the gradient step minimises a latency loss of the expected latency, and the
REINFORCE reward is acc x (LAT/T)^w (utils/objective.py).
"""
from __future__ import annotations

import itertools
from collections import Counter
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from utils.latency_table import LatencyTable
from utils.objective import LatencyModel, latency_loss, reinforce_reward
from utils.distributed import DistInfo, Sync, evaluate_all
from utils.train import (Amp, DivergenceError, GradSync, Meter, at_least_float32, backward_step, bn_statistics_kept,
                         frozen, recalibrate_bn)

Reward = Callable[[torch.Tensor, torch.Tensor, object], float]  # (logits, y, supernet) -> reward


@dataclass
class LatencyTerm:
    """The expected-latency model and the loss / reward settings of a hardware-aware search."""

    model: LatencyModel
    target: float  # T, ms
    kind: str = "add"  # "add": CE + lam (E[LAT]-T)/T; "mul": CE (E[LAT]/T)^beta; "hinge": CE + lam max(0, E[LAT]/T-1)
    lam: float = 0.1
    beta: float = 0.6
    w: float = -0.07  # REINFORCE: reward = acc (LAT/T)^w

    def loss(self, ce: torch.Tensor, supernet) -> tuple[torch.Tensor, torch.Tensor]:
        expected = self.model.expected(supernet)
        return latency_loss(ce, expected, self.target, self.kind, self.lam, self.beta), expected

    def reward(self, acc: float, supernet) -> float:
        """acc x (LAT/T)^w for the architecture of the supernet's last forward."""
        return reinforce_reward(acc, self.model.predict_active(supernet), self.target, self.w)

    @classmethod
    def from_table(cls, path, supernet, target: float, kind: str = "add", lam: float = 0.1, beta: float = 0.6,
                   w: float = -0.07, stat: str = "median_ms") -> "LatencyTerm":
        """Load a latency table file, check that it covers the supernet's decisions, and model it (``stat``: the
        entries' statistic, e.g. "cpu_median_ms" for a one-thread table measured on a shared machine)."""
        return cls(LatencyModel(LatencyTable.load(path), supernet, stat), target, kind, lam, beta, w)

    def record(self, supernet) -> dict[str, float]:
        """For the epoch log: the expected latency of the sampling distribution and the argmax latency."""
        with torch.no_grad(), supernet.gate_mode("sample"):
            expected = float(self.model.expected(supernet))
        return {"expected_latency_ms": expected, "argmax_latency_ms": self.model.predict(supernet.derive())}


def gradient_arch_step(supernet, x, y, criterion, optimizer, amp: Amp, mode: str, weight_params,
                       latency: LatencyTerm | None = None, grad_sync: GradSync | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """One Adam step on alpha.  Weights are frozen for the step: no weight gradients are computed
    and fewer activations are kept.  In "two" mode the two updated alphas are then shifted so the
    probabilities of the unsampled paths stay as they were.  grad_sync: alpha's gradients averaged
    over processes (data-parallel search; every process then takes the same step)."""
    optimizer.zero_grad(set_to_none=True)
    with supernet.gate_mode(mode), frozen(weight_params):
        with amp.autocast():
            logits = supernet(x)
        ce = criterion(at_least_float32(logits), y)
        loss = ce if latency is None else latency.loss(ce, supernet)[0]
        backward_step(loss, optimizer, amp, grad_sync=grad_sync)
    if mode == "two":
        supernet.rescale_sampled()
    return ce.detach(), logits.detach()


class Reinforce:
    """Proxyless-R: sample M architectures, reward each on a validation batch, moving-average baseline,
    grad alpha = -(1/M) sum_m (R_m - b) grad log p(arch_m)."""

    def __init__(self, samples: int, decay: float, baseline: float | None = None):
        self.samples, self.decay, self.baseline = samples, decay, baseline

    def step(self, supernet, x, y, criterion, optimizer, amp: Amp, reward: Reward,
             reduce: Callable[[torch.Tensor], torch.Tensor] | None = None):
        """reward(logits, y, supernet) of the architecture the supernet's last forward ran; reduce: the
        rewards' mean over processes (data-parallel: each process rewarded the same M architectures on
        its shard of the batch), so that every process takes the same step from one baseline."""
        rewards, archs, losses, last_logits = [], [], [], None
        with torch.no_grad(), supernet.gate_mode("sample"):
            for _ in range(self.samples):
                with amp.autocast():
                    logits = supernet(x)
                rewards.append(float(reward(logits, y, supernet)))
                archs.append(supernet.active_indices())
                losses.append(criterion(at_least_float32(logits), y))
                last_logits = logits
        r = torch.tensor(rewards, dtype=torch.float64)
        if reduce is not None:
            r = reduce(r)
        b = float(r.mean()) if self.baseline is None else self.baseline
        optimizer.zero_grad(set_to_none=True)
        logp = supernet.log_prob(torch.stack(archs))  # (M,)
        loss = -((r.to(logp.device, logp.dtype) - b) * logp).mean()
        loss.backward()
        optimizer.step()
        self.baseline = self.decay * b + (1 - self.decay) * float(r.mean())
        return torch.stack(losses).mean(), last_logits


def accuracy_reward(latency: LatencyTerm | None = None) -> Reward:
    """Validation-batch accuracy, times (LAT/T)^w when a latency term is given."""
    def reward(logits, y, supernet) -> float:
        acc = float((logits.argmax(1) == y).float().mean())
        return acc if latency is None else latency.reward(acc, supernet)
    return reward


class Architect:
    """The architecture side of a search: its Adam optimizer on the alphas (no weight decay; paper:
    lr 0.006 gradient / 0.01 reinforce, betas (0, 0.999)), AMP settings and algorithm, one ``step``.

    algo "gradient" (mode "two" or "full") or "reinforce" (``samples`` architectures per step,
    baseline decay ``baseline_decay``).  ``state_dict`` holds what a resumed search needs.
    """

    def __init__(self, supernet, amp: Amp, criterion, *, lr: float = 0.006, betas=(0.0, 0.999), eps: float = 1e-8,
                 algo: str = "gradient", mode: str = "two", latency: LatencyTerm | None = None, samples: int = 10,
                 baseline_decay: float = 0.99, sync: Sync | None = None):
        if algo not in ("gradient", "reinforce"):
            raise ValueError(f"unknown architecture algorithm {algo!r}; gradient or reinforce")
        self.optimizer = torch.optim.Adam(supernet.arch_parameters(), lr=lr, betas=betas, eps=eps, weight_decay=0.0)
        self.supernet, self.amp, self.criterion = supernet, amp, criterion
        self.algo, self.mode, self.latency = algo, mode, latency
        self.weight_params = supernet.weight_parameters()
        self.reinforce = Reinforce(samples, baseline_decay) if algo == "reinforce" else None
        self.reward = accuracy_reward(latency)
        on = sync is not None and sync.info.enabled  # data-parallel: alpha's gradients / rewards averaged
        self.grad_sync = (lambda params: sync.grads(params, "arch")) if on else None
        self.reduce = (lambda t: sync.mean(t, "arch")) if on else None

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One architecture update on (x, y); returns (cross-entropy, logits) for the logs."""
        if self.reinforce is not None:
            return self.reinforce.step(self.supernet, x, y, self.criterion, self.optimizer, self.amp, self.reward,
                                       self.reduce)
        return gradient_arch_step(self.supernet, x, y, self.criterion, self.optimizer, self.amp, self.mode,
                                  self.weight_params, self.latency, self.grad_sync)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(),
                "scaler": self.amp.scaler.state_dict() if self.amp.scaler else None,
                "baseline": self.reinforce.baseline if self.reinforce else None}

    def hook(self, every: int, batches: Iterator, meter: Meter) -> Callable[[int], None]:
        """A step hook for train_one_epoch: after every ``every``-th weight step, one architecture step on
        the next batch of ``batches``; its loss goes to ``meter``, checked at once (one host sync, as
        each forward's path sampling makes anyway), so that a diverged alpha never samples a path."""
        def step_hook(i: int) -> None:
            if (i + 1) % every == 0:
                x, y = next(batches)
                meter.update(*self.step(x, y), y, step=i)
                meter.check()
                self.check_alphas(i)
        return step_hook

    def check_alphas(self, step: int) -> None:
        """A finite architecture loss can still leave a non-finite alpha (a non-finite gate gradient; seen
        once in a bf16 CPU test run): stop with the same clear divergence error, before it samples a path."""
        alphas = self.supernet.alphas()  # a detached copy
        bad = ~torch.isfinite(alphas)
        if bool(bad.any()):
            raise DivergenceError("architecture parameter alpha", step, float(alphas[bad][0]))

    def evaluate(self, loader, amp: Amp, info: DistInfo = DistInfo(), calibration=None,
                 calibration_batches: int = 10) -> dict[str, float]:
        """The epoch's view of the search on ``loader`` (the architecture split): loss and accuracy of
        sampled and of argmax networks, how concentrated the op distributions are, latency figures.

        The argmax network evaluated with the search's BN statistics is misleading (they were gathered
        over other, sampled paths), so with ``calibration`` (batches of training images) it is also
        evaluated with statistics recalibrated on its own paths; the search's statistics and RNG stream
        are restored afterwards, so this measurement does not change the search."""
        with self.supernet.gate_mode("sample"):
            sampled = evaluate_all(self.supernet, loader, self.supernet, amp, info, progress=False)
        with self.supernet.gate_mode("argmax"):
            argmax = evaluate_all(self.supernet, loader, self.supernet, amp, info, progress=False)
        top = self.supernet.probs().max(1).values
        out = {"valid_loss": sampled["loss"], "valid_acc": sampled["acc"], "valid_argmax_loss": argmax["loss"],
               "valid_argmax_acc": argmax["acc"], "entropy": self.supernet.entropy(),
               "argmax_prob_mean": float(top.mean()), "argmax_share_over_half": float((top > 0.5).float().mean())}
        if calibration is not None:
            with self.supernet.gate_mode("argmax"), bn_statistics_kept(self.supernet), torch.random.fork_rng(devices=[]):
                recalibrate_bn(self.supernet, (x for x, _ in itertools.islice(calibration, calibration_batches)), amp)
                recal = evaluate_all(self.supernet, loader, self.supernet, amp, info, progress=False)
            out.update(valid_argmax_recal_loss=recal["loss"], valid_argmax_recal_acc=recal["acc"])
        if self.latency is not None:
            out.update(self.latency.record(self.supernet))
        return out

    def convergence_note(self, near: float = 0.95) -> str | None:
        """A sentence when the op distributions are still close to uniform (mean entropy above ``near``
        times its maximum log N): the argmax genotype is then close to a random draw from the space."""
        n = len(self.supernet.candidates)
        entropy, top = self.supernet.entropy(), float(self.supernet.probs().max(1).values.mean())
        if n < 2 or entropy <= near * math.log(n):
            return None
        return (f"the architecture distribution is still close to uniform (mean entropy {entropy:.3f} of at most "
                f"{math.log(n):.3f} nats, mean argmax probability {top:.3f}, uniform {1 / n:.3f}): the argmax genotype "
                "is close to a random draw; search longer, take more architecture steps per weight step, or use a "
                "larger architecture learning rate")

    def tensorboard(self, writer, step: int) -> None:
        """The alpha distributions and, per op, its mean probability and argmax count (writer None: nothing)."""
        if writer is None:
            return
        supernet = self.supernet
        probs, counts = supernet.probs(), Counter(supernet.space.ops_of(supernet.derive()))
        writer.add_histogram("alpha/probs", probs, step)
        writer.add_histogram("alpha/logits", supernet.alphas().float(), step)
        for i, name in enumerate(supernet.candidates):
            writer.add_scalar(f"alpha_mean_prob/{name}", float(probs[:, i].mean()), step)
            writer.add_scalar(f"argmax_count/{name}", counts[name], step)
        writer.flush()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.amp.scaler is not None and state.get("scaler"):
            self.amp.scaler.load_state_dict(state["scaler"])
        if self.reinforce is not None:
            self.reinforce.baseline = state.get("baseline")

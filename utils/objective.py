"""The search's latency objective: the supernet's expected latency (differentiable in alpha), the
latency losses of the gradient search and the REINFORCE reward, over a table of utils/latency_table.py.

E[LAT] = fixed + sum over input groups sum_(i_1..i_k) p_1(i_1) ... p_k(i_k) c(i_1..i_k), with c the table's
cost of those candidates on the k edges of the group (edges that read one tensor: their ops do not cost the
sum of their costs alone; relative to the baseline, summed over the cells whose group reads the same
decisions) and p_j the distribution decision j is sampled from: in "two" mode the two-way softmax over the
sampled pair, so that only the sampled alphas get a gradient (the paper's Eq. 4 over the binarized paths).
A group's decisions are distinct and the groups partition the decisions, so the expectation is exact
(also when NAS-Bench-201 shares a decision among all its cells).
"""
from __future__ import annotations

import torch

from utils.latency_table import LatencyError, LatencyTable, group_costs, predict_genotype


class LatencyModel:
    """Expected latency of a supernet, differentiable in its alpha, and predictions for genotypes.

    The latency is that of the network the table was built for (its space and size): the supernet may be a
    smaller proxy of it, as long as both have the same decisions (NAS-Bench-201: always the cell's 6, so a
    C=8, N=1 supernet can search for the latency of the benchmark's C=16, N=5 network).

    ``costs``: the table's GroupCosts over the supernet's candidates (in its order), ``fixed``: ms.
    """

    def __init__(self, table: LatencyTable, supernet, stat: str = "median_ms"):
        self.table, self.stat = table, stat
        self.space, self.supernet_macro = supernet.space, dict(supernet.macro)
        same = table.meta.get("space", "tree") == supernet.space.name  # (by name: the space need not be registered)
        self.macro = supernet.space.macro(table.macro) if same else dict(supernet.macro)
        self.candidates = tuple(supernet.candidates)
        self.num_classes, self.image_size = supernet.num_classes, supernet.image_size
        decisions = (len(self.space.decision_names(self.macro)), len(self.space.decision_names(self.supernet_macro)))
        if decisions[0] != decisions[1]:
            raise LatencyError(f"the latency table's network ({self.space.describe_macro(self.macro)}) has "
                               f"{decisions[0]} decisions, the supernet ({self.space.describe_macro(self.supernet_macro)}) "
                               f"{decisions[1]}: build a table for the supernet's size")
        table.check(self.space, self.macro, self.candidates, num_classes=self.num_classes, image_size=self.image_size)
        self.costs = group_costs(table, self.space, self.macro, self.candidates, stat, self.image_size,
                                 self.num_classes)
        self.fixed = self.costs.fixed

    def probs(self, supernet, sampled: bool | None = None) -> torch.Tensor:
        """(decisions, N) the distribution each decision's latency is averaged over; differentiable in
        alpha: the sampled pair's two-way softmax where the last forward sampled pairs and the supernet is
        in "two" mode (sampled=None) or wherever pairs were sampled (sampled=True), else all N."""
        if (supernet.space is not self.space or supernet.macro != self.supernet_macro
                or tuple(supernet.candidates) != self.candidates):
            raise LatencyError(f"this LatencyModel was built for another supernet ({self.space.name} space "
                               f"{self.space.describe_macro(self.supernet_macro)} candidates={','.join(self.candidates)})")
        alpha = supernet.masked_alpha()  # -inf where the space does not allow a candidate
        pairs = supernet.sampled
        use_pairs = pairs is not None and (sampled or (sampled is None and supernet.mode == "two"))
        if not use_pairs or any(len(p) > 2 for p in pairs):
            return torch.softmax(alpha, dim=1)
        # each decision's own sampled tuple: a pair, or the one candidate an edge allows (p = 1, no gradient)
        mask = torch.zeros(alpha.shape, dtype=torch.bool)
        for d, p in enumerate(pairs):
            mask[d, list(p)] = True
        return torch.softmax(alpha.masked_fill(~mask.to(alpha.device), float("-inf")), dim=1)

    def expected(self, supernet, sampled: bool | None = None) -> torch.Tensor:
        """E[LAT] (ms, scalar; the module docstring's formula).  In "two" mode p is the two-way softmax over
        the pair of the last forward (call it inside the gate_mode("two") block, or pass sampled=True), so
        that only the sampled alphas get a gradient."""
        return self.costs.expected(self.probs(supernet, sampled))

    def predict(self, genotype) -> float:
        """Latency (ms) of the table's network with ``genotype``'s ops (a genotype of the proxy supernet is
        put into the table's network size)."""
        if getattr(genotype, "space", None) == self.space.genotype_space:
            genotype = self.space.genotype_from_ops(self.space.ops_of(genotype), self.macro)
        return predict_genotype(self.table, genotype, self.num_classes, self.stat, self.image_size, self.macro,
                                space=self.space)

    def predict_indices(self, indices) -> float:
        """Latency of the architecture given by one candidate index per decision (list or (D,) tensor)."""
        return float(self.predict_batch(torch.as_tensor(indices).reshape(1, -1))[0])

    def predict_batch(self, indices: torch.Tensor) -> torch.Tensor:
        """(M,) float64 latencies (ms, CPU) of M architectures given as (M, D) candidate indices."""
        return self.costs.predict(indices)

    def most_probable_within(self, supernet, target_ms: float) -> list[int]:
        """The architecture with the largest probability under alpha (sum of log-softmax over decisions)
        whose predicted latency is within ``target_ms``; the fastest one when none is (the closest)."""
        log_p = torch.log_softmax(supernet.masked_alpha().detach().double().cpu(), dim=1)
        n, out = self.costs.n, [0] * self.costs.num_decisions
        items_p, items_c, items_d = [], [], []  # one knapsack item per group: its N**k assignments
        for k, costs in self.costs.costs.items():
            for row, dec in zip(costs, self.costs.decisions[k].tolist()):
                lp = torch.zeros(1, dtype=torch.float64)
                for d in dec:
                    lp = (lp[:, None] + log_p[d][None, :]).reshape(-1)
                items_p.append(lp)
                items_c.append(row)
                items_d.append(dec)
        found = most_probable_within(items_p, items_c, target_ms - self.fixed)
        if found is None:
            return self.costs.cheapest()
        for dec, flat in zip(items_d, found):
            for j, d in enumerate(dec):
                out[d] = flat // n ** (len(dec) - 1 - j) % n
        return out

    def predict_active(self, supernet) -> float:
        """Latency of the architecture that the supernet's last forward ran (REINFORCE's sample)."""
        if supernet.active is None:
            raise LatencyError("the supernet has not run a stochastic forward yet: no active paths")
        return self.predict_indices(supernet.active)


def most_probable_within(log_p, costs, budget: float, bins: int = 4096) -> list[int] | None:
    """argmax_x sum_d log_p[d][x_d] subject to sum_d costs[d][x_d] <= budget: a multiple-choice knapsack,
    solved exactly by dynamic programming over the budget cut into ``bins`` steps.  ``log_p``, ``costs``: a
    (D, N) tensor each, or D 1-D tensors of each item's options (items may have different numbers).  Costs are
    rounded *up* to whole steps, so the answer is always within the budget (it may miss a cell closer to the
    budget than D steps: D/bins of it).  Why: the argmax of each decision separately ignores the budget, and near the end
    of a search whose distribution is still broad, E[LAT] within the target says little about the argmax
    cell's latency; this picks the cell the search ranks highest among those the device can afford."""
    log_p = [torch.as_tensor(v).double().cpu() for v in log_p]
    costs = [torch.as_tensor(v).double().cpu() for v in costs]
    if len(log_p) != len(costs) or any(p.dim() != 1 or p.shape != c.shape for p, c in zip(log_p, costs)):
        raise LatencyError(f"log_p and costs must have the same items and options, got "
                           f"{[tuple(p.shape) for p in log_p]} and {[tuple(c.shape) for c in costs]}")
    # an option of infinite cost (a candidate the space does not allow there) is never chosen
    ok = [torch.isfinite(c) for c in costs]
    if not all(bool(o.any()) for o in ok):
        return None
    log_p = [torch.where(o, p, float("-inf")) for p, o in zip(log_p, ok)]
    costs = [torch.where(o, c, c[o].max()) for c, o in zip(costs, ok)]
    floor = [float(c.min()) for c in costs]  # every item pays at least its cheapest option
    spare = float(budget - sum(floor))
    if spare < 0:
        return None
    step = max(spare, 1e-12) / bins
    weight = [torch.ceil((c - f) / step - 1e-9).clamp(min=0).long() for c, f in zip(costs, floor)]  # whole steps
    neg = float("-inf")
    value = torch.zeros(bins + 1, dtype=torch.float64)  # best log-probability using at most b steps
    choice = torch.zeros(len(costs), bins + 1, dtype=torch.long)
    for d, (lp, wd) in enumerate(zip(log_p, weight)):
        best = torch.full((bins + 1,), neg, dtype=torch.float64)
        for i in range(len(lp)):
            w = int(wd[i])
            if w > bins:
                continue
            cand = torch.full((bins + 1,), neg, dtype=torch.float64)
            cand[w:] = value[:bins + 1 - w] + lp[i]
            better = cand > best
            best = torch.where(better, cand, best)
            choice[d, better] = i
        value = best
    out, b = [], bins
    for d in range(len(costs) - 1, -1, -1):
        i = int(choice[d, b])
        out.append(i)
        b -= int(weight[d][i])
    return out[::-1]


# ------------------------------------------------------------------ losses and rewards
def latency_loss(ce: torch.Tensor, expected_ms: torch.Tensor, target_ms: float, kind: str = "add",
                 lam: float = 0.1, beta: float = 0.6) -> torch.Tensor:
    """add: CE + lam * (E[LAT] - T) / T;  mul: CE * (E[LAT] / T) ** beta;  hinge: CE + lam * max(0, E[LAT] / T - 1).
    (The official code's mul variant is CE * (log E[LAT] / log T) ** beta; we use the ratio of latencies,
    which does not depend on the unit of time.)  add and mul reward every saved millisecond, also below the
    target; hinge treats T as a budget: no pull at all once the expected latency is within it."""
    if not target_ms > 0:
        raise LatencyError(f"the target latency must be > 0 ms, got {target_ms}")
    if kind == "add":
        return ce + lam * (expected_ms - target_ms) / target_ms
    if kind == "mul":
        return ce * (expected_ms / target_ms) ** beta
    if kind == "hinge":
        return ce + lam * torch.clamp(expected_ms / target_ms - 1.0, min=0.0)
    raise LatencyError(f"unknown latency loss {kind!r}; choose add, mul or hinge")


def reinforce_reward(acc: float, latency_ms: float, target_ms: float, w: float) -> float:
    """Proxyless-R / MnasNet reward: acc * (LAT / T) ** w, w <= 0 (slower than T costs reward)."""
    if w > 0:
        raise LatencyError(f"the latency exponent w must be <= 0, got {w}")
    if not target_ms > 0 or not latency_ms > 0:
        raise LatencyError(f"latency and target must be > 0 ms, got {latency_ms} and {target_ms}")
    return float(acc) * (float(latency_ms) / float(target_ms)) ** w

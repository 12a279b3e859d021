"""bench/specialization.py: a time per network and backend, the fastest is the least time, ratios to the
fastest >= 1, the claim's verdict follows the ranking, and the figure lines are what main returns."""
import pytest

from bench import specialization as spec
from models.common import SpaceError
from utils.errors import UserError


def run(capsys, *argv):
    figures = spec.main(spec.get_args_parser().parse_args(["--no-progress", *argv]))
    return figures, capsys.readouterr().out


def test_tiny_run_reports_each_network_on_each_backend(capsys):
    figures, out = run(capsys, "--image-size", "64", "--repeats", "2", "--warmup", "1", "--backends", "torch", "ort")
    for b in ("torch", "ort"):
        cpu = {n: figures[f"{b}_cpu_ms_{n}"] for n in spec.NETS}
        wall = {n: figures[f"{b}_wall_ms_{n}"] for n in spec.NETS}
        assert all(t > 0 for t in [*cpu.values(), *wall.values()])
        # the headline clock is process CPU time (the default); the other clock's ranking is reported too
        fastest = figures[f"{b}_fastest"]
        assert fastest == min(cpu, key=cpu.get) and figures[f"{b}_fastest_wall"] == min(wall, key=wall.get)
        for n in spec.NETS:
            ratio = figures[f"{b}_{spec.SHORT[n]}_over_fastest"]
            assert ratio >= 1.0 and ratio == pytest.approx(cpu[n] / cpu[fastest])
        assert figures[f"{b}_{spec.SHORT[fastest]}_over_fastest"] == 1.0
        assert figures[f"{b}_gpu_over_cpu"] == pytest.approx(cpu["proxyless_gpu"] / cpu["proxyless_cpu"])
        assert figures[f"{b}_mobile_over_cpu"] == pytest.approx(cpu["proxyless_mobile"] / cpu["proxyless_cpu"])
        assert figures[f"{b}_claim_holds"] == ("yes" if fastest == "proxyless_cpu" else "no")
    verdicts = {figures["torch_claim_holds"], figures["ort_claim_holds"]}
    assert figures["claim_holds"] == (verdicts.pop() if len(verdicts) == 1 else "mixed")
    # every figure is printed as one name=value line, with the value main returned
    lines = dict(line.split("=", 1) for line in out.splitlines() if "=" in line and " " not in line)
    assert set(lines) == set(figures)
    for name, value in figures.items():
        assert lines[name] == (f"{value:.4f}" if isinstance(value, float) else value)
    assert "paper's claim" in out


def test_rank_names_the_least_time_whichever_network_it_is():
    timed = {"proxyless_gpu": {"cpu_median_ms": 3.0, "median_ms": 1.0},
             "proxyless_cpu": {"cpu_median_ms": 2.0, "median_ms": 5.0},
             "proxyless_mobile": {"cpu_median_ms": 4.0, "median_ms": 2.0}}
    assert spec.rank(timed, "cpu_median_ms") == ("proxyless_cpu", {"proxyless_gpu": 1.5, "proxyless_cpu": 1.0,
                                                                    "proxyless_mobile": 2.0})
    assert spec.rank(timed, "median_ms")[0] == "proxyless_gpu"


@pytest.mark.parametrize("argv, error", [
    (["--threads", "2"], UserError),  # process CPU time sums over threads: --clock cpu needs one
    (["--repeats", "0"], UserError),
    (["--warmup", "-1"], UserError),
    (["--batch", "0"], UserError),
    (["--image-size", "100"], SpaceError),  # not a multiple of 32
])
def test_bad_flags_are_refused_before_any_timing(capsys, argv, error):
    with pytest.raises(error):
        run(capsys, *argv)

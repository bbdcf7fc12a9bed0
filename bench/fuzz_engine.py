"""The engine fuzzer's long run (issue 18): N mutated datagrams into engines holding established
IKE SAs, past the ICV check (tests/fuzz/engine_fuzz.py explains the targets).

Prints the findings (there should be none), the inputs per target, the rate, Python memory
(tracemalloc) at the start and every tenth of the run (flat means no growth per input), and
whether the surviving IKE SA still rekeys. The last line is one JSON object. Findings are
written as hex to .results/fuzz-findings/ (git-ignored) to be kept as regression data.

    .venv/bin/python bench/fuzz_engine.py [--count 1000000] [--seed 1]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
import tracemalloc
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz.engine_fuzz import Fuzzer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    fuzzer = Fuzzer(seed=args.seed)
    gc.collect()
    tracemalloc.start()
    memory = [tracemalloc.get_traced_memory()[0]]
    start = time.process_time()
    step = max(1, args.count // 10)
    done = 0
    while done < args.count:
        batch = min(step, args.count - done)
        fuzzer.run(batch)
        done += batch
        gc.collect()
        memory.append(tracemalloc.get_traced_memory()[0])
        print(f"{done} inputs, {len(fuzzer.findings)} findings, {memory[-1] / 2**20:.2f} MiB")
    cpu = time.process_time() - start
    tracemalloc.stop()
    usable = fuzzer.usable()
    out = ROOT / ".results" / "fuzz-findings"
    for n, finding in enumerate(fuzzer.findings):
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{args.seed}-{n}-{finding.target}.hex").write_text(finding.data.hex() + "\n")
        print(f"[{finding.target}] {finding.error.splitlines()[-1]}")
    print(
        json.dumps(
            {
                "inputs": done,
                "seed": args.seed,
                "findings": len(fuzzer.findings),
                "per_target": fuzzer.executed,
                "inputs_per_cpu_second": round(done / cpu),
                "traced_mib": [round(m / 2**20, 2) for m in memory],
                "sa_still_rekeys": usable,
            }
        )
    )


if __name__ == "__main__":
    main()

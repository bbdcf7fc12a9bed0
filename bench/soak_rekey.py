"""Rekey soak: many seeded runs of two engines over a lossy link with fast lifetimes, counting
runs that end with an inconsistent SA set (duplicate, missing or one-sided SA) or a gap.

Each run: 30 % loss, child rekey every ~120 s, IKE rekey every ~350 s, 1200 s of simulated time,
then the link heals and the run waits for quiet; tests/engine/test_rekey.py's checks decide.

    .venv/bin/python bench/soak_rekey.py [--seeds 120] [--loss 0.3] [--duplicate 0] [--reorder 0]
        [--retransmit-limit 20] [--reauth-time 0]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from dataclasses import replace
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ikev2.engine.config import Timers
from ikev2.engine.events import ChildSaEstablished, IkeSaEstablished
from tests.engine.pairing import lifetime_pair, settle
from tests.engine.test_rekey import assert_consistent, no_gap

NEVER_ESTABLISHED = "never established"


def one_run(
    seed: int, loss: float, duplicate: float, reorder: float, limit: float, reauth: float = 0.0
) -> str | None:
    """None when the run ends consistent; NEVER_ESTABLISHED when the first IKE SA failed (the
    half-open timeout beat the IKE_AUTH retransmits: no keyingtries retry here, as swanctl's
    default keyingtries = 1); otherwise what is wrong."""
    timers = Timers(
        retransmit_tries=12,
        retransmit_limit=limit,
        ike_rekey_time=350,
        ike_life_time=3000,
        dpd_delay=0,
    )
    # reauthentication on the initiator only: both sides reauthenticating at once make two
    # IKE SAs (as with strongSwan; its docs say to set reauth_time on one side)
    pair = lifetime_pair(
        timers,
        child_rekey=120,
        child_life=1000,
        timers_i=replace(timers, reauth_time=reauth),
        seed=seed,
        loss=loss,
        duplicate=duplicate,
        reorder=reorder,
    )
    try:
        pair.initiate()
        pair.run(until=1200)
        if not pair.i.of(IkeSaEstablished):
            return NEVER_ESTABLISHED
        settle(pair)
        for side in (pair.i, pair.r):
            assert len(side.of(ChildSaEstablished)) >= 5, "too few rekeys"
            assert no_gap(side.events), "a moment without a child (make-before-break broken)"
        assert_consistent(pair)
    except AssertionError:
        return traceback.format_exc().strip().splitlines()[-1][:160]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=120)
    parser.add_argument("--loss", type=float, default=0.3)
    parser.add_argument("--duplicate", type=float, default=0.0)
    parser.add_argument("--reorder", type=float, default=0.0)
    parser.add_argument(
        "--retransmit-limit", type=float, default=20.0, help="longest wait between retransmits"
    )
    parser.add_argument(
        "--reauth-time", type=float, default=0.0, help="reauthenticate the IKE SA this often"
    )
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    failed, unborn = {}, []
    for seed in range(args.seeds):
        problem = one_run(
            seed, args.loss, args.duplicate, args.reorder, args.retransmit_limit, args.reauth_time
        )
        if problem == NEVER_ESTABLISHED:
            unborn.append(seed)
            print(f"seed {seed}: {problem}")
        elif problem is not None:
            failed[seed] = problem
            print(f"seed {seed}: {problem}")
    print(f"runs: {args.seeds}, inconsistent: {len(failed)}, never established: {len(unborn)}")
    result = {
        "runs": args.seeds,
        "retransmit_limit": args.retransmit_limit,
        "reauth_time": args.reauth_time,
        "inconsistent": len(failed),
        "seeds": sorted(failed),
        "never_established": unborn,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

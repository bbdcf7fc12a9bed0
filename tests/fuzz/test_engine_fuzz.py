"""A bounded run of the engine fuzzer (engine_fuzz.py) in CI: mutated plaintexts inside correctly
protected SK payloads reach IKE_AUTH, CREATE_CHILD_SA and INFORMATIONAL on both roles, and raw
mutations hit the decoder and the gate. The long run is bench/fuzz_engine.py."""

from __future__ import annotations

from .engine_fuzz import Fuzzer, Mutator, collect_seeds, forge


def test_seeds_cover_every_exchange_both_ways() -> None:
    datagrams: list[bytes] = []
    kinds = {(s.exchange, s.response) for s in collect_seeds(datagrams)}
    assert len(kinds) >= 6  # IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL, each way
    assert len(datagrams) >= 10


def test_a_forged_message_is_accepted_as_the_peers(  # the fuzzer really gets past the ICV
) -> None:
    fuzzer = Fuzzer(seed=5)
    i_sa, r_sa = fuzzer._fresh_pair()
    (seed,) = [s for s in fuzzer.requests if s.exchange == 37][:1] or fuzzer.requests[:1]
    expected = r_sa.responses.expected_id
    data = forge(i_sa, seed.exchange, expected, False, seed.first, seed.plain)
    fuzzer.pair.r.engine.receive_datagram(data, i_sa.local, i_sa.remote, fuzzer.pair.now)
    assert r_sa.responses.expected_id == expected + 1  # answered: decrypted and processed


def test_mutator_is_deterministic_per_seed() -> None:
    import random

    corpus = [bytes(range(40))]
    a = Mutator(random.Random(3), corpus)
    b = Mutator(random.Random(3), corpus)
    outs = [a.mutate(corpus[0]) for _ in range(50)]
    assert outs == [b.mutate(corpus[0]) for _ in range(50)]
    assert len(set(outs)) > 40


def test_bounded_fuzz_run_finds_nothing_and_the_sa_survives() -> None:
    fuzzer = Fuzzer(seed=2026)
    findings = fuzzer.run(1500)
    report = "\n\n".join(f"[{f.target}] {f.data.hex()}\n{f.error}" for f in findings[:3])
    assert not findings, f"{len(findings)} inputs raised out of the engine:\n{report}"
    assert set(fuzzer.executed) >= {"request", "response", "auth", "wire"}
    assert fuzzer.usable()

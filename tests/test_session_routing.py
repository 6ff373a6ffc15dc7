"""The streaming model's router (`deployments/routing.py`): a session's calls keep one home replica,
and a replica that goes moves only the sessions it was home to."""

from __future__ import annotations

from collections import Counter

from deployments.routing import home_order

REPLICAS = [f"replica-{i}" for i in range(4)]
SESSIONS = [f"sess_{i:04d}" for i in range(2000)]


def test_a_session_keeps_its_home_however_the_replicas_are_listed():
    for session in SESSIONS[:50]:
        assert home_order(session, REPLICAS)[0] == home_order(session, REPLICAS[::-1])[0]
        assert sorted(home_order(session, REPLICAS)) == sorted(REPLICAS)  # every replica, as a fallback


def test_sessions_spread_over_the_replicas():
    homes = Counter(home_order(session, REPLICAS)[0] for session in SESSIONS)
    assert set(homes) == set(REPLICAS)
    assert min(homes.values()) > len(SESSIONS) / len(REPLICAS) * 0.8, homes


def test_losing_a_replica_moves_only_the_sessions_it_was_home_to():
    before = {session: home_order(session, REPLICAS)[0] for session in SESSIONS}
    survivors = [r for r in REPLICAS if r != "replica-2"]
    after = {session: home_order(session, survivors)[0] for session in SESSIONS}
    moved = {session for session in SESSIONS if before[session] != after[session]}
    assert moved == {session for session in SESSIONS if before[session] == "replica-2"}
    # ... each to the replica it listed second: the home it falls back to while its own is full
    assert all(after[s] == home_order(s, REPLICAS)[1] for s in moved)

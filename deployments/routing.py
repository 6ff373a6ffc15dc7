"""Where a streaming model's calls go: a live turn's chunks to the replica that holds its stream.

A streaming recognizer keeps each turn's state in the replica that took its first chunk
(`mmserve/runners/paraformer_streaming.py`). Serve's own routing would scatter a session's calls over
the replicas, and its multiplexed-model routing learns where a session lives only after the
controller has passed it on (a new session's second call can wait out its 1-2 s matching timeout).
This router needs no such news: the session (the call's multiplexed model id) picks its replica by
rendezvous hashing over the running replicas, so every gateway replica sends it to the same one at
once, and when a replica goes or comes only the sessions it owned move (their next call is answered
StreamLost, and the turn is replayed on the new home).
"""

from __future__ import annotations

import hashlib
import random

from ray.serve.request_router import FIFOMixin, PendingRequest, RequestRouter, RunningReplica


def home_order(session: str, replica_ids: list[str]) -> list[str]:
    """The replicas in the order `session` tries them (rendezvous hashing): the first is its home;
    removing a replica leaves every other session's order unchanged."""
    def weight(replica_id: str) -> int:
        return int.from_bytes(hashlib.blake2b(f"{session}/{replica_id}".encode(), digest_size=8).digest(), "big")

    return sorted(replica_ids, key=weight, reverse=True)


class SessionAffinityRouter(FIFOMixin, RequestRouter):
    """A call that names a session goes to the session's home replica first, then (if that one is
    full) to the next by the same hashing; a call that names none, to the less busy of two random
    replicas (Serve's default procedure)."""

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        if pending_request is not None:
            pending_request.routing_context.should_backoff = True  # all full: wait a little before the next try
        session = pending_request.metadata.multiplexed_model_id if pending_request is not None else ""
        if not session:
            return [random.sample(candidate_replicas, min(2, len(candidate_replicas)))]
        by_id = {replica.replica_id.unique_id: replica for replica in candidate_replicas}
        return [[by_id[replica_id]] for replica_id in home_order(session, list(by_id))]

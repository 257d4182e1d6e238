-- Leases of the background workers (docs/scaling.md, "Leases"): several custody instances on one
-- database, each worker running in exactly one of them at a time. A lease is taken only once it
-- has expired (database time, so the instances' clocks do not matter), and every take raises its
-- `token`, which is never reset: a worker's own write transactions check that the lease row still
-- carries the token it took (and lock the row while they do), so a holder that was paused past
-- its expiry cannot write once another instance has taken over.
-- Rows named `instance:<id>` are the instances' heartbeats (the live count divides the global
-- admission rate).
CREATE TABLE worker_leases
(
    name       text PRIMARY KEY,
    holder     text   NOT NULL,
    token      bigint NOT NULL,
    since_ms   bigint NOT NULL,
    expires_ms bigint NOT NULL
);

//! End-to-end tests of Amtsbuch (in tests/): the `amtsbuch` binary started as a child
//! process against real PostgreSQL and NATS, exercised through flags, HTTP and NATS as an
//! operator and a Fachverfahren would. Their harness — fresh databases, the binary on a
//! free port, a client for it, private `nats-server` and PostgreSQL servers — is the test
//! kit, `amtsbuch-testkit`.

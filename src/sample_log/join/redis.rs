//! The Redis join store (filled in by the Redis join-store work).

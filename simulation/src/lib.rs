//! Deterministic fault simulations of whole clusters (turmoil), with a history recorder and a
//! linearizability checker.
//!
//! This crate is the home of the fault-simulation work (its own issue): it will drive the real
//! node code in-process over turmoil's network. The transport seam it needs already exists:
//! node-to-node RPC goes through `raft::network::Transport`, and the node's entry point is
//! `node::run`. Until then the crate holds no code, so that no test here can pass vacuously.

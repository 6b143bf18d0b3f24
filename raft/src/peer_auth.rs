//! Signed node-to-node requests: the cluster secret never travels on the wire.
//!
//! Every `/raft/{rpc}` request carries one header, [`SIGNATURE_HEADER`]:
//!
//! ```text
//! v1 t=<ms since the epoch> n=<128-bit nonce, hex> to=<target node id> len=<body bytes> sha256=<body digest, hex> sig=<hex>
//! ```
//!
//! where `sig` is HMAC-SHA256, keyed by the cluster secret, of those fields with the RPC's name.
//! A receiver checks it from the headers alone, before it reads a byte of the body: the time
//! within [`PEER_CLOCK_SKEW_MAX_MS`] of its own clock, the target its own id (or 0, "whoever
//! answers", for `join` and `status` only, which are sent to an address before its owner's id is
//! known), the nonce not seen before within the window, and the signature. Only then does it read
//! the body, at most `len` bytes, and check its digest.
//!
//! So a peer without the secret cannot make a node read its body; a captured request cannot be
//! replayed (its nonce is remembered for as long as its time is accepted); and a request signed
//! for one node is refused by the others, so an address an application admin adds as a learner
//! collects nothing it can use against the rest of the cluster (docs/SECURITY.md).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::network::Rpc;
use crate::types::NodeId;

/// The header that carries the signature on every `/raft/` request.
pub const SIGNATURE_HEADER: &str = "x-raft-signature";
/// How far a request's time may be from the receiver's clock, either way. Past this a captured
/// request is refused whatever its nonce, so nonces need only be remembered this long (twice,
/// for both directions).
pub const PEER_CLOCK_SKEW_MAX_MS: i64 = 5_000;
/// Most nonces a node remembers. At this many requests within the window it refuses further
/// ones (they are retried) rather than forget a nonce that could then be replayed.
pub const PEER_NONCES_MAX: usize = 1_000_000;

const VERSION: &str = "v1";

type HmacSha256 = Hmac<Sha256>;

/// Why a signed request was refused. The message is for the log; the sender only learns 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No header, or one that does not parse.
    #[error("missing or malformed {SIGNATURE_HEADER} header: {0}")]
    Malformed(String),
    /// The signature does not match: the sender does not hold the cluster secret.
    #[error("bad signature")]
    BadSignature,
    /// The request's time is outside the window.
    #[error("request time {at_ms} is {skew_ms} ms from this node's clock (at most {PEER_CLOCK_SKEW_MAX_MS})")]
    Stale {
        /// The request's time.
        at_ms: i64,
        /// Its distance from the receiver's clock.
        skew_ms: i64,
    },
    /// The request was signed for another node.
    #[error("signed for node {to}, this is node {me}")]
    WrongTarget {
        /// The node it was signed for.
        to: NodeId,
        /// This node.
        me: NodeId,
    },
    /// The nonce was seen before: a replay.
    #[error("nonce seen before: a replayed request")]
    Replayed,
    /// Too many requests within the window to remember their nonces.
    #[error("too many peer requests within {PEER_CLOCK_SKEW_MAX_MS} ms")]
    Busy,
    /// The body is not the one signed.
    #[error("the body does not match the signed digest")]
    BodyMismatch,
}

/// What a verified header promises about the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBody {
    /// The body's length in bytes.
    pub len: usize,
    digest: [u8; 32],
}

impl SignedBody {
    /// Checks that `body` is the one signed.
    pub fn check(&self, body: &[u8]) -> Result<(), AuthError> {
        if body.len() == self.len && Sha256::digest(body)[..] == self.digest {
            Ok(())
        } else {
            Err(AuthError::BodyMismatch)
        }
    }
}

/// Signs and verifies requests with the cluster secret.
pub struct PeerAuth {
    key: Vec<u8>,
    /// This node's id (0 for a sender that only signs).
    me: NodeId,
    nonces: Mutex<Nonces>,
}

#[derive(Default)]
struct Nonces {
    seen: HashMap<u128, i64>,
    /// (expiry, nonce) in arrival order, which is expiry order: times are bounded by the window.
    order: VecDeque<(i64, u128)>,
}

impl PeerAuth {
    /// A signer and verifier for node `me` with the cluster secret `secret`.
    pub fn new(secret: &[u8], me: NodeId) -> Self {
        PeerAuth { key: secret.to_vec(), me, nonces: Mutex::default() }
    }

    fn mac(&self, rpc: &str, to: NodeId, at_ms: i64, nonce: u128, len: usize, digest: &[u8]) -> HmacSha256 {
        // HMAC takes a key of any length.
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("hmac key of any size"));
        mac.update(
            format!("raftgraph-peer-{VERSION}\nPOST\n/raft/{rpc}\n{to}\n{at_ms}\n{nonce:032x}\n{len}\n").as_bytes(),
        );
        mac.update(digest);
        mac
    }

    /// The header value for a request of `rpc` to node `to` (0 when not known yet) with `body`,
    /// at `at_ms`.
    pub fn sign(&self, rpc: &str, to: NodeId, body: &[u8], at_ms: i64) -> String {
        let nonce: u128 = rand::random();
        let digest = Sha256::digest(body);
        let sig = self.mac(rpc, to, at_ms, nonce, body.len(), &digest).finalize().into_bytes();
        format!(
            "{VERSION} t={at_ms} n={nonce:032x} to={to} len={} sha256={} sig={}",
            body.len(),
            hex(&digest),
            hex(&sig)
        )
    }

    /// Checks a request's header for `rpc` at `now_ms`, before its body is read; on success
    /// the nonce is remembered and the answer says what the body must be.
    pub fn verify(&self, rpc: &str, header: Option<&str>, now_ms: i64) -> Result<SignedBody, AuthError> {
        let header = header.ok_or_else(|| AuthError::Malformed("absent".into()))?;
        let mut fields = header.split(' ');
        if fields.next() != Some(VERSION) {
            return Err(AuthError::Malformed(format!("expected version {VERSION}")));
        }
        let mut get = |name: &str| -> Result<&str, AuthError> {
            fields
                .next()
                .and_then(|f| f.strip_prefix(name))
                .and_then(|f| f.strip_prefix('='))
                .ok_or_else(|| AuthError::Malformed(format!("expected {name}=")))
        };
        let number = |v: &str, name: &str| AuthError::Malformed(format!("{name}={v:?} is not a number"));
        let at_ms: i64 = get("t").and_then(|v| v.parse().map_err(|_| number(v, "t")))?;
        let nonce_hex = get("n")?;
        let nonce = u128::from_str_radix(nonce_hex, 16).map_err(|_| number(nonce_hex, "n"))?;
        let to: NodeId = get("to").and_then(|v| v.parse().map_err(|_| number(v, "to")))?;
        let len: usize = get("len").and_then(|v| v.parse().map_err(|_| number(v, "len")))?;
        let digest = get("sha256").and_then(|v| unhex::<32>(v).ok_or_else(|| number(v, "sha256")))?;
        let sig = get("sig").and_then(|v| unhex::<32>(v).ok_or_else(|| number(v, "sig")))?;
        // The signature first: nothing about an unsigned request is worth a log line or a nonce.
        self.mac(rpc, to, at_ms, nonce, len, &digest).verify_slice(&sig).map_err(|_| AuthError::BadSignature)?;
        let skew_ms = at_ms.saturating_sub(now_ms).saturating_abs();
        if skew_ms > PEER_CLOCK_SKEW_MAX_MS {
            return Err(AuthError::Stale { at_ms, skew_ms });
        }
        let anyone = to == 0 && Rpc::from_name(rpc).is_some_and(Rpc::to_any_node);
        if to != self.me && !anyone {
            return Err(AuthError::WrongTarget { to, me: self.me });
        }
        self.remember(nonce, now_ms)?;
        Ok(SignedBody { len, digest })
    }

    fn remember(&self, nonce: u128, now_ms: i64) -> Result<(), AuthError> {
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        while nonces.order.front().is_some_and(|(expiry, _)| *expiry < now_ms) {
            if let Some((_, old)) = nonces.order.pop_front() {
                nonces.seen.remove(&old);
            }
        }
        if nonces.seen.contains_key(&nonce) {
            return Err(AuthError::Replayed);
        }
        if nonces.seen.len() >= PEER_NONCES_MAX {
            return Err(AuthError::Busy);
        }
        // A request is accepted until its time is a window past; remembering it for two windows
        // from arrival covers any time it may carry.
        let expiry = now_ms + 2 * PEER_CLOCK_SKEW_MAX_MS;
        nonces.seen.insert(nonce, expiry);
        nonces.order.push_back((expiry, nonce));
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    // A signed request verifies once, for its target, with its body; every change to what was
    // signed, or a replay, or a sender without the secret, is refused before the body is read.
    #[test]
    fn only_the_signed_request_for_this_node_passes_once() {
        let sender = PeerAuth::new(b"0123456789abcdef", 1);
        let receiver = PeerAuth::new(b"0123456789abcdef", 2);
        let header = sender.sign("append", 2, b"{\"entries\":[]}", NOW);
        // Phase 1: it passes, and the body is checked against the digest.
        let signed = receiver.verify("append", Some(&header), NOW + 10).expect("valid");
        signed.check(b"{\"entries\":[]}").expect("same body");
        assert_eq!(signed.check(b"{\"entries\":[1]}"), Err(AuthError::BodyMismatch));
        // Phase 2: the same header again is a replay.
        assert_eq!(receiver.verify("append", Some(&header), NOW + 20), Err(AuthError::Replayed));
        // Phase 3: another RPC name, another node, a stale time, a wrong secret.
        let header = sender.sign("append", 2, b"x", NOW);
        assert_eq!(receiver.verify("forward", Some(&header), NOW), Err(AuthError::BadSignature));
        let other = PeerAuth::new(b"0123456789abcdef", 3);
        assert_eq!(other.verify("append", Some(&header), NOW), Err(AuthError::WrongTarget { to: 2, me: 3 }));
        let late = sender.sign("append", 2, b"x", NOW - PEER_CLOCK_SKEW_MAX_MS - 1);
        assert!(matches!(receiver.verify("append", Some(&late), NOW), Err(AuthError::Stale { .. })));
        let forger = PeerAuth::new(b"not the cluster secret", 1);
        let forged = forger.sign("append", 2, b"x", NOW);
        assert_eq!(receiver.verify("append", Some(&forged), NOW), Err(AuthError::BadSignature));
        // Phase 4: a tampered field breaks the signature.
        let tampered = header.replace("len=1", "len=2");
        assert_eq!(receiver.verify("append", Some(&tampered), NOW), Err(AuthError::BadSignature));
        assert!(matches!(receiver.verify("append", None, NOW), Err(AuthError::Malformed(_))));
        assert!(matches!(receiver.verify("append", Some("v1 t=x"), NOW), Err(AuthError::Malformed(_))));
        // Phase 5: "whoever answers" (0) is only for join and status.
        let join = sender.sign("join", 0, b"{}", NOW);
        receiver.verify("join", Some(&join), NOW).expect("join to whoever answers");
        let append = sender.sign("append", 0, b"{}", NOW);
        assert!(matches!(receiver.verify("append", Some(&append), NOW), Err(AuthError::WrongTarget { .. })));
    }

    // Nonces are forgotten once their requests could no longer be accepted anyway.
    #[test]
    fn nonces_are_forgotten_after_the_window() {
        let auth = PeerAuth::new(b"0123456789abcdef", 2);
        auth.remember(7, NOW).expect("first");
        assert_eq!(auth.remember(7, NOW + 1), Err(AuthError::Replayed));
        auth.remember(8, NOW + 2 * PEER_CLOCK_SKEW_MAX_MS + 1).expect("another");
        auth.remember(7, NOW + 2 * PEER_CLOCK_SKEW_MAX_MS + 1).expect("forgotten");
        assert_eq!(auth.nonces.lock().expect("lock").seen.len(), 2);
    }
}

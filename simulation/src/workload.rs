//! A workload client (host `c{n}`): a random mix of username claims and checks, purchases and
//! sale reads, each recorded in the history, each client one session. Every random choice comes
//! from the client's own stream, drawn in a fixed order, so a seed always makes the same choices.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{SimConfig, ATTEMPTS_MAX, NAMES, REQUEST_TIMEOUT};
use crate::gql::{lit, node_addr, request_at, sleep_ms, Answer, Indexes};
use crate::history::{sim_ms, Input, Key, Output};
use crate::invariants::sessions::{self, Session};
use crate::queries::{held_or_free, purchase_output, purchase_query, sale_query, status_of, stock_of};
use crate::shared::{EvidenceRef, PendingPurchase, Phase, StageRef};

/// Mixed into the seed with the client's number: a prime, so client streams do not overlap.
const CLIENT_SEED_MULTIPLIER: u64 = 1_000_003;
/// How often a client looks whether setup is done.
const SETUP_POLL_MS: u64 = 50;
/// The mix, as cumulative thresholds on one uniform draw in [0, 1): claims below this...
const CLAIM_BELOW: f64 = 0.35;
/// ...LINEARIZABLE name checks below this...
const CHECK_LINEARIZABLE_BELOW: f64 = 0.55;
/// ...LOCAL name checks below this...
const CHECK_BELOW: f64 = 0.65;
/// ...purchases below this, and LINEARIZABLE sale reads above.
const PURCHASE_BELOW: f64 = 0.9;
/// A client's pause between operations is drawn from 0 up to (not including) this.
const PAUSE_BETWEEN_OPS_MAX_MS: u64 = 40;
/// The pause before another attempt on another node is drawn from this...
const RETRY_BACKOFF_MIN_MS: u64 = 50;
/// ...up to (not including) this.
const RETRY_BACKOFF_MAX_MS: u64 = 250;
/// Units a purchase asks for are drawn from 1 to this: small, so sales sell out mid-run.
const PURCHASE_QUANTITY_MAX: u64 = 2;
/// A claim's reservation outlives the run, so names are never released within one (which the
/// session checks rely on).
const CLAIM_TTL_S: u64 = 3600;

/// Whether a request carries the session's index as `atLeastIndex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Floor {
    /// It does, as the typed client sends it: LOCAL reads and writes.
    Session,
    /// It does not: LINEARIZABLE reads need no floor, and one would hide a stale linearizable
    /// read (`--inject stale-read`) behind the session's own history, where the history checker
    /// must see it.
    None,
}

/// How a client operation's last attempt went, with the session's view of it.
pub(crate) struct Attempted {
    pub(crate) answer: Answer,
    /// Whether any attempt may have taken effect.
    pub(crate) uncertain: bool,
    /// The nodes tried, for reports.
    pub(crate) tried: String,
    /// The `atLeastIndex` the last attempt sent.
    pub(crate) floor: u64,
    /// The indexes the last answer carried.
    pub(crate) indexes: Indexes,
}

/// Sends `query` to up to `ATTEMPTS_MAX` random nodes until one answers in a way worth keeping,
/// in the client's `session`: each answer raises the session's index, and each attempt carries
/// it as `atLeastIndex` unless `Floor::None`. `retry_uncertain`: also retry when an attempt may
/// have taken effect (safe for idempotent operations only).
async fn attempt(
    rng: &mut StdRng,
    nodes: u64,
    session: &mut Session,
    query: &str,
    token: Option<&str>,
    retry_uncertain: bool,
    floor_of: Floor,
) -> Attempted {
    let mut tried = Vec::new();
    let mut uncertain = false;
    let mut last = (Answer::Net(crate::net::NetError::Unreachable("not tried".into())), Indexes::default());
    let mut floor = 0;
    for i in 0..ATTEMPTS_MAX {
        let node = rng.random_range(1..=nodes);
        tried.push(format!("n{node}"));
        floor = match floor_of {
            Floor::Session => session.mark,
            Floor::None => 0,
        };
        last = request_at(&node_addr(node), query, token, floor, REQUEST_TIMEOUT).await;
        if let Some(high) = last.1.high() {
            session.mark = session.mark.max(high);
        }
        let answer = &last.0;
        let definite = answer.certainly_not_applied();
        uncertain |= !definite && !matches!(answer, Answer::Data(_));
        let again = answer.worth_retrying() && (definite || retry_uncertain);
        if !again || i + 1 == ATTEMPTS_MAX {
            break;
        }
        sleep_ms(rng.random_range(RETRY_BACKOFF_MIN_MS..RETRY_BACKOFF_MAX_MS)).await;
    }
    let (answer, indexes) = last;
    Attempted { answer, uncertain, tried: tried.join(","), floor, indexes }
}

/// One client's part of a run, from setup's end until its operations are spent or the fault
/// phase ends.
pub(crate) async fn workload(c: usize, cfg: SimConfig, stage: StageRef, evidence: EvidenceRef) {
    let (seed, ops_max, nodes) = (cfg.seed, cfg.ops_per_client, cfg.nodes);
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(CLIENT_SEED_MULTIPLIER).wrapping_add(c as u64));
    let mut session = Session::default();
    while stage.borrow().phase == Phase::Setup {
        sleep_ms(SETUP_POLL_MS).await;
    }
    let Some(setup) = stage.borrow().setup.clone() else { return };
    let token = setup.buyers[c].clone();
    let client = Client { c, nodes, evidence: &evidence };
    for n in 0..ops_max {
        if stage.borrow().phase != Phase::Faults {
            break;
        }
        let roll: f64 = rng.random();
        if roll < CLAIM_BELOW {
            client.claim(&mut rng, &mut session).await;
        } else if roll < CHECK_BELOW {
            client.check_name(&mut rng, &mut session, roll < CHECK_LINEARIZABLE_BELOW).await;
        } else if roll < PURCHASE_BELOW {
            let (sale, _) = setup.sales[rng.random_range(0..setup.sales.len())];
            client.purchase(&mut rng, &mut session, &token, sale, format!("c{c}-{n}")).await;
        } else {
            let (sale, _) = setup.sales[rng.random_range(0..setup.sales.len())];
            client.read_sale(&mut rng, &mut session, sale).await;
        }
        sleep_ms(rng.random_range(0..PAUSE_BETWEEN_OPS_MAX_MS)).await;
    }
    stage.borrow_mut().clients_done += 1;
}

/// A name in one of its spellings: as is, upper case, capitalised, or (`lookalike`) with
/// Cyrillic letters for their Latin twins. The draw's range is the number of spellings.
fn variant(rng: &mut StdRng, base: &str, lookalike: bool) -> String {
    match rng.random_range(0..if lookalike { 4 } else { 3 }) {
        0 => base.to_string(),
        1 => base.to_uppercase(),
        2 => {
            let mut cs = base.chars();
            cs.next().map(|f| f.to_uppercase().chain(cs).collect()).unwrap_or_default()
        }
        // Cyrillic а/е/о for their Latin twins: a different string with the same canonical form.
        _ => base.replace('a', "\u{430}").replace('e', "\u{435}").replace('o', "\u{43e}"),
    }
}

/// What every operation of one client needs besides its random stream and session.
struct Client<'a> {
    /// The client's number: its host is `c{c}`, its ops are recorded under it.
    c: usize,
    /// Cluster size, to pick a node per attempt.
    nodes: u64,
    evidence: &'a EvidenceRef,
}

impl Client<'_> {
    async fn claim(&self, rng: &mut StdRng, session: &mut Session) {
        let c = self.c;
        let base = NAMES[rng.random_range(0..NAMES.len())];
        let name = variant(rng, base, false);
        let key = Key::Name(raft::model::names::canonical(&name));
        let q = format!("mutation {{ reserveUsername(name: {}, ttlSeconds: {CLAIM_TTL_S}) {{ token }} }}", lit(&name));
        let (call, call_ms) = (self.evidence.borrow_mut().history.tick(), sim_ms());
        let at = attempt(rng, self.nodes, session, &q, None, false, Floor::Session).await;
        let (answer, uncertain, tried) = (&at.answer, at.uncertain, &at.tried);
        let output = match answer.code() {
            _ if matches!(answer, Answer::Data(_)) => Output::Claimed,
            Some("USERNAME_TAKEN" | "USERNAME_RESERVED") => Output::Taken,
            _ if answer.certainly_not_applied() && !uncertain => return,
            _ => Output::Unknown,
        };
        if matches!(output, Output::Claimed | Output::Taken) {
            let canonical = raft::model::names::canonical(&name);
            let index = at.indexes.high().unwrap_or(0);
            let seen = format!("claimed it ({output:?}) in the entry at index {index} via {tried}");
            session.saw_held(canonical, seen);
        }
        let note = format!("{name} via {tried}");
        self.evidence.borrow_mut().history.record(c, key, Input::Claim, output, call, call_ms, note);
    }

    async fn check_name(&self, rng: &mut StdRng, session: &mut Session, linearizable: bool) {
        let c = self.c;
        let base = NAMES[rng.random_range(0..NAMES.len())];
        let name = variant(rng, base, true);
        let consistency = if linearizable { "LINEARIZABLE" } else { "LOCAL" };
        let q = format!("{{ usernameAvailability(name: {}, consistency: {consistency}) {{ status }} }}", lit(&name));
        let (call, call_ms) = (self.evidence.borrow_mut().history.tick(), sim_ms());
        let floor = if linearizable { Floor::None } else { Floor::Session };
        let at = attempt(rng, self.nodes, session, &q, None, true, floor).await;
        let Some(output) = status_of(&at.answer, "usernameAvailability").as_deref().and_then(held_or_free) else {
            return;
        };
        let canonical = raft::model::names::canonical(&name);
        let mut ev = self.evidence.borrow_mut();
        let what = format!("a {consistency} check of {name:?}");
        sessions::check_read(session, &mut ev.session_violations, c, &canonical, &output, &at, &what);
        if linearizable {
            let key = Key::Name(canonical);
            ev.history.record(c, key, Input::Check, output, call, call_ms, format!("{name} via {}", at.tried));
        } else {
            // LOCAL reads may lag the leader by design: not checked for linearizability, only
            // against the session above.
            ev.local_reads += 1;
        }
    }

    async fn purchase(&self, rng: &mut StdRng, session: &mut Session, token: &str, sale: u64, key: String) {
        let c = self.c;
        let quantity = rng.random_range(1..=PURCHASE_QUANTITY_MAX);
        let q = purchase_query(sale, quantity, &key);
        let (call, call_ms) = (self.evidence.borrow_mut().history.tick(), sim_ms());
        // The idempotency key makes a retry after an uncertain attempt safe: it returns the first
        // order.
        let Attempted { answer, uncertain, tried, .. } =
            attempt(rng, self.nodes, session, &q, Some(token), true, Floor::Session).await;
        let note = format!("key {key} via {tried}");
        let mut ev = self.evidence.borrow_mut();
        match purchase_output(&answer) {
            Some((output, order)) => {
                let input = Input::Purchase { quantity };
                let id = ev.history.record(c, Key::Sale(sale), input, output, call, call_ms, note);
                if let Some(order) = order {
                    ev.acked_orders.insert((sale, order), id);
                }
            }
            None if answer.certainly_not_applied() && !uncertain => {}
            None => {
                let input = Input::Purchase { quantity };
                let op = ev.history.record(c, Key::Sale(sale), input, Output::Unknown, call, call_ms, note);
                ev.unknown_purchases.push(PendingPurchase { op, client: c, sale, quantity, key });
            }
        }
    }

    async fn read_sale(&self, rng: &mut StdRng, session: &mut Session, sale: u64) {
        let (call, call_ms) = (self.evidence.borrow_mut().history.tick(), sim_ms());
        let Attempted { answer, tried, .. } =
            attempt(rng, self.nodes, session, &sale_query(sale, "LINEARIZABLE"), None, true, Floor::None).await;
        let Some((stock, sold)) = stock_of(&answer) else { return };
        let output = Output::Stock { stock, sold };
        let note = format!("via {tried}");
        self.evidence.borrow_mut().history.record(
            self.c,
            Key::Sale(sale),
            Input::ReadSale,
            output,
            call,
            call_ms,
            note,
        );
    }
}

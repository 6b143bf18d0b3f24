//! The control host (`ctl`): sets the run up (accounts, a product, the sales), follows the
//! leader during faults for leader-targeted faults, performs the membership change a wipe needs,
//! and once the clients are done hands over to the post-heal [`resolution`](crate::resolution).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{SimConfig, REQUEST_TIMEOUT, SALES};
use crate::error::SimError;
use crate::gql::{lit, node_addr, request, sleep_ms, until_data, Answer};
use crate::resolution::{self, FinalState};
use crate::shared::{EvidenceRef, Phase, Setup, StageRef, Wipe};

/// Salt for setup's stream (the sales' stocks), so it is independent of the other streams.
const SETUP_RNG_SALT: u64 = 0x5e7;
/// Salt for ctl's stream during faults (which node to ask who leads).
const CTL_RNG_SALT: u64 = 0xc71;
/// How long ctl keeps trying to register one account, cycling through the nodes.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);
/// The pause before trying to register on the next node.
const REGISTER_RETRY_MS: u64 = 300;
/// How long a login after a lost registration answer may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long each of setup's product and sale requests may take (the cluster may be electing).
const SETUP_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The product's price: any price will do, no sale in the simulation checks payments.
const PRODUCT_PRICE_CENTS: u64 = 100;
/// A sale's initial stock is drawn from this...
const SALE_STOCK_MIN: u64 = 6;
/// ...to this, inclusive: small, so sales sell out while faults run.
const SALE_STOCK_MAX: u64 = 16;
/// How often ctl asks who leads during the fault phase (and looks for a wipe request).
const LEADER_POLL_MS: u64 = 200;
/// How often ctl looks whether every client is done.
const CLIENTS_DONE_POLL_MS: u64 = 100;
/// How long removing a voter may take before the wipe is skipped.
const MEMBERSHIP_CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause before looking for the leader again during a membership change.
const MEMBERSHIP_RETRY_MS: u64 = 300;

/// Registers `name` (on node 1 first, then the next node each time) and returns its token.
async fn register(nodes: u64, name: &str) -> Result<String, SimError> {
    let q = format!(
        "mutation {{ register(input: {{username: {}, password: \"simulation-password\"}}) {{ token }} }}",
        lit(name)
    );
    let login = format!("mutation {{ login(username: {}, password: \"simulation-password\") {{ token }} }}", lit(name));
    let no_token = || SimError::Missing { field: "token" };
    let deadline = tokio::time::Instant::now() + REGISTER_TIMEOUT;
    let mut node = 1;
    while tokio::time::Instant::now() < deadline {
        match request(&node_addr(node), &q, None, REQUEST_TIMEOUT).await {
            Answer::Data(d) => return d["register"]["token"].as_str().map(String::from).ok_or_else(no_token),
            // An earlier attempt that timed out went through.
            Answer::Error { code, .. } if code == "USERNAME_TAKEN" => {
                let d = until_data(node, &login, None, LOGIN_TIMEOUT).await?;
                return d["login"]["token"].as_str().map(String::from).ok_or_else(no_token);
            }
            _ => {}
        }
        node = node % nodes + 1;
        sleep_ms(REGISTER_RETRY_MS).await;
    }
    Err(SimError::NotRegistered { name: name.to_string() })
}

/// The accounts (the ADMIN first, then one buyer per client), a product, and [`SALES`] started
/// sales with stocks drawn from setup's own stream.
async fn setup(cfg: &SimConfig) -> Result<Setup, SimError> {
    let (seed, nodes, clients) = (cfg.seed, cfg.nodes, cfg.clients);
    let mut rng = StdRng::seed_from_u64(seed ^ SETUP_RNG_SALT);
    // The first account of a cluster is its ADMIN.
    let admin = register(nodes, "simadmin").await?;
    let mut buyers = Vec::new();
    for c in 0..clients {
        buyers.push(register(nodes, &format!("buyer{c}")).await?);
    }
    let limit = SETUP_REQUEST_TIMEOUT;
    let product = until_data(
        1,
        &format!(
            "mutation {{ createProduct(input: {{name: \"widget\", description: \"\", priceCents: {PRODUCT_PRICE_CENTS}}}) {{ id }} }}"
        ),
        Some(&admin),
        limit,
    )
    .await?;
    let product = product["createProduct"]["id"].as_str().ok_or(SimError::Missing { field: "product id" })?.to_string();
    let mut sales = Vec::new();
    for _ in 0..SALES {
        let stock: u64 = rng.random_range(SALE_STOCK_MIN..=SALE_STOCK_MAX);
        let q = format!(
            "mutation {{ createSale(input: {{productId: \"{product}\", stock: {stock}, perUserLimit: {stock}}}) {{ id }} }}"
        );
        let d = until_data(1, &q, Some(&admin), limit).await?;
        let id: u64 = d["createSale"]["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or(SimError::Missing { field: "sale id" })?;
        until_data(1, &format!("mutation {{ startSale(saleId: \"{id}\") {{ id }} }}"), Some(&admin), limit).await?;
        sales.push((id, stock));
    }
    Ok(Setup { admin, buyers, sales })
}

/// The ctl host's whole part: setup, the fault phase, then (once every client is done) the
/// post-heal resolution, and the final state for the invariants.
pub(crate) async fn ctl(cfg: SimConfig, stage: StageRef, evidence: EvidenceRef) {
    let nodes = cfg.nodes;
    let clients = cfg.clients;
    match setup(&cfg).await {
        Ok(s) => {
            let mut st = stage.borrow_mut();
            st.event(format!("setup done: sales {:?}; faults start", s.sales));
            st.setup = Some(s);
            st.phase = Phase::Faults;
        }
        Err(e) => {
            let e = SimError::Setup(Box::new(e));
            let mut st = stage.borrow_mut();
            st.event(e.to_string());
            evidence.borrow_mut().final_state = Some(FinalState { converged: Some(e), ..Default::default() });
            st.phase = Phase::Done;
            return;
        }
    }
    let admin = stage.borrow().setup.as_ref().map(|s| s.admin.clone()).unwrap_or_default();
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ CTL_RNG_SALT);

    // During faults: follow the leader (for leader-targeted faults), perform membership changes.
    while stage.borrow().phase == Phase::Faults {
        let node = rng.random_range(1..=nodes);
        if let Answer::Data(d) = request(&node_addr(node), "{ cluster { leaderId } }", None, REQUEST_TIMEOUT).await {
            if let Some(l) = d["cluster"]["leaderId"].as_u64() {
                stage.borrow_mut().leader = Some(l);
            }
        }
        let wipe = stage.borrow().wipe;
        if let Wipe::Requested(x) = wipe {
            let outcome = remove_voter(&stage, &admin, nodes, x).await;
            let mut s = stage.borrow_mut();
            match outcome {
                Ok(at) => {
                    s.event(format!("n{x} removed from the voters via n{at}"));
                    s.wipe = Wipe::Removed(x);
                }
                Err(e) => {
                    s.event(format!("could not remove n{x} ({e}); wipe skipped"));
                    s.wipe = Wipe::Idle;
                }
            }
        }
        sleep_ms(LEADER_POLL_MS).await;
    }

    while stage.borrow().clients_done < clients {
        sleep_ms(CLIENTS_DONE_POLL_MS).await;
    }
    let setup = stage.borrow().setup.clone().expect("setup done");
    let fin = resolution::resolve(&cfg, &setup, &evidence).await;
    evidence.borrow_mut().final_state = Some(fin);
    stage.borrow_mut().phase = Phase::Done;
}

/// Removes `x` from the voters through the current leader, and returns that leader. A change
/// whose answer was lost (the leader crashed after committing it, say) is found done by reading
/// the membership from the leader among the other nodes, so it is neither retried on a node
/// that was itself removed nor reported as failed.
async fn remove_voter(stage: &StageRef, admin: &str, nodes: u64, x: u64) -> Result<u64, SimError> {
    let voters: Vec<String> = (1..=nodes).filter(|&i| i != x).map(|i| i.to_string()).collect();
    let q = format!("mutation {{ changeMembership(voterIds: [{}]) {{ leaderId }} }}", voters.join(","));
    let status = "{ cluster { nodeId leaderId members { id voter } } }";
    let deadline = tokio::time::Instant::now() + MEMBERSHIP_CHANGE_TIMEOUT;
    let mut last = String::from("no leader among the other nodes");
    while tokio::time::Instant::now() < deadline {
        // A node that says it leads, other than x (a removed leader can go on believing it leads).
        let mut leader = None;
        for n in (1..=nodes).filter(|&n| n != x) {
            if let Answer::Data(d) = request(&node_addr(n), status, None, REQUEST_TIMEOUT).await {
                let c = &d["cluster"];
                if c["leaderId"].as_u64() == Some(n) && c["nodeId"].as_u64() == Some(n) {
                    let still_voter = c["members"]
                        .as_array()
                        .is_some_and(|m| m.iter().any(|m| m["id"].as_u64() == Some(x) && m["voter"] == true));
                    leader = Some((n, still_voter));
                    break;
                }
            }
        }
        match leader {
            Some((n, false)) => return Ok(n),
            Some((n, true)) => {
                stage.borrow_mut().leader = Some(n);
                match request(&node_addr(n), &q, Some(admin), REQUEST_TIMEOUT).await {
                    Answer::Data(_) => return Ok(n),
                    other => last = format!("{other:?}"),
                }
            }
            None => {}
        }
        sleep_ms(MEMBERSHIP_RETRY_MS).await;
    }
    Err(SimError::Membership { last })
}

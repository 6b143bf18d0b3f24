//! `importAccounts` through `schema.execute` on a real one-node store: existing users come in
//! with their argon2id hashes and sign in with their old passwords; a name that cannot be
//! claimed is skipped with its code, by the same rules as `register`; a malformed hash or field
//! fails the whole call and imports nothing; only an ADMIN may import.

mod support;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
use schema::SchemaConfig;
use serde_json::{json, Value};
use support::{one_node, Harness};

const IMPORT: &str =
    "mutation($a:[ImportAccountInput!]!){ importAccounts(accounts:$a){ imported skipped{ username code reason } } }";
const LOGIN: &str =
    "mutation($u:String!,$p:String!){ login(username:$u,password:$p){ token user{ id username displayName role createdAt email } } }";
const RESERVE: &str = "mutation($n:String!){ reserveUsername(name:$n){ token } }";

/// An argon2id hash of `password` with the given memory (KiB), passes and lanes, as another
/// system would have stored it.
fn hash(password: &str, m: u32, t: u32, p: u32) -> String {
    let params = Params::new(m, t, p, None).expect("params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes())
        .expect("hash")
        .to_string()
}

async fn import(h: &Harness, accounts: Value, token: &str) -> Value {
    h.ok(IMPORT, json!({ "a": accounts }), Some(token)).await["importAccounts"].clone()
}

fn skipped(r: &Value) -> Vec<(String, String)> {
    r["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| (s["username"].as_str().unwrap_or("").to_string(), s["code"].as_str().unwrap_or("").to_string()))
        .collect()
}

/// The error's (code, message) of a call expected to fail.
async fn refusal(h: &Harness, accounts: Value, token: Option<&str>) -> (String, String) {
    let (data, errors) = h.run(IMPORT, json!({ "a": accounts }), token).await;
    assert_eq!(errors.len(), 1, "expected one error, got {errors:?} and {data}");
    assert!(data.is_null() || data["importAccounts"].is_null(), "a refused import answered {data}");
    errors[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_accounts_sign_in_and_follow_the_name_rules() {
    let h = one_node(SchemaConfig::default()).await;
    let admin = h.register("boss").await["token"].as_str().expect("token").to_string();
    let plain = h.register("bob").await["token"].as_str().expect("token").to_string();
    let held = h.ok(RESERVE, json!({"n": "heldname"}), None).await;
    assert!(held["reserveUsername"]["token"].is_string());
    let owasp = hash("ann's old password", 19_456, 2, 1);
    let rfc9106 = hash("cy's old password", 65_536, 3, 4);

    // Phase 1: only an ADMIN imports (FORBIDDEN for a user, UNAUTHENTICATED for nobody), and
    // such a refusal creates nobody.
    let one = json!([{"username": "ann", "passwordHash": owasp}]);
    assert_eq!(refusal(&h, one.clone(), Some(&plain)).await.0, "FORBIDDEN");
    assert_eq!(refusal(&h, one.clone(), None).await.0, "UNAUTHENTICATED");
    assert_eq!(h.availability("ann").await["status"], "AVAILABLE");

    // Phase 2: one call, mixed. Two accounts come in (hashes of two parameter sets other
    // systems use); the rest are skipped with the code `register` would have got, in the order
    // given: a taken name, a look-alike of it, a name given twice (its second occurrence), a
    // policy-invalid name, a reserved word, a name someone holds a reservation on.
    let r = import(
        &h,
        json!([
            {"username": "ann", "passwordHash": owasp, "displayName": "Ann A.", "email": "ann@example.com",
             "createdAt": "2019-05-01T12:00:00Z"},
            {"username": "bob", "passwordHash": owasp},
            {"username": "B0B", "passwordHash": owasp},
            {"username": "Cyd", "passwordHash": rfc9106},
            {"username": "cyd", "passwordHash": owasp},
            {"username": "x", "passwordHash": owasp},
            {"username": "admin", "passwordHash": owasp},
            {"username": "heldname", "passwordHash": owasp},
        ]),
        &admin,
    )
    .await;
    assert_eq!(r["imported"], 2, "{r}");
    let want = [
        ("bob", "USERNAME_TAKEN"),
        ("B0B", "USERNAME_TAKEN"),
        ("cyd", "USERNAME_TAKEN"),
        ("x", "USERNAME_INVALID"),
        ("admin", "USERNAME_BLOCKED"),
        ("heldname", "USERNAME_RESERVED"),
    ];
    assert_eq!(skipped(&r), want.map(|(u, c)| (u.to_string(), c.to_string())).to_vec());
    assert!(r["skipped"].as_array().unwrap().iter().all(|s| !s["reason"].as_str().unwrap_or("").is_empty()));

    // Phase 3: they sign in with their old passwords, as plain users, keeping what was given.
    let ann = h.ok(LOGIN, json!({"u": "ANN", "p": "ann's old password"}), None).await["login"]["user"].clone();
    assert_eq!(ann["username"], "ann");
    assert_eq!(ann["displayName"], "Ann A.");
    assert_eq!(ann["email"], "ann@example.com");
    assert_eq!(ann["role"], "USER");
    assert_eq!(ann["createdAt"], "2019-05-01T12:00:00+00:00");
    let cy = h.ok(LOGIN, json!({"u": "cyd", "p": "cy's old password"}), None).await["login"]["user"].clone();
    assert_eq!((cy["username"].as_str(), cy["displayName"].as_str()), (Some("Cyd"), Some("Cyd")));
    let (_, errors) = h.run(LOGIN, json!({"u": "ann", "p": "not her password"}), None).await;
    assert_eq!(errors[0].0, "UNAUTHENTICATED");

    // Phase 4: a hash login could not verify, or that asks too much of every login, fails the
    // whole call with INVALID_INPUT naming the account, and the good account beside it is not
    // imported either.
    let argon2i = owasp.replacen("$argon2id$", "$argon2i$", 1);
    let v16 = owasp.replacen("$v=19$", "$v=16$", 1);
    let no_hash = owasp.rsplit_once('$').expect("hash part").0.to_string();
    let huge = "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    let slow = "$argon2id$v=19$m=65536,t=10,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
    for bad in [bcrypt, "plaintext-password", argon2i.as_str(), v16.as_str(), no_hash.as_str(), huge, slow] {
        let accounts = json!([{"username": "dora", "passwordHash": owasp}, {"username": "eve", "passwordHash": bad}]);
        let (code, message) = refusal(&h, accounts, Some(&admin)).await;
        assert_eq!(code, "INVALID_INPUT", "{bad}: {message}");
        assert!(message.starts_with("accounts[1].passwordHash"), "{bad}: {message}");
    }
    assert_eq!(h.availability("dora").await["status"], "AVAILABLE");

    // Phase 5: the other fields too: a future creation date, a bad e-mail, an overlong display
    // name; and more accounts than one call takes.
    for (field, account) in [
        ("createdAt", json!({"username": "dora", "passwordHash": owasp, "createdAt": "2999-01-01T00:00:00Z"})),
        ("email", json!({"username": "dora", "passwordHash": owasp, "email": "not-an-address"})),
        ("displayName", json!({"username": "dora", "passwordHash": owasp, "displayName": "d".repeat(51)})),
    ] {
        let (code, message) = refusal(&h, json!([account]), Some(&admin)).await;
        assert_eq!(code, "INVALID_INPUT", "{message}");
        assert!(message.starts_with(&format!("accounts[0].{field}")), "{message}");
    }
    let too_many: Vec<Value> =
        (0..1_001).map(|i| json!({"username": format!("bulk{i}"), "passwordHash": owasp})).collect();
    assert_eq!(refusal(&h, json!(too_many), Some(&admin)).await.0, "INVALID_INPUT");
    assert_eq!(h.availability("dora").await["status"], "AVAILABLE");
    assert_eq!(h.availability("bulk0").await["status"], "AVAILABLE");

    // Phase 6: a full call of 1,000 goes in as one entry, and repeating it (as a client does
    // after an unknown outcome) creates nobody twice: everything comes back USERNAME_TAKEN.
    let full: Vec<Value> = (0..1_000).map(|i| json!({"username": format!("bulk{i}"), "passwordHash": owasp})).collect();
    let before = *h.store.applied_index().borrow();
    assert_eq!(import(&h, json!(full), &admin).await["imported"], 1_000);
    assert_eq!(*h.store.applied_index().borrow(), before + 1, "one call, one log entry");
    let again = import(&h, json!(full), &admin).await;
    assert_eq!(again["imported"], 0);
    assert!(skipped(&again).iter().all(|(_, code)| code == "USERNAME_TAKEN"));
    assert_eq!(skipped(&again).len(), 1_000);
    assert_eq!(h.availability("bulk999").await["status"], "TAKEN");
}

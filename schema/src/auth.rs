//! Authentication: argon2id password hashes and bearer JWTs that any node can verify.

use std::sync::Arc;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use async_graphql::{Context, Error, ErrorExtensions};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use raft::{Consistency, Role, User};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::error::{api_error, code};
use crate::limits::ClientKey;
use crate::ApiContext;

/// Password hashes computed at once. argon2id is memory-hard on purpose (19 MiB each with the
/// default parameters), so a burst of registrations must queue rather than exhaust memory.
pub const PASSWORD_HASHES_IN_FLIGHT_MAX: usize = 8;
/// Of those, how many one client may hold: a client's burst waits behind its own earlier hashes
/// and cannot take every slot from everyone else.
pub const PASSWORD_HASHES_PER_CLIENT_MAX: usize = PASSWORD_HASHES_IN_FLIGHT_MAX / 2;
/// How long a login or registration waits for a hash slot before it is answered UNAVAILABLE
/// with a retry hint, rather than queue without bound behind a flood.
pub const PASSWORD_HASH_WAIT_MS: u64 = 3_000;

/// Longest password hash `importAccounts` takes, in bytes: a PHC string of 64-byte salt and hash
/// with its parameters fits well within it.
pub const PASSWORD_HASH_BYTES_MAX: usize = 256;
/// Most memory an imported argon2id hash may ask of each `login` that verifies it, in KiB
/// (64 MiB, RFC 9106's second recommendation). Each verification holds it while a hash slot is
/// held, so [`PASSWORD_HASHES_IN_FLIGHT_MAX`] bounds the total.
pub const PASSWORD_HASH_MEMORY_KIB_MAX: u32 = 64 * 1024;
/// Most passes an imported hash may ask for.
pub const PASSWORD_HASH_PASSES_MAX: u32 = 10;
/// Most lanes an imported hash may ask for.
pub const PASSWORD_HASH_LANES_MAX: u32 = 8;
/// Most work (memory in KiB times passes) an imported hash may ask of a `login`: three passes
/// over 64 MiB, about five times our own hash's cost (m=19456 KiB, t=2). Every
/// OWASP-recommended argon2id setting is within it.
pub const PASSWORD_HASH_WORK_KIB_MAX: u64 = 3 * 64 * 1024;

/// Checks a password hash brought in by `importAccounts`: an argon2id PHC string of version 19
/// (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) whose parameters `login` can verify within the bounds
/// above. The message says which rule it broke.
pub fn check_password_hash(phc: &str) -> Result<(), String> {
    const FORM: &str = "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>";
    if phc.len() > PASSWORD_HASH_BYTES_MAX {
        return Err(format!("must be at most {PASSWORD_HASH_BYTES_MAX} bytes, got {}", phc.len()));
    }
    let hash = argon2::PasswordHash::new(phc).map_err(|e| format!("is not a PHC string ({FORM}): {e}"))?;
    if hash.algorithm != argon2::ARGON2ID_IDENT {
        return Err(format!("must be an argon2id hash ({FORM}), got {}", hash.algorithm));
    }
    if hash.version != Some(0x13) {
        return Err(format!("must be argon2 version 19 (v=19), got {:?}", hash.version));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(format!("must carry a salt and a hash ({FORM})"));
    }
    let params = argon2::Params::try_from(&hash).map_err(|e| format!("has invalid parameters: {e}"))?;
    let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
    if m > PASSWORD_HASH_MEMORY_KIB_MAX
        || t > PASSWORD_HASH_PASSES_MAX
        || p > PASSWORD_HASH_LANES_MAX
        || u64::from(m) * u64::from(t) > PASSWORD_HASH_WORK_KIB_MAX
    {
        return Err(format!(
            "asks too much of every login (m={m}, t={t}, p={p}); at most m={PASSWORD_HASH_MEMORY_KIB_MAX} KiB, \
             t={PASSWORD_HASH_PASSES_MAX}, p={PASSWORD_HASH_LANES_MAX} and m*t={PASSWORD_HASH_WORK_KIB_MAX}"
        ));
    }
    Ok(())
}

/// The bearer token a request came with, as the transport found it (HTTP header or the
/// WebSocket `connection_init` payload). Verified lazily, by the fields that need a viewer.
#[derive(Debug, Clone, Default)]
pub struct BearerToken(pub Option<String>);

/// The claims of our JWTs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
}

/// Signs and verifies tokens, and hashes passwords off the async threads.
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    token_ttl_secs: i64,
    hashing: Arc<Semaphore>,
    /// Hashes each client has computing or waiting.
    per_client: Arc<std::sync::Mutex<PerClient>>,
    /// A real hash of a random password, verified against when the user does not exist so that
    /// "no such user" and "wrong password" take the same time.
    dummy_hash: String,
}

impl Auth {
    /// Keys from `secret`; tokens live `token_ttl_secs`.
    pub fn new(secret: &[u8], token_ttl_secs: i64) -> Result<Self, String> {
        if secret.len() < 16 {
            return Err(format!("jwt secret must be at least 16 bytes, got {}", secret.len()));
        }
        let dummy_hash = hash_blocking("a password nobody has")?;
        Ok(Auth {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            token_ttl_secs,
            hashing: Arc::new(Semaphore::new(PASSWORD_HASHES_IN_FLIGHT_MAX)),
            per_client: Arc::default(),
            dummy_hash,
        })
    }

    /// A token for `user`.
    pub fn issue(&self, user: &User) -> Result<String, Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims { sub: user.id.to_string(), iat: now, exp: now + self.token_ttl_secs };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| api_error(code::INTERNAL, format!("could not sign a token: {e}")))
    }

    /// The user id a token names, if it is valid and unexpired.
    pub fn verify(&self, token: &str) -> Result<u64, Error> {
        self.verify_claims(token).map(|(id, _)| id)
    }

    /// The user id a token names and when it expires (ms since the epoch).
    pub fn verify_claims(&self, token: &str) -> Result<(u64, i64), Error> {
        decode_claims(&self.decoding, token)
    }

    /// An argon2id PHC string for `password`, hashed for `client`.
    pub async fn hash(&self, client: Option<ClientKey>, password: String) -> Result<String, Error> {
        let _slot = self.slot(client).await?;
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| api_error(code::INTERNAL, e.to_string()))?
            .map_err(|e| api_error(code::INTERNAL, e))
    }

    /// Whether `password` matches `hash`; with no hash, checks a dummy one and answers false.
    pub async fn verify_password(
        &self,
        client: Option<ClientKey>,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, Error> {
        let _slot = self.slot(client).await?;
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let ok = tokio::task::spawn_blocking(move || {
            Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok()
        })
        .await
        .map_err(|e| api_error(code::INTERNAL, e.to_string()))?;
        Ok(ok && known)
    }

    /// A hash slot for `client`: a client's hashes queue behind its own earlier ones (at most
    /// [`PASSWORD_HASHES_PER_CLIENT_MAX`] of the node's slots are its at once), and the wait for
    /// both ends after [`PASSWORD_HASH_WAIT_MS`] with UNAVAILABLE and a retry hint.
    async fn slot(&self, client: Option<ClientKey>) -> Result<HashSlot, Error> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(PASSWORD_HASH_WAIT_MS);
        let mut slot = HashSlot { client, clients: self.per_client.clone(), _permits: Vec::new() };
        let own = client.map(|c| {
            let mut clients = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
            let entry =
                clients.entry(c).or_insert_with(|| (Arc::new(Semaphore::new(PASSWORD_HASHES_PER_CLIENT_MAX)), 0));
            entry.1 += 1;
            entry.0.clone()
        });
        let busy = || {
            api_error(
                code::UNAVAILABLE,
                format!("no password hash slot freed within {PASSWORD_HASH_WAIT_MS} ms; retry later"),
            )
            .extend_with(|_, e| e.set("retryAfterMs", crate::RETRY_AFTER_BUSY_MS))
        };
        for semaphore in own.into_iter().chain([self.hashing.clone()]) {
            match tokio::time::timeout_at(deadline, semaphore.acquire_owned()).await {
                Ok(Ok(permit)) => slot._permits.push(permit),
                Ok(Err(_)) => return Err(api_error(code::UNAVAILABLE, "shutting down")),
                Err(_) => return Err(busy()),
            }
        }
        Ok(slot)
    }
}

type PerClient = std::collections::HashMap<ClientKey, (Arc<Semaphore>, usize)>;

/// A client's share and a node hash slot; both are given back on drop.
struct HashSlot {
    client: Option<ClientKey>,
    clients: Arc<std::sync::Mutex<PerClient>>,
    _permits: Vec<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for HashSlot {
    fn drop(&mut self) {
        if let Some(c) = self.client {
            let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(entry) = clients.get_mut(&c) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    clients.remove(&c);
                }
            }
        }
    }
}

fn hash_blocking(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("hash password: {e}"))
}

/// The user id and expiry (ms since the epoch) of a token signed with `key`.
fn decode_claims(key: &DecodingKey, token: &str) -> Result<(u64, i64), Error> {
    let data = jsonwebtoken::decode::<Claims>(token, key, &Validation::new(Algorithm::HS256))
        .map_err(|e| api_error(code::UNAUTHENTICATED, format!("invalid bearer token: {e}")))?;
    let id =
        data.claims.sub.parse().map_err(|_| api_error(code::UNAUTHENTICATED, "invalid bearer token: bad subject"))?;
    Ok((id, data.claims.exp.saturating_mul(1000)))
}

/// Checks bearer tokens outside GraphQL (the node's `GET /backup`), by the same keys and rules
/// as the schema: a valid, unexpired token of an account that exists.
#[derive(Clone)]
pub struct TokenVerifier {
    decoding: DecodingKey,
}

impl TokenVerifier {
    /// A verifier of tokens signed with `secret` (the node's `--jwt-secret`).
    pub fn new(secret: &[u8]) -> Self {
        TokenVerifier { decoding: DecodingKey::from_secret(secret) }
    }

    /// The ADMIN account `token` belongs to: UNAUTHENTICATED without a valid token, FORBIDDEN
    /// for another role. Read as `viewer` reads it (locally, then confirmed with the leader when
    /// this node has not applied the account yet).
    pub async fn admin(&self, store: &raft::Store, token: Option<&str>) -> Result<User, Error> {
        let token =
            token.ok_or_else(|| api_error(code::UNAUTHENTICATED, "sign in: send Authorization: Bearer <token>"))?;
        let (id, _) = decode_claims(&self.decoding, token)?;
        for consistency in [Consistency::Local, Consistency::Linearizable] {
            let read = store.read(consistency, |v| v.user(id)).await.map_err(crate::error::store)?;
            if let Some(user) = read.value {
                if user.role != Role::Admin {
                    return Err(api_error(code::FORBIDDEN, "this needs the ADMIN role"));
                }
                return Ok(user);
            }
        }
        Err(api_error(code::UNAUTHENTICATED, "the account of this token no longer exists"))
    }
}

/// The signed-in user of a request, or UNAUTHENTICATED.
///
/// Reads the account locally first; if this node has not applied the registration yet (the
/// token was issued by a node further ahead), it waits for a linearizable read once, so a fresh
/// token works on every node at once.
pub async fn viewer(ctx: &Context<'_>) -> Result<User, Error> {
    viewer_session(ctx).await.map(|(user, _)| user)
}

/// The signed-in user and when the request's token expires (ms since the epoch): a
/// subscription ends with UNAUTHENTICATED then (see `feed::Session`).
pub async fn viewer_session(ctx: &Context<'_>) -> Result<(User, i64), Error> {
    let api = ctx.data::<ApiContext>()?;
    let token = ctx.data_opt::<BearerToken>().and_then(|t| t.0.clone());
    let Some(token) = token else {
        return Err(api_error(code::UNAUTHENTICATED, "sign in: send Authorization: Bearer <token>"));
    };
    let (id, expires_at_ms) = api.auth.verify_claims(&token)?;
    for consistency in [Consistency::Local, Consistency::Linearizable] {
        if let Some(user) = crate::applied::read(ctx, consistency, |v| v.user(id)).await? {
            return Ok((user, expires_at_ms));
        }
    }
    Err(api_error(code::UNAUTHENTICATED, "the account of this token no longer exists"))
}

/// The viewer, who must be an admin.
pub async fn admin(ctx: &Context<'_>) -> Result<User, Error> {
    let user = viewer(ctx).await?;
    if user.role != Role::Admin {
        return Err(api_error(code::FORBIDDEN, "this needs the ADMIN role"));
    }
    Ok(user)
}

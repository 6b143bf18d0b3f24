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
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &Validation::new(Algorithm::HS256))
            .map_err(|e| api_error(code::UNAUTHENTICATED, format!("invalid bearer token: {e}")))?;
        let id = data
            .claims
            .sub
            .parse()
            .map_err(|_| api_error(code::UNAUTHENTICATED, "invalid bearer token: bad subject"))?;
        Ok((id, data.claims.exp.saturating_mul(1000)))
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

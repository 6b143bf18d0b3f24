//! Authentication: argon2id password hashes and bearer JWTs that any node can verify.

use std::sync::Arc;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use async_graphql::{Context, Error};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use raft::{Consistency, Role, User};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::error::{api_error, code, store};
use crate::ApiContext;

/// Password hashes computed at once. argon2id is memory-hard on purpose (19 MiB each with the
/// default parameters), so a burst of registrations must queue rather than exhaust memory.
pub const PASSWORD_HASHES_IN_FLIGHT_MAX: usize = 8;

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
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &Validation::new(Algorithm::HS256))
            .map_err(|e| api_error(code::UNAUTHENTICATED, format!("invalid bearer token: {e}")))?;
        data.claims.sub.parse().map_err(|_| api_error(code::UNAUTHENTICATED, "invalid bearer token: bad subject"))
    }

    /// An argon2id PHC string for `password`.
    pub async fn hash(&self, password: String) -> Result<String, Error> {
        let _permit = self.hashing.acquire().await.map_err(|_| api_error(code::UNAVAILABLE, "shutting down"))?;
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| api_error(code::INTERNAL, e.to_string()))?
            .map_err(|e| api_error(code::INTERNAL, e))
    }

    /// Whether `password` matches `hash`; with no hash, checks a dummy one and answers false.
    pub async fn verify_password(&self, password: String, hash: Option<String>) -> Result<bool, Error> {
        let _permit = self.hashing.acquire().await.map_err(|_| api_error(code::UNAVAILABLE, "shutting down"))?;
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let ok = tokio::task::spawn_blocking(move || {
            Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok()
        })
        .await
        .map_err(|e| api_error(code::INTERNAL, e.to_string()))?;
        Ok(ok && known)
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
    let api = ctx.data::<ApiContext>()?;
    let token = ctx.data_opt::<BearerToken>().and_then(|t| t.0.clone());
    let Some(token) = token else {
        return Err(api_error(code::UNAUTHENTICATED, "sign in: send Authorization: Bearer <token>"));
    };
    let id = api.auth.verify(&token)?;
    for consistency in [Consistency::Local, Consistency::Linearizable] {
        let read = api.store.read(consistency, |v| v.user(id)).await.map_err(store)?;
        if let Some(user) = read.value {
            return Ok(user);
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

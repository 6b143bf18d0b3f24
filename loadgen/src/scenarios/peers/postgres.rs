//! PostgreSQL, through tokio-postgres without TLS (the peers run on loopback).

use std::time::Duration;

use anyhow::Context;
use client::transport;

use super::{Failure, TAKEN_CODE};

/// PostgreSQL's SQLSTATE for a unique violation: the name is taken.
const PG_UNIQUE_VIOLATION: &str = "23505";

/// PostgreSQL tables the scenario uses, created if absent. The `lg_` prefix keeps them apart
/// from anything else in the database.
pub(super) const PG_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS lg_claims (name text PRIMARY KEY);
     CREATE TABLE IF NOT EXISTS lg_sales (id bigserial PRIMARY KEY, stock bigint NOT NULL CHECK (stock >= 0));";

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code() {
            Some(state) if state.code() == PG_UNIQUE_VIOLATION => Self::refused(TAKEN_CODE),
            Some(state) => Self::refused(format!("PG_{}", state.code())),
            None if e.is_closed() => Self::broken("PG_CLOSED"),
            None => Self::broken("PG_IO"),
        }
    }
}

/// One PostgreSQL connection, its background task spawned.
pub(super) async fn pg_connect(endpoint: &str, timeout: Duration) -> anyhow::Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = endpoint.parse().context("parsing the PostgreSQL URL")?;
    config.connect_timeout(timeout.min(Duration::from_millis(transport::CONNECT_TIMEOUT_MS)));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.context("connecting to PostgreSQL")?;
    // The connection's task ends when the client is dropped; an error it ends with is also
    // returned to every request on the client, which counts it.
    tokio::spawn(async move {
        let _ended = connection.await;
    });
    Ok(client)
}

/// A PostgreSQL worker connection and the statement of its operation.
pub(super) struct PgConn {
    pub client: tokio_postgres::Client,
    pub statement: tokio_postgres::Statement,
}

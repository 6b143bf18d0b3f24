//! The operations of the server contract: their query text, their typed results, and helper
//! methods on [`Client`] that run them.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use crate::error::ClientError;
use crate::transport::Client;

/// Query checking whether a username can be claimed.
pub const AVAILABILITY_QUERY: &str = "query($name:String!,$c:Consistency){ usernameAvailability(name:$name, consistency:$c){ name canonical status reason suggestions } }";

/// Mutation reserving a username for a while, returning a token `register` accepts.
pub const RESERVE_MUTATION: &str =
    "mutation($name:String!,$ttl:Int){ reserveUsername(name:$name, ttlSeconds:$ttl){ token expiresAt } }";

/// Mutation creating an account.
pub const REGISTER_MUTATION: &str =
    "mutation($input:RegisterInput!){ register(input:$input){ token user{ id username } } }";

/// Mutation exchanging credentials for a token.
pub const LOGIN_MUTATION: &str =
    "mutation($u:String!,$p:String!){ login(username:$u,password:$p){ token user{ id username } } }";

/// Query describing the Raft cluster as the answering node sees it.
pub const CLUSTER_QUERY: &str = "query{ cluster{ nodeId leaderId term lastApplied members{ id addr } } }";

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Consistency {
    /// Confirmed with the leader, so it reflects every committed write.
    Linearizable,
    /// Served from the answering node's applied state, which may lag.
    Local,
}

impl Consistency {
    /// The GraphQL enum value, e.g. `LINEARIZABLE`.
    pub fn as_graphql(self) -> &'static str {
        match self {
            Self::Linearizable => "LINEARIZABLE",
            Self::Local => "LOCAL",
        }
    }
}

/// Answer to a username availability check.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Availability {
    /// The name as asked.
    pub name: String,
    /// The canonical form the server compares names by.
    pub canonical: String,
    /// The verdict, e.g. `AVAILABLE` or `RESERVED`; kept as a string so that a status added on
    /// the server does not break decoding here.
    pub status: String,
    /// Why the name is not available, when it is not.
    #[serde(default)]
    pub reason: Option<String>,
    /// Similar names that are available.
    #[serde(default, deserialize_with = "null_as_default")]
    pub suggestions: Vec<String>,
}

/// A username reservation.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// Token to pass as `reservationToken` when registering.
    pub token: String,
    /// When the reservation lapses, as the server renders it (a timestamp string or a number).
    #[serde(deserialize_with = "string_or_number")]
    pub expires_at: String,
}

/// Input of [`Client::register`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterInput {
    /// The wanted username.
    pub username: String,
    /// The password, sent as is over the connection.
    pub password: String,
    /// Display name; omitted when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Email address; omitted when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Token from [`Client::reserve_username`]; omitted when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_token: Option<String>,
}

/// A user as the auth operations return it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct User {
    /// The user's id; GraphQL `ID` values arrive as strings, but numbers are accepted too.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// The user's username.
    pub username: String,
}

/// Result of `register` and `login`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AuthPayload {
    /// JWT to send as `Authorization: Bearer <token>`; see [`Client::with_bearer`].
    pub token: String,
    /// The authenticated user.
    pub user: User,
}

/// One member of the Raft cluster.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Member {
    /// The member's node id.
    #[serde(deserialize_with = "u64_lenient")]
    pub id: u64,
    /// The member's address as configured in the cluster.
    pub addr: String,
}

/// The cluster as seen by the answering node.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Id of the node that answered.
    #[serde(deserialize_with = "u64_lenient")]
    pub node_id: u64,
    /// Id of the leader that node knows of, if any.
    #[serde(default, deserialize_with = "opt_u64_lenient")]
    pub leader_id: Option<u64>,
    /// The node's current Raft term.
    #[serde(deserialize_with = "u64_lenient")]
    pub term: u64,
    /// Index of the last log entry the node applied, if any.
    #[serde(default, deserialize_with = "opt_u64_lenient")]
    pub last_applied: Option<u64>,
    /// All voters and learners.
    pub members: Vec<Member>,
}

impl Client {
    /// Checks whether `name` can be claimed; `consistency` `None` leaves the choice to the server.
    pub async fn username_availability(
        &self,
        node: usize,
        name: &str,
        consistency: Option<Consistency>,
    ) -> Result<Availability, ClientError> {
        let vars = json!({ "name": name, "c": consistency.map(Consistency::as_graphql) });
        let data = self.run(node, AVAILABILITY_QUERY, vars).await?;
        field(data, "usernameAvailability")
    }

    /// Reserves `name`; `ttl_seconds` `None` leaves the lifetime to the server.
    pub async fn reserve_username(
        &self,
        node: usize,
        name: &str,
        ttl_seconds: Option<u32>,
    ) -> Result<Reservation, ClientError> {
        let vars = json!({ "name": name, "ttl": ttl_seconds });
        let data = self.run(node, RESERVE_MUTATION, vars).await?;
        field(data, "reserveUsername")
    }

    /// Creates an account.
    pub async fn register(&self, node: usize, input: &RegisterInput) -> Result<AuthPayload, ClientError> {
        let vars = json!({ "input": input });
        let data = self.run(node, REGISTER_MUTATION, vars).await?;
        field(data, "register")
    }

    /// Logs in with a username and password.
    pub async fn login(&self, node: usize, username: &str, password: &str) -> Result<AuthPayload, ClientError> {
        let vars = json!({ "u": username, "p": password });
        let data = self.run(node, LOGIN_MUTATION, vars).await?;
        field(data, "login")
    }

    /// Describes the cluster as node `node` sees it.
    pub async fn cluster(&self, node: usize) -> Result<ClusterInfo, ClientError> {
        let data = self.run(node, CLUSTER_QUERY, json!({})).await?;
        field(data, "cluster")
    }
}

/// Takes the top-level field `name` out of `data` and decodes it.
fn field<T: DeserializeOwned>(mut data: Value, name: &str) -> Result<T, ClientError> {
    let value = data
        .get_mut(name)
        .map(Value::take)
        .ok_or_else(|| ClientError::Decode(format!("data has no field {name:?}")))?;
    serde_json::from_value(value).map_err(|e| ClientError::Decode(format!("{name}: {e}")))
}

/// Accepts a string or a number and keeps its text, because the server may render ids and
/// timestamps either way and the client only passes them along.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("expected string or number, got {other}"))),
    }
}

/// Accepts a non-negative integer as a number or a decimal string, because GraphQL `Int` is only
/// 32 bits and a server may render 64-bit Raft ids and indexes as strings.
fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    opt_u64_lenient(d)?.ok_or_else(|| serde::de::Error::custom("expected an integer, got null"))
}

/// [`u64_lenient`] that also accepts `null`.
fn opt_u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Number(n) => {
            n.as_u64().map(Some).ok_or_else(|| serde::de::Error::custom(format!("expected a u64, got {n}")))
        }
        Value::String(s) => {
            s.parse().map(Some).map_err(|_| serde::de::Error::custom(format!("expected a u64, got {s:?}")))
        }
        other => Err(serde::de::Error::custom(format!("expected an integer, got {other}"))),
    }
}

/// Decodes `null` as the type's default, since a nullable list field may come back null.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_decodes_with_null_optionals() {
        let data = json!({"usernameAvailability": {
            "name": "Alice", "canonical": "alice", "status": "AVAILABLE",
            "reason": null, "suggestions": null,
        }});
        let got: Availability = field(data, "usernameAvailability").unwrap();
        assert_eq!(got.status, "AVAILABLE");
        assert_eq!(got.reason, None);
        assert!(got.suggestions.is_empty());
    }

    #[test]
    fn cluster_accepts_numbers_or_strings() {
        let data = json!({"cluster": {
            "nodeId": "2", "leaderId": 1, "term": 5, "lastApplied": null,
            "members": [{"id": 1, "addr": "a:1"}, {"id": "2", "addr": "b:2"}],
        }});
        let got: ClusterInfo = field(data, "cluster").unwrap();
        assert_eq!(got.node_id, 2);
        assert_eq!(got.leader_id, Some(1));
        assert_eq!(got.last_applied, None);
        assert_eq!(got.members[1].id, 2);
    }

    #[test]
    fn missing_field_is_decode_error() {
        let got = field::<Reservation>(json!({"other": {}}), "reserveUsername");
        assert!(matches!(got, Err(ClientError::Decode(_))));
    }

    #[test]
    fn register_input_omits_unset_optionals() {
        let input = RegisterInput {
            username: "bob".into(),
            password: "pw".into(),
            reservation_token: Some("t".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&input).unwrap(),
            json!({"username": "bob", "password": "pw", "reservationToken": "t"})
        );
    }
}

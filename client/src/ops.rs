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
    "mutation($input:RegisterInput!){ register(input:$input){ token user{ id username role } } }";

/// Mutation exchanging credentials for a token.
pub const LOGIN_MUTATION: &str =
    "mutation($u:String!,$p:String!){ login(username:$u,password:$p){ token user{ id username role } } }";

/// Mutation adding a product to the catalogue (ADMIN only).
pub const CREATE_PRODUCT_MUTATION: &str = "mutation($i:CreateProductInput!){ createProduct(input:$i){ id } }";

/// Mutation putting stock of a product on sale (ADMIN only).
pub const CREATE_SALE_MUTATION: &str = "mutation($i:CreateSaleInput!){ createSale(input:$i){ id status stock sold } }";

/// Mutation opening a sale now (ADMIN only).
pub const START_SALE_MUTATION: &str = "mutation($id:ID!){ startSale(saleId:$id){ id status } }";

/// Mutation buying units of a sale as the signed-in user; a repeated idempotency key returns the
/// first order instead of buying again.
pub const PURCHASE_MUTATION: &str =
    "mutation($s:ID!,$q:Int!,$k:String!){ purchase(saleId:$s, quantity:$q, idempotencyKey:$k){ id quantity } }";

/// Query reading a sale confirmed with the leader. The consistency is written into the query
/// rather than passed as a variable so that it is valid whether or not the server declares the
/// argument nullable.
pub const SALE_LINEARIZABLE_QUERY: &str =
    "query($id:ID!){ sale(id:$id, consistency: LINEARIZABLE){ id status stock sold } }";

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
    /// The user's role, e.g. `ADMIN` or `USER`; `None` when the server did not send it.
    #[serde(default)]
    pub role: Option<String>,
}

/// Result of `register` and `login`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AuthPayload {
    /// JWT to send as `Authorization: Bearer <token>`; see [`Client::with_bearer`].
    pub token: String,
    /// The authenticated user.
    pub user: User,
}

/// Input of [`Client::create_product`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateProductInput {
    /// Product name.
    pub name: String,
    /// Product description.
    pub description: String,
    /// Price in cents.
    pub price_cents: u32,
}

/// A product as [`Client::create_product`] returns it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Product {
    /// The product's id.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
}

/// Input of [`Client::create_sale`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSaleInput {
    /// Id of the product on sale.
    pub product_id: String,
    /// Units offered.
    pub stock: u32,
    /// When the sale opens by itself, RFC 3339; omitted when `None`, and then the sale waits
    /// for [`Client::start_sale`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// When the sale ends by itself, RFC 3339; omitted when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// Most units one buyer may buy.
    pub per_user_limit: u32,
}

/// A sale's state.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Sale {
    /// The sale's id.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// The status, e.g. `SCHEDULED`, `OPEN` or `SOLD_OUT`; kept as a string so that a status
    /// added on the server does not break decoding here.
    pub status: String,
    /// Units left. Signed so that a server bug selling more than it had still decodes and can be
    /// reported.
    pub stock: i64,
    /// Units sold.
    pub sold: i64,
}

/// The part of a sale [`Client::start_sale`] returns.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SaleStatus {
    /// The sale's id.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// The status after the change.
    pub status: String,
}

/// An order as `purchase` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Order {
    /// The order's id.
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    /// Units bought.
    pub quantity: u64,
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

    /// Adds a product to the catalogue; needs an ADMIN bearer token.
    pub async fn create_product(&self, node: usize, input: &CreateProductInput) -> Result<Product, ClientError> {
        let data = self.run(node, CREATE_PRODUCT_MUTATION, json!({ "i": input })).await?;
        field(data, "createProduct")
    }

    /// Puts stock of a product on sale; needs an ADMIN bearer token.
    pub async fn create_sale(&self, node: usize, input: &CreateSaleInput) -> Result<Sale, ClientError> {
        let data = self.run(node, CREATE_SALE_MUTATION, json!({ "i": input })).await?;
        field(data, "createSale")
    }

    /// Opens a sale now; needs an ADMIN bearer token.
    pub async fn start_sale(&self, node: usize, sale_id: &str) -> Result<SaleStatus, ClientError> {
        let data = self.run(node, START_SALE_MUTATION, json!({ "id": sale_id })).await?;
        field(data, "startSale")
    }

    /// Buys `quantity` units of a sale as the bearer token's user. Reusing `idempotency_key`
    /// returns the first order made with it instead of buying again.
    pub async fn purchase(
        &self,
        node: usize,
        sale_id: &str,
        quantity: u32,
        idempotency_key: &str,
    ) -> Result<Order, ClientError> {
        let data = self.run(node, PURCHASE_MUTATION, purchase_variables(sale_id, quantity, idempotency_key)).await?;
        field(data, "purchase")
    }

    /// Reads a sale confirmed with the leader; `None` when there is no such sale.
    pub async fn sale_linearizable(&self, node: usize, sale_id: &str) -> Result<Option<Sale>, ClientError> {
        let data = self.run(node, SALE_LINEARIZABLE_QUERY, json!({ "id": sale_id })).await?;
        field(data, "sale")
    }

    /// Describes the cluster as node `node` sees it.
    pub async fn cluster(&self, node: usize) -> Result<ClusterInfo, ClientError> {
        let data = self.run(node, CLUSTER_QUERY, json!({})).await?;
        field(data, "cluster")
    }
}

/// The variables of [`PURCHASE_MUTATION`], for callers that send it through
/// [`Client::execute`] themselves.
pub fn purchase_variables(sale_id: &str, quantity: u32, idempotency_key: &str) -> Value {
    json!({ "s": sale_id, "q": quantity, "k": idempotency_key })
}

/// Takes the top-level field `name` out of `data` and decodes it; public so that callers of
/// [`Client::execute`] decode answers the same way the typed helpers do.
pub fn field<T: DeserializeOwned>(mut data: Value, name: &str) -> Result<T, ClientError> {
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
    fn sale_input_is_camel_case_and_omits_unset_times() {
        let input = CreateSaleInput {
            product_id: "7".into(),
            stock: 10,
            starts_at: Some("2030-01-01T00:00:00.000Z".into()),
            per_user_limit: 2,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&input).unwrap(),
            json!({"productId": "7", "stock": 10, "startsAt": "2030-01-01T00:00:00.000Z", "perUserLimit": 2})
        );
    }

    #[test]
    fn orders_sales_and_roles_decode() {
        let order: Order = field(json!({"purchase": {"id": 12, "quantity": 3}}), "purchase").unwrap();
        assert_eq!(order, Order { id: "12".into(), quantity: 3 });
        let sale: Option<Sale> =
            field(json!({"sale": {"id": "4", "status": "OPEN", "stock": 9, "sold": 1}}), "sale").unwrap();
        assert_eq!(sale.map(|s| (s.stock, s.sold)), Some((9, 1)));
        let missing: Option<Sale> = field(json!({"sale": null}), "sale").unwrap();
        assert_eq!(missing, None);
        let auth: AuthPayload =
            field(json!({"login": {"token": "t", "user": {"id": "1", "username": "a", "role": "ADMIN"}}}), "login")
                .unwrap();
        assert_eq!(auth.user.role.as_deref(), Some("ADMIN"));
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

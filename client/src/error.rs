//! The client's error type, the pure decoding of a GraphQL HTTP response into data or an error,
//! and the classification of a failed attempt that the retry policy of [`crate::transport`]
//! acts on.

use serde::Deserialize;
use serde_json::Value;

/// Code reported for a GraphQL error whose `extensions.code` is missing; the server contract says
/// every error carries a code, so a missing one is treated as a server-side fault.
pub const FALLBACK_ERROR_CODE: &str = "INTERNAL";

/// The GraphQL code by which the server says it cannot serve the request right now (no leader,
/// no quorum, shutting down); it is the one server code worth retrying, possibly on another node.
pub const UNAVAILABLE_CODE: &str = "UNAVAILABLE";

/// How much of a non-GraphQL error body is kept in [`ClientError::Http`], so that an HTML error
/// page from a proxy does not flood logs.
pub const HTTP_ERROR_BODY_MAX_CHARS: usize = 512;

/// Everything that can go wrong talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a GraphQL error other than `UNAVAILABLE`; `code` is its
    /// `extensions.code` (e.g. `USERNAME_TAKEN`), or [`FALLBACK_ERROR_CODE`] when it carried none.
    #[error("{code}: {message}")]
    Graphql {
        /// Machine-readable code from `extensions.code`.
        code: String,
        /// Human-readable message from the server.
        message: String,
    },
    /// The server answered `UNAVAILABLE` (no leader, no quorum, overloaded, shutting down),
    /// with its retry hints.
    #[error("UNAVAILABLE: {message}{}", if *outcome_unknown { " (the write may still have been applied)" } else { "" })]
    Unavailable {
        /// Human-readable message from the server.
        message: String,
        /// `extensions.retryAfterMs`: the least wait the server suggests before a retry.
        retry_after_ms: Option<u64>,
        /// `extensions.outcomeUnknown`: the write reached a leader's log and may still commit,
        /// so repeating it could apply it twice. False means it certainly was not applied.
        outcome_unknown: bool,
    },
    /// A non-idempotent operation (see [`crate::transport::Idempotency`]) failed in a way that
    /// leaves its outcome unknown (a timeout after sending, `outcomeUnknown: true`, a gateway
    /// error), so it was not retried. The caller must re-check the state (e.g. ask
    /// `usernameAvailability` after `register`) before trying again.
    #[error(
        "{operation}: the outcome is unknown, it may or may not have been applied; check the current state before retrying ({cause})"
    )]
    OutcomeUnknown {
        /// The GraphQL field of the operation, e.g. `register`.
        operation: String,
        /// The failure of the last attempt.
        cause: Box<ClientError>,
    },
    /// The server answered with a non-success HTTP status and no GraphQL errors in the body.
    #[error("HTTP {status}: {body}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The start of the response body, truncated to [`HTTP_ERROR_BODY_MAX_CHARS`].
        body: String,
    },
    /// The request did not complete: connection refused or reset, timeout, TLS failure.
    #[error("transport error: {0}")]
    Transport(#[from] reqwest::Error),
    /// The response was not the JSON shape the contract promises.
    #[error("malformed response: {0}")]
    Decode(String),
    /// The client was built with unusable settings, such as no nodes or an unparsable URL.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

/// What a failed attempt says about the request, which decides whether the retry policy may
/// repeat it (see [`crate::transport`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Repeating cannot help: the server refused the request (a business rule, bad input, no
    /// permission), or the client or response is broken.
    Final,
    /// Worth another attempt, and the request certainly took no effect: the connection was
    /// refused before anything was sent, or the server said `UNAVAILABLE` with
    /// `outcomeUnknown: false`. Safe to repeat for any operation.
    NotApplied,
    /// Worth another attempt, but the request may have taken effect: a timeout or a dropped
    /// connection after it was sent, `outcomeUnknown: true`, or a gateway status (502–504) from
    /// a proxy that may have forwarded it. Safe to repeat only for idempotent operations.
    MaybeApplied,
}

impl ClientError {
    /// A short code naming this error, for counting errors by kind: the server's code for
    /// GraphQL errors (`UNAVAILABLE` included), the cause's code for
    /// [`ClientError::OutcomeUnknown`], otherwise a client-side code (`HTTP_<status>`,
    /// `TIMEOUT`, `CONNECT`, `TRANSPORT`, `DECODE`, `CONFIG`) that no server code uses.
    pub fn code(&self) -> String {
        match self {
            Self::Graphql { code, .. } => code.clone(),
            Self::Unavailable { .. } => UNAVAILABLE_CODE.to_owned(),
            Self::OutcomeUnknown { cause, .. } => cause.code(),
            Self::Http { status, .. } => format!("HTTP_{status}"),
            Self::Transport(e) if e.is_timeout() => "TIMEOUT".to_owned(),
            Self::Transport(e) if e.is_connect() => "CONNECT".to_owned(),
            Self::Transport(_) => "TRANSPORT".to_owned(),
            Self::Decode(_) => "DECODE".to_owned(),
            Self::Config(_) => "CONFIG".to_owned(),
        }
    }

    /// The human-readable part: the server's message for server errors, the whole description
    /// otherwise.
    pub fn message(&self) -> String {
        match self {
            Self::Graphql { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// Classifies a failed attempt for the retry policy.
    pub fn failure(&self) -> Failure {
        match self {
            Self::Graphql { code, .. } if code == UNAVAILABLE_CODE => Failure::NotApplied,
            Self::Graphql { .. } => Failure::Final,
            Self::Unavailable { outcome_unknown: false, .. } => Failure::NotApplied,
            Self::Unavailable { outcome_unknown: true, .. } => Failure::MaybeApplied,
            Self::OutcomeUnknown { .. } => Failure::Final,
            Self::Http { status: 502..=504, .. } => Failure::MaybeApplied,
            Self::Http { .. } => Failure::Final,
            // A builder or redirect error fails the same way every time.
            Self::Transport(e) if e.is_builder() || e.is_redirect() => Failure::Final,
            // Checked before the timeout: a connect timeout is both, and nothing was sent.
            Self::Transport(e) if e.is_connect() => Failure::NotApplied,
            Self::Transport(_) => Failure::MaybeApplied,
            Self::Decode(_) | Self::Config(_) => Failure::Final,
        }
    }

    /// Whether another attempt, possibly on another node, may succeed *if the operation is
    /// idempotent*: [`ClientError::failure`] is not [`Failure::Final`].
    pub fn is_retryable(&self) -> bool {
        self.failure() != Failure::Final
    }

    /// Whether the request may have taken effect although it failed: `outcomeUnknown: true`,
    /// a timeout or dropped connection after sending, a gateway error, or an
    /// [`ClientError::OutcomeUnknown`].
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::OutcomeUnknown { .. }) || self.failure() == Failure::MaybeApplied
    }

    /// The server's `retryAfterMs` hint, when it sent one.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Self::Unavailable { retry_after_ms, .. } => *retry_after_ms,
            Self::OutcomeUnknown { cause, .. } => cause.retry_after_ms(),
            _ => None,
        }
    }
}

/// The top-level shape of a GraphQL response; both members are optional because either may be
/// absent depending on success.
#[derive(Deserialize)]
struct RawResponse {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    errors: Option<Vec<RawError>>,
    #[serde(default)]
    extensions: Option<Value>,
}

/// The highest log index a response says it reflects: its `extensions.appliedIndex` (the state it
/// was read from) or `extensions.writeIndex` (the entry its mutation committed in), whichever is
/// larger. A session keeps the largest it has seen and sends it as `atLeastIndex`.
fn response_index(extensions: Option<&Value>) -> Option<u64> {
    let ext = extensions?;
    let applied = ext.get("appliedIndex").and_then(Value::as_u64);
    let write = ext.get("writeIndex").and_then(Value::as_u64);
    applied.max(write)
}

/// One entry of a GraphQL response's `errors` list.
#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    extensions: Option<Value>,
}

impl From<RawError> for ClientError {
    fn from(raw: RawError) -> Self {
        from_error_parts(raw.message, raw.extensions.as_ref())
    }
}

/// Builds the error for a GraphQL error's message and `extensions`: [`ClientError::Unavailable`]
/// with its hints for `UNAVAILABLE`, [`ClientError::Graphql`] otherwise. Shared with the
/// WebSocket side, whose errors have the same shape.
pub(crate) fn from_error_parts(message: String, extensions: Option<&Value>) -> ClientError {
    let code = extensions.and_then(|ext| ext.get("code")).and_then(Value::as_str).unwrap_or(FALLBACK_ERROR_CODE);
    if code == UNAVAILABLE_CODE {
        let ext = extensions.expect("a code implies extensions");
        return ClientError::Unavailable {
            message,
            retry_after_ms: ext.get("retryAfterMs").and_then(Value::as_u64),
            outcome_unknown: ext.get("outcomeUnknown").and_then(Value::as_bool).unwrap_or(false),
        };
    }
    ClientError::Graphql { code: code.to_owned(), message }
}

/// Turns an HTTP status and body into the response's `data` or the error it reports.
///
/// GraphQL errors win over the HTTP status because servers commonly send validation errors with
/// status 400 and a perfectly good `errors` list. When several errors are present the first is
/// returned, since a single operation fails for one reason the caller can act on. A success
/// status without `data` or `errors` breaks the contract and is a [`ClientError::Decode`].
pub fn parse_response(status: u16, body: &[u8]) -> Result<Value, ClientError> {
    parse_response_indexed(status, body).0
}

/// [`parse_response`], and the highest log index the response reflects (see the session in
/// [`crate::Client`]), which errors carry too: a rejected mutation still committed.
pub fn parse_response_indexed(status: u16, body: &[u8]) -> (Result<Value, ClientError>, Option<u64>) {
    let raw = serde_json::from_slice::<RawResponse>(body);
    let index = raw.as_ref().ok().and_then(|r| response_index(r.extensions.as_ref()));
    let result = match raw {
        Ok(RawResponse { errors: Some(errors), .. }) if !errors.is_empty() => {
            let first = errors.into_iter().next().expect("guarded non-empty");
            Err(first.into())
        }
        _ if !(200..300).contains(&status) => Err(ClientError::Http {
            status,
            body: truncate_chars(&String::from_utf8_lossy(body), HTTP_ERROR_BODY_MAX_CHARS),
        }),
        Ok(RawResponse { data: Some(data), .. }) if !data.is_null() => Ok(data),
        Ok(_) => Err(ClientError::Decode("response has neither data nor errors".to_owned())),
        Err(e) => Err(ClientError::Decode(format!("response is not JSON: {e}"))),
    };
    (result, index)
}

/// Cuts `s` to at most `max` characters on a character boundary.
fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn graphql_code(result: Result<Value, ClientError>) -> (String, String) {
        match result {
            Err(ClientError::Graphql { code, message }) => (code, message),
            other => panic!("expected a GraphQL error, got {other:?}"),
        }
    }

    #[test]
    fn data_is_returned_on_success() {
        let data = json!({"login": {"token": "t"}});
        let got = parse_response(200, &body(json!({ "data": data.clone() }))).unwrap();
        assert_eq!(got, data);
    }

    #[test]
    fn error_code_comes_from_extensions() {
        let resp = json!({
            "data": null,
            "errors": [{"message": "taken", "extensions": {"code": "USERNAME_TAKEN"}}],
        });
        let (code, message) = graphql_code(parse_response(200, &body(resp)));
        assert_eq!(code, "USERNAME_TAKEN");
        assert_eq!(message, "taken");
    }

    #[test]
    fn missing_code_falls_back_to_internal() {
        let resp = json!({"errors": [{"message": "boom"}]});
        let (code, _) = graphql_code(parse_response(200, &body(resp)));
        assert_eq!(code, FALLBACK_ERROR_CODE);

        let resp = json!({"errors": [{"message": "boom", "extensions": {"code": 7}}]});
        let (code, _) = graphql_code(parse_response(200, &body(resp)));
        assert_eq!(code, FALLBACK_ERROR_CODE);
    }

    #[test]
    fn first_error_wins_even_with_partial_data() {
        let resp = json!({
            "data": {"a": 1},
            "errors": [
                {"message": "one", "extensions": {"code": "SOLD_OUT"}},
                {"message": "two", "extensions": {"code": "INTERNAL"}},
            ],
        });
        let (code, message) = graphql_code(parse_response(200, &body(resp)));
        assert_eq!((code.as_str(), message.as_str()), ("SOLD_OUT", "one"));
    }

    #[test]
    fn graphql_errors_win_over_http_status() {
        let resp = json!({"errors": [{"message": "bad", "extensions": {"code": "INVALID_INPUT"}}]});
        let (code, _) = graphql_code(parse_response(400, &body(resp)));
        assert_eq!(code, "INVALID_INPUT");
    }

    #[test]
    fn non_graphql_failure_is_http_error_with_truncated_body() {
        let page = "x".repeat(HTTP_ERROR_BODY_MAX_CHARS * 2);
        match parse_response(502, page.as_bytes()) {
            Err(e @ ClientError::Http { status: 502, .. }) => {
                assert!(e.is_retryable());
                assert_eq!(e.code(), "HTTP_502");
                let ClientError::Http { body, .. } = e else { unreachable!() };
                assert_eq!(body.chars().count(), HTTP_ERROR_BODY_MAX_CHARS + 1);
            }
            other => panic!("expected HTTP error, got {other:?}"),
        }
    }

    #[test]
    fn empty_errors_list_and_malformed_bodies() {
        let ok = parse_response(200, &body(json!({"data": {"x": 1}, "errors": []})));
        assert_eq!(ok.unwrap(), json!({"x": 1}));
        assert!(matches!(parse_response(200, &body(json!({"data": null}))), Err(ClientError::Decode(_))));
        assert!(matches!(parse_response(200, b"not json"), Err(ClientError::Decode(_))));
    }

    #[test]
    fn only_unavailable_is_retryable_among_server_codes() {
        let err = |code: &str| ClientError::Graphql { code: code.to_owned(), message: String::new() };
        assert!(err("UNAVAILABLE").is_retryable());
        for code in ["RATE_LIMITED", "INTERNAL", "USERNAME_TAKEN", "SOLD_OUT"] {
            assert!(!err(code).is_retryable(), "{code}");
        }
    }

    #[test]
    fn unavailable_carries_the_retry_hints() {
        let resp = json!({"data": null, "errors": [{"message": "no leader", "extensions":
            {"code": "UNAVAILABLE", "retryAfterMs": 500, "outcomeUnknown": false}}]});
        let e = parse_response(200, &body(resp)).unwrap_err();
        assert_eq!(e.code(), "UNAVAILABLE");
        assert_eq!(e.retry_after_ms(), Some(500));
        assert_eq!(e.failure(), Failure::NotApplied);
        assert!(!e.outcome_unknown());

        let resp = json!({"errors": [{"message": "not committed in time", "extensions":
            {"code": "UNAVAILABLE", "retryAfterMs": 500, "outcomeUnknown": true}}]});
        let e = parse_response(200, &body(resp)).unwrap_err();
        assert_eq!(e.failure(), Failure::MaybeApplied);
        assert!(e.outcome_unknown());
        assert!(e.to_string().contains("may still have been applied"), "{e}");

        // Hints are optional: a bare UNAVAILABLE is retryable and says the write was not applied.
        let resp = json!({"errors": [{"message": "shutting down", "extensions": {"code": "UNAVAILABLE"}}]});
        let e = parse_response(200, &body(resp)).unwrap_err();
        assert_eq!((e.retry_after_ms(), e.failure()), (None, Failure::NotApplied));
    }

    #[test]
    fn outcome_unknown_keeps_the_cause_code_and_is_final() {
        let cause = ClientError::Unavailable { message: "m".into(), retry_after_ms: Some(500), outcome_unknown: true };
        let e = ClientError::OutcomeUnknown { operation: "register".into(), cause: Box::new(cause) };
        assert_eq!(e.code(), "UNAVAILABLE");
        assert_eq!(e.failure(), Failure::Final);
        assert!(e.outcome_unknown());
        assert_eq!(e.retry_after_ms(), Some(500));
        assert!(e.to_string().starts_with("register: the outcome is unknown"), "{e}");
        // Gateway errors may have been forwarded: retryable only for idempotent operations.
        let gateway = ClientError::Http { status: 503, body: String::new() };
        assert_eq!(gateway.failure(), Failure::MaybeApplied);
        assert_eq!(ClientError::Http { status: 500, body: String::new() }.failure(), Failure::Final);
    }
}

//! The GraphQL documents the workload and the post-heal resolution share, and how their answers
//! read as history outputs.

use crate::gql::{lit, Answer};
use crate::history::Output;

/// The `status` of a username check's answer under `field`, if it answered with data.
pub(crate) fn status_of(answer: &Answer, field: &str) -> Option<String> {
    match answer {
        Answer::Data(d) => d.get(field)?.get("status")?.as_str().map(String::from),
        _ => None,
    }
}

/// A name status as the history records a check: AVAILABLE is free, TAKEN and RESERVED held.
pub(crate) fn held_or_free(status: &str) -> Option<Output> {
    match status {
        "AVAILABLE" => Some(Output::Free),
        "TAKEN" | "RESERVED" => Some(Output::Held),
        _ => None,
    }
}

/// A purchase with its idempotency key: the same key always asks for the same order.
pub(crate) fn purchase_query(sale: u64, quantity: u64, key: &str) -> String {
    format!(
        "mutation {{ purchase(saleId: \"{sale}\", quantity: {quantity}, idempotencyKey: {}) {{ id quantity }} }}",
        lit(key)
    )
}

/// The output of a purchase answer: Some(Bought/SoldOut, order id) when definite.
pub(crate) fn purchase_output(answer: &Answer) -> Option<(Output, Option<String>)> {
    match answer {
        Answer::Data(d) => {
            let id = d.get("purchase")?.get("id")?.as_str()?.to_string();
            Some((Output::Bought, Some(id)))
        }
        Answer::Error { code, .. } if code == "SOLD_OUT" => Some((Output::SoldOut, None)),
        _ => None,
    }
}

/// A sale's stock and sold count at `consistency` (LINEARIZABLE or LOCAL).
pub(crate) fn sale_query(sale: u64, consistency: &str) -> String {
    format!("{{ sale(id: \"{sale}\", consistency: {consistency}) {{ stock sold }} }}")
}

/// (stock, sold) from a sale answer, if it answered with data.
pub(crate) fn stock_of(answer: &Answer) -> Option<(u64, u64)> {
    match answer {
        Answer::Data(d) => {
            let s = d.get("sale")?;
            Some((s.get("stock")?.as_u64()?, s.get("sold")?.as_u64()?))
        }
        _ => None,
    }
}

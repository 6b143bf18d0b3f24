//! Relay connection helpers shared by the domains: ids, page sizes and cursors.
//!
//! Cursors are the decimal form of a key of the index the connection reads (an order id, a
//! chat id, a message's position in its chat), so a cursor stays valid however the rows around
//! it change.

use async_graphql::{Error, ID};

use crate::error::invalid;

/// Default page size of connections.
pub const PAGE_SIZE_DEFAULT: usize = 20;
/// Largest page a client may ask for.
pub const PAGE_SIZE_MAX: usize = 100;

/// A positive numeric id, or INVALID_INPUT naming `field`.
pub(crate) fn parse_id(field: &str, id: &ID) -> Result<u64, Error> {
    id.parse::<u64>().ok().filter(|v| *v > 0).ok_or_else(|| invalid(field, format!("{:?} is not an id", id.0)))
}

/// The page size asked for in `field` (`first` or `last`), or the default.
pub(crate) fn page_size_of(field: &str, n: Option<i32>) -> Result<usize, Error> {
    match n {
        None => Ok(PAGE_SIZE_DEFAULT),
        Some(n) if n >= 1 && n as usize <= PAGE_SIZE_MAX => Ok(n as usize),
        Some(n) => Err(invalid(field, format!("must be 1 to {PAGE_SIZE_MAX}, got {n}"))),
    }
}

/// The page size asked for with `first`, or the default.
pub(crate) fn page_size(first: Option<i32>) -> Result<usize, Error> {
    page_size_of("first", first)
}

/// The key a cursor given in `field` (`after` or `before`) names.
pub(crate) fn cursor_of(field: &str, c: Option<String>) -> Result<Option<u64>, Error> {
    match c {
        None => Ok(None),
        Some(c) => {
            c.parse().map(Some).map_err(|_| invalid(field, format!("{c:?} is not a cursor from this connection")))
        }
    }
}

/// The key an `after` cursor names, 0 (before everything) without one.
pub(crate) fn cursor(after: Option<String>) -> Result<u64, Error> {
    Ok(cursor_of("after", after)?.unwrap_or(0))
}

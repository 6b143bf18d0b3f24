//! GraphiQL at `/`, every asset compiled into the binary (`node/assets/graphiql/`, with where
//! each file came from and its licence), so the IDE works with no internet.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The page that mounts the IDE.
const INDEX_HTML: &str = include_str!("../assets/graphiql/index.html");

/// The built files, by the name the page asks for, with their content types.
pub const ASSETS: [(&str, &str, &[u8]); 4] = [
    ("graphiql.min.js", "text/javascript; charset=utf-8", include_bytes!("../assets/graphiql/graphiql.min.js")),
    ("graphiql.min.css", "text/css; charset=utf-8", include_bytes!("../assets/graphiql/graphiql.min.css")),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react-dom.production.min.js"),
    ),
];

/// How long a browser may keep an asset without asking again. The files change only with the
/// binary, and a day bounds how long an upgraded node serves a stale IDE from a cache.
const ASSET_MAX_AGE_SECS: u32 = 24 * 3600;

/// `GET /`.
pub async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], INDEX_HTML)
        .into_response()
}

/// `GET /assets/graphiql/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => {
            let cache = format!("public, max-age={ASSET_MAX_AGE_SECS}");
            ([(header::CONTENT_TYPE, content_type.to_string()), (header::CACHE_CONTROL, cache)], *bytes).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    // Why: the repo records where each embedded file came from by its hash; a file swapped or
    // edited without updating that record would ship unaccounted for.
    #[test]
    fn playground_assets_match_their_record() {
        let record = include_str!("../assets/graphiql/README.md");
        for (name, _, bytes) in ASSETS {
            let hash: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
            let row = record.lines().find(|l| l.starts_with(&format!("| `{name}`"))).expect("a row per file");
            assert!(row.contains(&hash), "{name}: sha256 {hash} is not the recorded one: {row}");
        }
    }

    // Why: the page must load nothing from anywhere but this node.
    #[test]
    fn the_page_loads_only_local_assets() {
        for line in INDEX_HTML.lines().filter(|l| l.contains("src=") || l.contains("href=")) {
            assert!(line.contains("\"/assets/graphiql/") || line.contains("\"data:"), "a non-local asset: {line}");
        }
        for (name, _, _) in ASSETS {
            assert!(INDEX_HTML.contains(&format!("/assets/graphiql/{name}")), "the page uses {name}");
        }
    }
}

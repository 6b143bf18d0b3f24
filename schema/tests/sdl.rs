//! The committed `schema.graphql` (at the repository root, for codegen tools and reviewers) is
//! the schema the code builds. Run with `UPDATE_SCHEMA=1` to rewrite it after changing the API.

mod support;

use schema::SchemaConfig;

#[tokio::test]
async fn the_committed_sdl_is_the_schema_the_code_builds() {
    // Why: clients generate their types from schema.graphql; a stale file gives them an API
    // that does not exist.
    let harness = support::one_node(SchemaConfig::default()).await;
    let sdl = harness.schema.sdl();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema.graphql");
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &sdl).expect("write schema.graphql");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == sdl,
        "schema.graphql is not the schema the code builds; regenerate it with\n    UPDATE_SCHEMA=1 cargo test -p schema --test sdl"
    );
}

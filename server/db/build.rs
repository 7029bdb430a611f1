// `sqlx::migrate!` embeds the migration files at compile time, but cargo does not know about
// them: without this, adding a migration leaves a stale build without it (the schema then lacks
// the new tables until something else forces a rebuild).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

//! The crate graph keeps the service boundaries: read from `cargo metadata` (no build, no
//! network), so a `Cargo.toml` line that crosses a boundary fails here, not in review.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Normal (not dev, not build) dependencies between the workspace's packages.
fn workspace_graph() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|name| names.contains(name))
                .map(str::to_owned)
                .collect();
            (p["name"].as_str().expect("name").to_owned(), deps)
        })
        .collect()
}

/// Every workspace package `from` depends on, directly or not.
fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_owned()];
    while let Some(p) = todo.pop() {
        for d in &graph[&p] {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn services_depend_on_each_other_only_through_the_allowed_edges() {
    let graph = workspace_graph();
    // (package, workspace packages it must never reach, even through another one)
    let server_internals = [
        "syncsphere-db",
        "syncsphere-events",
        "syncsphere-auth",
        "syncsphere-files",
        "syncsphere-state",
        "syncsphere-server",
    ];
    let client_side = [
        "syncsphere-sync-core",
        "syncsphere-sync-client",
        "syncsphere-cli",
        "syncsphere-desktop",
        "syncsphere-e2e",
    ];
    let rules: &[(&str, &[&str])] = &[
        (
            "syncsphere-events",
            &[
                "syncsphere-db",
                "syncsphere-auth",
                "syncsphere-files",
                "syncsphere-state",
            ],
        ),
        ("syncsphere-auth", &["syncsphere-files", "syncsphere-state"]),
        ("syncsphere-files", &["syncsphere-state"]),
        ("syncsphere-state", &["syncsphere-files"]),
        ("syncsphere-sync-core", &server_internals),
        ("syncsphere-sync-client", &server_internals),
        ("syncsphere-cli", &server_internals),
        ("syncsphere-desktop", &server_internals),
        // Server test fixtures know nothing of the client (nor of the end-to-end harness,
        // which starts client processes).
        ("syncsphere-test-support", &client_side),
    ];
    let mut crossings = Vec::new();
    for (package, never) in rules {
        let reached = reaches(&graph, package);
        crossings.extend(
            never
                .iter()
                .filter(|n| reached.contains(**n))
                .map(|n| format!("{package} → {n}")),
        );
    }
    assert!(crossings.is_empty(), "boundaries crossed: {crossings:?}");
    for (package, deps) in [
        ("syncsphere-auth", "syncsphere-events"),
        ("syncsphere-files", "syncsphere-events"),
        ("syncsphere-state", "syncsphere-events"),
        ("syncsphere-state", "syncsphere-auth"),
    ] {
        assert!(graph[package].contains(deps), "{package} should use {deps}");
    }
    let on_files: Vec<&String> = graph
        .iter()
        .filter(|(_, deps)| deps.contains("syncsphere-files"))
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        on_files,
        ["syncsphere-server"],
        "only the binary depends on files"
    );
    let on_test_support: Vec<&String> = graph
        .iter()
        .filter(|(_, deps)| deps.contains("syncsphere-test-support"))
        .map(|(p, _)| p)
        .collect();
    assert!(
        on_test_support.is_empty(),
        "test fixtures are a dev-dependency only: {on_test_support:?}"
    );
}

/// rustls has one crypto provider in the build, ring (decision 0043): with aws-lc-rs compiled in
/// too, rustls cannot pick a process default and `rediss://` connections would panic unless
/// every entry point installed one first.
#[test]
fn ring_is_the_only_rustls_crypto_provider_in_the_lock_file() {
    let lock = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock"),
    )
    .expect("reading Cargo.lock");
    assert!(
        lock.contains("name = \"ring\""),
        "ring is missing from Cargo.lock"
    );
    assert!(
        !lock.contains("name = \"aws-lc-rs\""),
        "aws-lc-rs is in Cargo.lock: a dependency turned on rustls's aws-lc-rs provider"
    );
}

//! Service tests of the files service alone: its router through `tower::ServiceExt::oneshot`,
//! with the built-in identity provider (`syncsphere-auth`) signing users in — no state
//! service, no push, no devices. Each suite runs on SQLite with blobs on disk and on
//! PostgreSQL with blobs in S3 (`syncsphere_test_support::on_both_stores!`). Suites that need
//! the assembled server stay in `syncsphere-server/tests/api.rs`.

mod chunked_ids;
mod collector;
mod harness;
mod paths;
mod quotas;
mod staged;

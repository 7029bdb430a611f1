//! The two migration sets (`migrations/sqlite`, `migrations/postgres`) build the same schema:
//! the same tables, each with the same columns, and each column of the same type (through
//! [`TYPES`]), nullability and primary-key membership. A column added to one dialect only, or
//! given a type outside the mapping, fails here. Both schemas are read back from databases
//! migrated by [`Db::connect`], the server's own path; the PostgreSQL half needs
//! `SYNCSPHERE_TEST_DATABASE_URL` (skipped without it, required under `CI`).

use std::collections::BTreeMap;

use sqlx::Row;
use syncsphere_db::Db;

/// How a column type is written in each dialect: (kind, SQLite declared type, PostgreSQL
/// `information_schema.columns.data_type`). Queries are written once for both (`TEXT`,
/// 64-bit integers read as `i64`, one binary column), so these are the only pairs allowed;
/// SQLite's `INTEGER` must be PostgreSQL's `bigint`, never a 32-bit `integer`.
const TYPES: &[(&str, &str, &str)] = &[
    ("text", "TEXT", "text"),
    ("int64", "INTEGER", "bigint"),
    ("bytes", "BLOB", "bytea"),
];

/// Tables the migration tool keeps for itself.
const TOOL_TABLES: &[&str] = &["_sqlx_migrations"];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    /// A kind of [`TYPES`], or `unmapped <type>`.
    kind: String,
    nullable: bool,
    primary_key: bool,
}

/// Table → column → what it is.
type Schema = BTreeMap<String, BTreeMap<String, Column>>;

fn kind(declared: &str, dialect: usize) -> String {
    TYPES
        .iter()
        .find(|t| [t.1, t.2][dialect].eq_ignore_ascii_case(declared))
        .map_or_else(|| format!("unmapped {declared}"), |t| t.0.to_owned())
}

async fn sqlite_schema(db: &Db) -> Schema {
    let rows = sqlx::query(
        "SELECT m.name AS tbl, p.name AS col, p.type AS ty, p.\"notnull\" AS nn, p.pk AS pk
         FROM sqlite_master m, pragma_table_info(m.name) p
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for row in rows {
        let table: String = row.get("tbl");
        if TOOL_TABLES.contains(&table.as_str()) {
            continue;
        }
        let primary_key = row.get::<i64, _>("pk") != 0;
        // A SQLite primary key that is not `INTEGER PRIMARY KEY` admits NULL unless declared
        // NOT NULL; PostgreSQL's never does, and no code ever stores one.
        let nullable = row.get::<i64, _>("nn") == 0 && !primary_key;
        let column = Column {
            kind: kind(&row.get::<String, _>("ty"), 0),
            nullable,
            primary_key,
        };
        schema
            .entry(table)
            .or_default()
            .insert(row.get("col"), column);
    }
    schema
}

async fn postgres_schema(db: &Db) -> Schema {
    let keys = sqlx::query(
        "SELECT k.table_name::text AS tbl, k.column_name::text AS col
         FROM information_schema.table_constraints c
         JOIN information_schema.key_column_usage k
           ON k.constraint_name = c.constraint_name AND k.table_schema = c.table_schema
         WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = current_schema()",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let keys: Vec<(String, String)> = keys.iter().map(|r| (r.get("tbl"), r.get("col"))).collect();
    let rows = sqlx::query(
        "SELECT table_name::text AS tbl, column_name::text AS col, data_type::text AS ty,
                is_nullable::text AS nullable
         FROM information_schema.columns WHERE table_schema = current_schema()",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for row in rows {
        let (table, col): (String, String) = (row.get("tbl"), row.get("col"));
        if TOOL_TABLES.contains(&table.as_str()) {
            continue;
        }
        let column = Column {
            kind: kind(&row.get::<String, _>("ty"), 1),
            nullable: row.get::<String, _>("nullable") == "YES",
            primary_key: keys.contains(&(table.clone(), col.clone())),
        };
        schema.entry(table).or_default().insert(col, column);
    }
    schema
}

/// Every difference between the two schemas, one line each.
fn differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    let tables: std::collections::BTreeSet<&String> =
        sqlite.keys().chain(postgres.keys()).collect();
    for table in tables {
        let (Some(s), Some(p)) = (sqlite.get(table), postgres.get(table)) else {
            let only = if sqlite.contains_key(table) {
                "SQLite"
            } else {
                "PostgreSQL"
            };
            out.push(format!("table {table} exists on {only} only"));
            continue;
        };
        let columns: std::collections::BTreeSet<&String> = s.keys().chain(p.keys()).collect();
        for column in columns {
            match (s.get(column), p.get(column)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => {
                    out.push(format!("{table}.{column}: SQLite {a:?}, PostgreSQL {b:?}"))
                }
                (Some(_), None) => out.push(format!("{table}.{column} exists on SQLite only")),
                (None, _) => out.push(format!("{table}.{column} exists on PostgreSQL only")),
            }
        }
    }
    out
}

fn unmapped(schema: &Schema, dialect: &str) -> Vec<String> {
    schema
        .iter()
        .flat_map(|(t, cols)| cols.iter().map(move |(c, col)| (t, c, col)))
        .filter(|(_, _, col)| col.kind.starts_with("unmapped"))
        .map(|(t, c, col)| format!("{dialect} {t}.{c}: {} (add it to TYPES?)", col.kind))
        .collect()
}

#[tokio::test]
async fn both_dialects_migrate_to_the_same_tables_and_columns() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_schema(&Db::open_embedded(dir.path()).await.unwrap()).await;
    assert!(sqlite.contains_key("files"), "read no schema: {sqlite:?}");
    let bad = unmapped(&sqlite, "SQLite");
    assert!(bad.is_empty(), "{bad:#?}");

    let Some(url) = syncsphere_test_support::postgres_database().await else {
        return;
    };
    let db = Db::connect(&url).await.unwrap();
    let postgres = postgres_schema(&db).await;
    db.pool.close().await;
    let bad = unmapped(&postgres, "PostgreSQL");
    assert!(bad.is_empty(), "{bad:#?}");
    let diff = differences(&sqlite, &postgres);
    assert!(
        diff.is_empty(),
        "the migration sets differ:\n{}",
        diff.join("\n")
    );
}

/// The comparison itself: a column on one side only, a type or a nullability that differs.
#[test]
fn differences_name_what_one_dialect_lacks() {
    let column = |kind: &str, nullable| Column {
        kind: kind.into(),
        nullable,
        primary_key: false,
    };
    let schema = |cols: &[(&str, Column)]| -> Schema {
        [(
            "files".to_owned(),
            cols.iter()
                .map(|(n, c)| (n.to_string(), c.clone()))
                .collect(),
        )]
        .into()
    };
    let sqlite = schema(&[
        ("path", column("text", false)),
        ("size", column("int64", false)),
        ("extra", column("text", true)),
    ]);
    let postgres = schema(&[
        ("path", column("text", true)),
        ("size", column(&kind("integer", 1), false)),
    ]);
    let diff = differences(&sqlite, &postgres);
    assert_eq!(diff.len(), 3, "{diff:#?}");
    assert!(
        diff[0].starts_with("files.extra exists on SQLite only"),
        "{diff:#?}"
    );
    assert!(diff[1].starts_with("files.path: "), "{diff:#?}");
    assert!(diff[2].contains("unmapped integer"), "{diff:#?}");
    assert!(differences(&sqlite, &sqlite).is_empty());
}

//! Manifests of chunked contents: which chunks, in order, make a content.

use sqlx::Row;
use syncsphere_protocol::ChunkRef;

use super::MetadataStore;
use crate::{FilesError, now_ms};

impl MetadataStore {
    /// Records that content `sha256` of the user is the concatenation of `chunks`, just verified
    /// (idempotent). An earlier list for the content is replaced and its age restarted: its
    /// chunks may be gone by now (the collector keeps only what surviving manifests name), the
    /// new ones are there.
    pub async fn put_manifest(
        &self,
        user_id: &str,
        sha256: &str,
        size: i64,
        chunks: &[ChunkRef],
    ) -> Result<(), FilesError> {
        let mut conn = self.db.pool.acquire().await?;
        self.put_manifest_in(&mut conn, user_id, sha256, size, chunks)
            .await
    }

    /// [`Self::put_manifest`] on a given connection (a commit's transaction).
    pub(crate) async fn put_manifest_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        user_id: &str,
        sha256: &str,
        size: i64,
        chunks: &[ChunkRef],
    ) -> Result<(), FilesError> {
        let list: Vec<(String, i64)> = chunks
            .iter()
            .map(|c| (c.sha256.to_string(), c.size))
            .collect();
        sqlx::query(
            "INSERT INTO content_manifests (user_id, sha256, size, chunks, created_ms)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, sha256)
             DO UPDATE SET size = excluded.size, chunks = excluded.chunks, created_ms = excluded.created_ms",
        )
        .bind(user_id)
        .bind(sha256)
        .bind(size)
        .bind(serde_json::to_string(&list).expect("chunk lists serialise"))
        .bind(now_ms())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The chunks of a chunked content, or `None` for a content stored as one blob.
    pub async fn manifest(
        &self,
        user_id: &str,
        sha256: &str,
    ) -> Result<Option<Vec<ChunkRef>>, FilesError> {
        let row =
            sqlx::query("SELECT chunks FROM content_manifests WHERE user_id = $1 AND sha256 = $2")
                .bind(user_id)
                .bind(sha256)
                .fetch_optional(&self.db.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        parse_manifest(&row.get::<String, _>("chunks")).map(Some)
    }
}

/// A manifest's `chunks` column: a JSON array of `[chunk sha256, chunk size]`.
pub(crate) fn parse_manifest(json: &str) -> Result<Vec<ChunkRef>, FilesError> {
    let list: Vec<(String, i64)> = serde_json::from_str(json)
        .map_err(|e| FilesError::Blob(std::io::Error::other(format!("bad manifest: {e}"))))?;
    Ok(list
        .into_iter()
        .map(|(sha256, size)| ChunkRef {
            sha256: sha256.into(),
            size,
        })
        .collect())
}

//! Blobs in an S3 bucket (Amazon S3 or any S3-compatible server) through `aws-sdk-s3`.
//!
//! Keys are `{prefix}{user}/{sha256}`. Writes are conditional (`If-None-Match: *`): a blob is
//! written once and never overwritten, so two uploads of the same chunk race harmlessly.
//! Credentials come from the configuration or the standard AWS chain (environment, profile,
//! ECS task role on Fargate, instance metadata).

use std::time::SystemTime;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream as S3Bytes;
use futures_util::StreamExt;
use syncsphere_auth::BoxFuture;

use crate::FilesError;
use crate::blobs::{BlobInfo, BlobPages, BlobStore, ByteStream, StagedBlob, check_address};

/// Where the bucket is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    pub region: String,
    /// Endpoint override (S3-compatible servers, tests); `None` for Amazon S3.
    pub endpoint: Option<String>,
    /// Path-style addressing (`{endpoint}/{bucket}/{key}`), which most S3-compatible servers
    /// need.
    pub path_style: bool,
    /// Prepended to every key, e.g. `blobs/`.
    pub prefix: String,
    /// Static credentials; `None` uses the standard AWS credential chain.
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
}

pub struct S3BlobStore {
    client: Client,
    bucket: String,
    prefix: String,
}

fn s3_error(op: &str, e: impl std::error::Error) -> FilesError {
    FilesError::Blob(std::io::Error::other(format!(
        "S3 {op}: {}",
        DisplayErrorContext(e)
    )))
}

impl S3BlobStore {
    /// Connects and checks that the bucket is reachable with these credentials.
    pub async fn connect(config: &S3Config) -> Result<Self, FilesError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()));
        if let (Some(ak), Some(sk)) = (&config.access_key, &config.secret_key) {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                ak.clone(),
                sk.clone(),
                None,
                None,
                "syncsphere-config",
            ));
        }
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        // A request that stalls must end: commits check blobs while holding the collector's
        // lock shared, and a sweep's batch stats and deletes while holding it (decision 0049).
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .read_timeout(std::time::Duration::from_secs(60))
            .build();
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.path_style)
            .timeout_config(timeouts)
            .build();
        let store = S3BlobStore {
            client: Client::from_conf(s3),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
        };
        store
            .client
            .head_bucket()
            .bucket(&store.bucket)
            .send()
            .await
            .map_err(|e| s3_error(&format!("bucket '{}' is not reachable", store.bucket), e))?;
        Ok(store)
    }

    fn key(&self, user_id: &str, sha256: &str) -> Result<String, FilesError> {
        check_address(user_id, sha256)?;
        Ok(format!("{}{user_id}/{sha256}", self.prefix))
    }

    async fn head(&self, key: &str) -> Result<Option<(u64, SystemTime)>, FilesError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let size = out.content_length().unwrap_or(0).max(0) as u64;
                let modified = out
                    .last_modified()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Ok(Some((size, modified)))
            }
            Err(e) if e.as_service_error().is_some_and(|se| se.is_not_found()) => Ok(None),
            Err(e) => Err(s3_error("HeadObject", e)),
        }
    }
}

impl BlobStore for S3BlobStore {
    fn put<'a>(
        &'a self,
        user_id: &'a str,
        staged: &'a StagedBlob,
    ) -> BoxFuture<'a, Result<(), FilesError>> {
        Box::pin(async move {
            let key = self.key(user_id, &staged.sha256)?;
            if self.head(&key).await?.is_some() {
                return Ok(());
            }
            let body = S3Bytes::from_path(staged.path())
                .await
                .map_err(|e| FilesError::Blob(std::io::Error::other(e)))?;
            match self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .if_none_match("*")
                .content_length(staged.size)
                .body(body)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                // Someone stored the same content meanwhile: content-addressed, so done.
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(()),
                Err(e) => Err(s3_error("PutObject", e)),
            }
        })
    }

    fn touch<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>> {
        Box::pin(async move { self.head(&self.key(user_id, sha256)?).await })
    }

    fn stat<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, SystemTime)>, FilesError>> {
        Box::pin(async move { self.head(&self.key(user_id, sha256)?).await })
    }

    fn read<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
        start: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<ByteStream, FilesError>> {
        Box::pin(async move {
            if len == 0 {
                let empty: ByteStream = Box::pin(futures_util::stream::empty());
                return Ok(empty);
            }
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(self.key(user_id, sha256)?)
                .range(format!("bytes={start}-{}", start + len - 1))
                .send()
                .await
                .map_err(|e| s3_error("GetObject", e))?;
            let stream = futures_util::stream::unfold(out.body, |mut body| async move {
                match body.try_next().await {
                    Ok(Some(bytes)) => Some((Ok(bytes), body)),
                    Ok(None) => None,
                    Err(e) => Some((Err(std::io::Error::other(e)), body)),
                }
            });
            let stream: ByteStream = stream.boxed();
            Ok(stream)
        })
    }

    fn list(&self) -> BlobPages<'_> {
        // ListObjectsV2 pages hold at most 1,000 keys: one page of the listing each.
        let pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .into_paginator()
            .send();
        futures_util::stream::unfold(pages, move |mut pages| async move {
            let page = pages.next().await?;
            let page = match page {
                Ok(page) => page,
                Err(e) => return Some((Err(s3_error("ListObjectsV2", e)), pages)),
            };
            let mut out = Vec::with_capacity(page.contents().len());
            for obj in page.contents() {
                let Some(rest) = obj.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                let Some((user_id, sha256)) = rest.split_once('/') else {
                    continue;
                };
                if check_address(user_id, sha256).is_err() {
                    continue;
                }
                out.push(BlobInfo {
                    user_id: user_id.to_owned(),
                    sha256: sha256.to_owned(),
                    size: obj.size().unwrap_or(0).max(0) as u64,
                    modified: obj
                        .last_modified()
                        .and_then(|t| SystemTime::try_from(*t).ok())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
            Some((Ok(out), pages))
        })
        .boxed()
    }

    fn delete<'a>(
        &'a self,
        user_id: &'a str,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<(), FilesError>> {
        Box::pin(async move {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(self.key(user_id, sha256)?)
                .send()
                .await
                .map_err(|e| s3_error("DeleteObject", e))?;
            Ok(())
        })
    }

    fn touch_extends_grace(&self) -> bool {
        false
    }
}

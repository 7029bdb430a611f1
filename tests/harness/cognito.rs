//! A Cognito user pool on the emulator `scripts/test.sh` starts (moto), created through the AWS
//! API as an administrator would: the AWS-mode tests sign real clients in against it.

use serde_json::{Value, json};

/// One call of the Cognito Identity Provider JSON API (unsigned: moto does not check
/// signatures, and unsigned calls land in `us-east-1`). Panics on an error answer.
pub async fn call(moto_url: &str, op: &str, body: Value) -> Value {
    let (status, json) = try_call(moto_url, op, body).await;
    assert!(status.is_success(), "{op}: {status} {json}");
    json
}

/// One call, answered with its status and body whatever they are.
pub async fn try_call(moto_url: &str, op: &str, body: Value) -> (reqwest::StatusCode, Value) {
    amz_json(&format!("{moto_url}/"), op, body).await
}

/// One call of the Cognito Identity Provider JSON API at `url` (the emulator's, or a server's
/// built-in provider), as the AWS SDK sends it; its status and body whatever they are.
pub async fn amz_json(url: &str, op: &str, body: Value) -> (reqwest::StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            format!("AWSCognitoIdentityProviderService.{op}"),
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{op} at {url}: {e}"));
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A new user pool and a public app client with the flows the desktop app uses.
pub struct Pool {
    pub moto_url: String,
    pub id: String,
    pub client_id: String,
}

impl Pool {
    pub async fn create(moto_url: &str) -> Pool {
        let id = call(
            moto_url,
            "CreateUserPool",
            json!({"PoolName": "syncsphere-e2e", "AutoVerifiedAttributes": ["email"]}),
        )
        .await["UserPool"]["Id"]
            .as_str()
            .expect("pool id")
            .to_owned();
        let mut pool = Pool {
            moto_url: moto_url.to_owned(),
            id,
            client_id: String::new(),
        };
        pool.client_id = pool.add_client("desktop").await;
        pool
    }

    /// Another public app client of the pool; its id.
    pub async fn add_client(&self, name: &str) -> String {
        call(
            &self.moto_url,
            "CreateUserPoolClient",
            json!({"UserPoolId": self.id, "ClientName": name, "GenerateSecret": false,
                   "ExplicitAuthFlows": ["ALLOW_USER_SRP_AUTH", "ALLOW_USER_PASSWORD_AUTH",
                                         "ALLOW_REFRESH_TOKEN_AUTH"]}),
        )
        .await["UserPoolClient"]["ClientId"]
            .as_str()
            .expect("client id")
            .to_owned()
    }

    /// The pool's JWKS URL at the emulator (which serves it apart from the tokens' `iss`).
    pub fn jwks_url(&self) -> String {
        format!("{}/{}/.well-known/jwks.json", self.moto_url, self.id)
    }

    /// The server flags that make a `files`/`all` (or `state`) instance use this pool. Clients
    /// are told `USER_PASSWORD_AUTH`: moto's `USER_SRP_AUTH` is a stand-in (its `SECRET_BLOCK`
    /// is not base64 and any proof passes), so SRP is tested against the built-in provider.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--cognito-auth-flow".into(),
            "user-password-auth".into(),
            "--cognito-user-pool-id".into(),
            self.id.clone(),
            "--cognito-client-id".into(),
            self.client_id.clone(),
            "--cognito-jwks-url".into(),
            self.jwks_url(),
            "--cognito-endpoint".into(),
            self.moto_url.clone(),
        ]
    }

    /// The user's status in the pool (`UNCONFIRMED`, `CONFIRMED`, …).
    pub async fn user_status(&self, email: &str) -> String {
        call(
            &self.moto_url,
            "AdminGetUser",
            json!({"UserPoolId": self.id, "Username": email}),
        )
        .await["UserStatus"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

//! `USER_SRP_AUTH` against the built-in provider, with the `aws-cognito-srp` crate as the client
//! (whose own tests run against Amazon Cognito): the two implementations of Cognito's SRP agree,
//! a wrong password, an unknown user, a replayed or altered proof and an expired block are
//! refused alike, device keys bind the tokens, and an account from before SRP is told to use
//! `USER_PASSWORD_AUTH` once, after which SRP works for it.

use aws_cognito_srp::{SrpClient, User, UserAuthenticationParameters, VerificationParameters};

use super::*;

/// `InitiateAuth` with `USER_SRP_AUTH` and the crate's `SRP_A`: the reply, and the crate's
/// client to answer it with.
async fn initiate(
    h: &Harness,
    email: &str,
    password: &str,
    device: Option<&str>,
) -> (Reply, SrpClient<User>) {
    let srp = SrpClient::new(User::new(POOL, email, password), CLIENT_ID, None);
    let UserAuthenticationParameters { a, username } = srp.get_auth_parameters();
    let mut params = json!({"USERNAME": username, "SRP_A": a});
    if let Some(device) = device {
        params["DEVICE_KEY"] = device.into();
    }
    let r = h
        .cognito(
            "InitiateAuth",
            &json!({"AuthFlow": "USER_SRP_AUTH", "ClientId": CLIENT_ID, "AuthParameters": params})
                .to_string(),
        )
        .await;
    (r, srp)
}

/// A whole `USER_SRP_AUTH` sign-in: the answer to the proof (the tokens, or the refusal of the
/// start or of the proof).
pub(super) async fn srp_sign_in_as(h: &Harness, email: &str, password: &str) -> Reply {
    let (c, srp) = initiate(h, email, password, None).await;
    if c.status != StatusCode::OK {
        return c;
    }
    respond(h, email, &prove(&srp, &c.json)).await
}

/// The crate's proof for a `PASSWORD_VERIFIER` challenge.
fn prove(srp: &SrpClient<User>, challenge: &Value) -> VerificationParameters {
    let p = &challenge["ChallengeParameters"];
    let s = |k: &str| {
        p[k].as_str()
            .unwrap_or_else(|| panic!("no {k}: {challenge}"))
    };
    srp.verify(
        s("SECRET_BLOCK"),
        s("USER_ID_FOR_SRP"),
        s("SALT"),
        s("SRP_B"),
    )
    .unwrap()
}

async fn respond(h: &Harness, username: &str, proof: &VerificationParameters) -> Reply {
    h.cognito(
        "RespondToAuthChallenge",
        &json!({"ClientId": CLIENT_ID, "ChallengeName": "PASSWORD_VERIFIER",
                "ChallengeResponses": {
                    "USERNAME": username,
                    "PASSWORD_CLAIM_SECRET_BLOCK": proof.password_claim_secret_block,
                    "PASSWORD_CLAIM_SIGNATURE": proof.password_claim_signature,
                    "TIMESTAMP": proof.timestamp}})
        .to_string(),
    )
    .await
}

pub(super) async fn srp_sign_in(db: Option<String>) {
    let h = harness(db).await;
    let (password_token, _) = h.user("sam@example.com").await;
    let sub = claims(&password_token)["sub"].as_str().unwrap().to_owned();

    // The crate's client signs in: the challenge names the user, the proof earns tokens bound
    // to the device asked for.
    let (c, srp) = initiate(&h, "Sam@Example.com", "Password-123", Some("srp-laptop")).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.json);
    assert_eq!(c.json["ChallengeName"], "PASSWORD_VERIFIER");
    assert_eq!(
        c.json["ChallengeParameters"]["USER_ID_FOR_SRP"],
        sub.as_str()
    );
    assert_eq!(c.json["ChallengeParameters"]["USERNAME"], "sam@example.com");
    let proof = prove(&srp, &c.json);
    let r = respond(&h, "sam@example.com", &proof).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let access = r.json["AuthenticationResult"]["AccessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(r.json["AuthenticationResult"]["RefreshToken"].is_string());
    assert_eq!(claims(&access)["sub"], sub.as_str());
    assert_eq!(claims(&access)["device_key"], "srp-laptop");
    assert_eq!(h.get(&access, "/v1/files").await.status, StatusCode::OK);
    // The same proof again: refused (each challenge answers once).
    let r = respond(&h, "sam@example.com", &proof).await;
    assert_eq!(r.json["__type"], "NotAuthorizedException", "{}", r.json);

    // A wrong password, and an unknown user (a decoy challenge, indistinguishable until the
    // end): the same refusal as USER_PASSWORD_AUTH gives.
    for (email, password) in [
        ("sam@example.com", "Wrong-passw0rd"),
        ("nobody@example.com", "Password-123"),
    ] {
        let (c, srp) = initiate(&h, email, password, None).await;
        assert_eq!(c.status, StatusCode::OK, "{email}: {}", c.json);
        assert_eq!(c.json["ChallengeName"], "PASSWORD_VERIFIER");
        let r = respond(&h, email, &prove(&srp, &c.json)).await;
        assert_eq!(
            r.json["__type"], "NotAuthorizedException",
            "{email}: {}",
            r.json
        );
        assert_eq!(r.json["message"], "Incorrect username or password.");
    }
    // An altered secret block or signature, a missing parameter: refused.
    let (c, srp) = initiate(&h, "sam@example.com", "Password-123", None).await;
    let mut proof = prove(&srp, &c.json);
    proof.password_claim_signature = {
        let mut s = proof.password_claim_signature.clone().into_bytes();
        s[3] = if s[3] == b'A' { b'B' } else { b'A' };
        String::from_utf8(s).unwrap()
    };
    let r = respond(&h, "sam@example.com", &proof).await;
    assert_eq!(r.json["__type"], "NotAuthorizedException", "{}", r.json);
    let mut proof = prove(&srp, &c.json);
    proof.password_claim_secret_block = "bm90IGEgYmxvY2s=".into();
    let r = respond(&h, "sam@example.com", &proof).await;
    assert_eq!(r.json["__type"], "NotAuthorizedException", "{}", r.json);
    let r = h
        .cognito(
            "InitiateAuth",
            &json!({"AuthFlow": "USER_SRP_AUTH", "ClientId": CLIENT_ID,
                    "AuthParameters": {"USERNAME": "sam@example.com"}})
            .to_string(),
        )
        .await;
    assert_eq!(r.json["__type"], "InvalidParameterException", "{}", r.json);
    // The untouched proof of that challenge still passes.
    let r = respond(&h, "sam@example.com", &prove(&srp, &c.json)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);

    // An account from before SRP (no verifier stored): told to use USER_PASSWORD_AUTH once,
    // which stores the verifier; SRP works from then on.
    let meta_db = syncsphere_db::Db::connect(&h.database_url).await.unwrap();
    syncsphere_db::sqlx::query(
        "UPDATE idp_users SET srp_salt = NULL, srp_verifier = NULL WHERE user_id = $1",
    )
    .bind(&sub)
    .execute(&meta_db.pool)
    .await
    .unwrap();
    let (c, _) = initiate(&h, "sam@example.com", "Password-123", None).await;
    assert_eq!(c.json["__type"], "InvalidParameterException", "{}", c.json);
    assert!(
        c.json["message"]
            .as_str()
            .unwrap()
            .contains("USER_SRP_AUTH is not"),
        "{}",
        c.json
    );
    h.sign_in("sam@example.com").await;
    let (c, srp) = initiate(&h, "sam@example.com", "Password-123", None).await;
    let r = respond(&h, "sam@example.com", &prove(&srp, &c.json)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
}

//! Password guessing against the built-in provider (behind a trusted proxy that names the
//! client in `X-Forwarded-For`): five wrong passwords for one account from one address, then
//! that address waits — the right password included — while the owner elsewhere signs in; an
//! unknown account is throttled alike; SRP proofs count the same; one address is held to so
//! many sign-ins a minute over all accounts.

use syncsphere_auth::idp::throttle::{ADDRESS_ATTEMPTS_PER_MINUTE, FREE_FAILURES};

use super::srp::srp_sign_in_as;
use super::*;

pub(super) async fn password_guessing_is_slowed_per_account_and_address(db: Option<String>) {
    let h = harness_with(db, |config| {
        config.idp.client_address_header = Some("X-Forwarded-For".into());
    })
    .await;
    h.user("owner@example.com").await;
    let sign_in = |email: &str, password: &str, from: &'static str| {
        let body = json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": CLIENT_ID,
                          "AuthParameters": {"USERNAME": email, "PASSWORD": password}})
        .to_string();
        let h = &h;
        async move { h.cognito_from("InitiateAuth", &body, Some(from)).await }
    };
    let answer = |r: &Reply| {
        (
            r.json["__type"].as_str().unwrap_or("ok").to_owned(),
            r.json["message"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let wrong = (
        "NotAuthorizedException".to_owned(),
        "Incorrect username or password.".to_owned(),
    );
    let waiting = (
        "NotAuthorizedException".to_owned(),
        "Password attempts exceeded".to_owned(),
    );
    for account in ["owner@example.com", "nobody@example.com"] {
        for _ in 0..FREE_FAILURES {
            let r = sign_in(account, "Wrong-guess-1", "203.0.113.7").await;
            assert_eq!(answer(&r), wrong, "{account}");
        }
        // Now that address waits, whatever it sends — an unknown account exactly alike.
        let r = sign_in(account, "Password-123", "203.0.113.7").await;
        assert_eq!(answer(&r), waiting, "{account}: {}", r.json);
    }
    // The owner, from another address, is not locked out.
    let r = sign_in("owner@example.com", "Password-123", "203.0.113.8").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // The guesser's address may still sign in to another account.
    h.user("other@example.com").await;
    let r = sign_in("other@example.com", "Password-123", "203.0.113.7").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // The wait is short at first: a second later the right password works, and resets the count.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = sign_in("owner@example.com", "Password-123", "203.0.113.7").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = sign_in("owner@example.com", "Wrong-guess-1", "203.0.113.7").await;
    assert_eq!(answer(&r), wrong, "counting starts over");

    // SRP proofs count the same (no forwarded header here: the address is the proxy's own,
    // which the tests share as "unknown").
    for _ in 0..FREE_FAILURES {
        let r = srp_sign_in_as(&h, "other@example.com", "Wrong-guess-1").await;
        assert_eq!(answer(&r), wrong, "{}", r.json);
    }
    let r = srp_sign_in_as(&h, "other@example.com", "Password-123").await;
    assert_eq!(answer(&r), waiting, "{}", r.json);
    for _ in 0..FREE_FAILURES {
        let r = srp_sign_in_as(&h, "ghost@example.com", "Wrong-guess-1").await;
        assert_eq!(answer(&r), wrong, "{}", r.json);
    }
    let r = srp_sign_in_as(&h, "ghost@example.com", "Password-123").await;
    assert_eq!(answer(&r), waiting, "an unknown account alike: {}", r.json);

    // Spraying: one address, many accounts — held to so many a minute.
    let mut refused = None;
    for i in 0..=ADDRESS_ATTEMPTS_PER_MINUTE {
        let r = sign_in(
            &format!("spray{i}@example.com"),
            "Wrong-guess-1",
            "192.0.2.55",
        )
        .await;
        if r.json["__type"] == "TooManyRequestsException" {
            refused = Some(i);
            break;
        }
    }
    assert_eq!(
        refused,
        Some(ADDRESS_ATTEMPTS_PER_MINUTE),
        "refused after the minute's budget"
    );
    let r = sign_in("owner@example.com", "Password-123", "192.0.2.56").await;
    assert_eq!(r.status, StatusCode::OK, "another address is not affected");
}

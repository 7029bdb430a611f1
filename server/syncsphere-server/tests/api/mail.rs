//! The built-in provider with a mail relay (a real SMTP server, aiosmtpd): sign-ups confirmed by
//! a mailed code, forgotten passwords reset with one, each with Cognito's calls and exceptions;
//! wrong, used-up, expired and over-tried codes refused; unknown users answered alike, mailed
//! nothing.

use super::srp::srp_sign_in_as;
use super::*;

fn call(op: &str, body: Value) -> (String, String) {
    (op.to_owned(), body.to_string())
}

pub(super) async fn mailed_codes_confirm_sign_ups_and_reset_passwords(db: Option<String>) {
    let Some(smtp) = syncsphere_test_support::smtp() else {
        return;
    };
    let h = harness_with(db, |config| {
        config.idp.smtp_url = Some(smtp.url.clone());
        config.idp.mail_from = Some("SyncSphere <no-reply@syncsphere.test>".into());
    })
    .await;
    let send = |(op, body): (String, String)| {
        let h = &h;
        async move { h.cognito(&op, &body).await }
    };
    let exception = |r: &Reply| r.json["__type"].as_str().unwrap_or_default().to_owned();
    // Addresses of this run only: the mail server is shared by every test.
    let email = format!("mia-{}@example.com", uuid_like());
    let password = "Mailed-code-1";
    let sign_in = |email: String, password: &'static str| {
        call(
            "InitiateAuth",
            json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": CLIENT_ID,
                   "AuthParameters": {"USERNAME": email, "PASSWORD": password}}),
        )
    };
    let confirm = |email: &str, code: &str| {
        call(
            "ConfirmSignUp",
            json!({"ClientId": CLIENT_ID, "Username": email, "ConfirmationCode": code}),
        )
    };
    let other_than = |code: &str| if code == "123456" { "654321" } else { "123456" }.to_owned();

    // Sign-up: unconfirmed, the code mailed to the address (masked in the answer).
    let r = send(call(
        "SignUp",
        json!({"ClientId": CLIENT_ID, "Username": email, "Password": password,
               "UserAttributes": [{"Name": "email", "Value": email}]}),
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["UserConfirmed"], false, "{}", r.json);
    assert_eq!(r.json["CodeDeliveryDetails"]["Destination"], "m***@e***");
    assert_eq!(r.json["CodeDeliveryDetails"]["DeliveryMedium"], "EMAIL");
    let code = smtp.wait_for_code(&email, 0).await;
    let mail = smtp.messages_to(&email).pop().unwrap();
    assert!(
        mail.contains("Subject: Your SyncSphere confirmation code"),
        "{mail}"
    );
    assert!(mail.contains("no-reply@syncsphere.test"), "{mail}");
    // Not confirmed: the right password is told so, a wrong one is not.
    let r = send(sign_in(email.clone(), password)).await;
    assert_eq!(exception(&r), "UserNotConfirmedException", "{}", r.json);
    let r = send(sign_in(email.clone(), "Wrong-horse-1")).await;
    assert_eq!(exception(&r), "NotAuthorizedException", "{}", r.json);
    let r = srp_sign_in_as(&h, &email, password).await;
    assert_eq!(exception(&r), "UserNotConfirmedException", "{}", r.json);
    // A wrong code; a new one asked for too soon.
    let r = send(confirm(&email, &other_than(&code))).await;
    assert_eq!(exception(&r), "CodeMismatchException", "{}", r.json);
    let resend = call(
        "ResendConfirmationCode",
        json!({"ClientId": CLIENT_ID, "Username": email}),
    );
    let r = send(resend.clone()).await;
    assert_eq!(exception(&r), "LimitExceededException", "{}", r.json);
    // The right code confirms; it cannot be used again; signing in works, SRP too.
    let r = send(confirm(&email, &code)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = send(confirm(&email, &code)).await;
    assert_eq!(exception(&r), "NotAuthorizedException", "{}", r.json);
    let r = send(sign_in(email.clone(), password)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = srp_sign_in_as(&h, &email, password).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = send(resend).await;
    assert_eq!(
        exception(&r),
        "InvalidParameterException",
        "already confirmed"
    );

    // Forgot password: a reset code; a weak password and a wrong code are refused; the right
    // one sets the new password (and the SRP verifier): the old one stops working.
    let forgot = |email: &str| {
        call(
            "ForgotPassword",
            json!({"ClientId": CLIENT_ID, "Username": email}),
        )
    };
    let reset = |email: &str, code: &str, password: &str| {
        call(
            "ConfirmForgotPassword",
            json!({"ClientId": CLIENT_ID, "Username": email, "ConfirmationCode": code,
                   "Password": password}),
        )
    };
    let r = send(forgot(&email)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["CodeDeliveryDetails"]["Destination"], "m***@e***");
    let reset_code = smtp.wait_for_code(&email, 1).await;
    let r = send(reset(&email, &reset_code, "weak")).await;
    assert_eq!(exception(&r), "InvalidPasswordException", "{}", r.json);
    let r = send(reset(&email, &other_than(&reset_code), "Reset-horse-2")).await;
    assert_eq!(exception(&r), "CodeMismatchException", "{}", r.json);
    let r = send(reset(&email, &reset_code, "Reset-horse-2")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = send(sign_in(email.clone(), password)).await;
    assert_eq!(exception(&r), "NotAuthorizedException", "{}", r.json);
    let r = send(sign_in(email.clone(), "Reset-horse-2")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = srp_sign_in_as(&h, &email, "Reset-horse-2").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = send(reset(&email, &reset_code, "Reset-horse-3")).await;
    assert_eq!(
        exception(&r),
        "CodeMismatchException",
        "used up: {}",
        r.json
    );

    // Unknown users: the same answers, no message.
    let nobody = format!("nobody-{}@example.com", uuid_like());
    let r = send(forgot(&nobody)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["CodeDeliveryDetails"]["Destination"], "n***@e***");
    let r = send(call(
        "ResendConfirmationCode",
        json!({"ClientId": CLIENT_ID, "Username": nobody}),
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = send(confirm(&nobody, "123456")).await;
    assert_eq!(exception(&r), "CodeMismatchException", "{}", r.json);
    let r = send(reset(&nobody, "123456", "Reset-horse-2")).await;
    assert_eq!(exception(&r), "CodeMismatchException", "{}", r.json);

    // Five wrong tries void a code, the right one included; an expired code is refused.
    let tries = format!("tom-{}@example.com", uuid_like());
    let r = send(call(
        "SignUp",
        json!({"ClientId": CLIENT_ID, "Username": tries, "Password": password}),
    ))
    .await;
    assert_eq!(r.json["UserConfirmed"], false, "{}", r.json);
    let code = smtp.wait_for_code(&tries, 0).await;
    for _ in 0..syncsphere_auth::idp::MAX_ATTEMPTS {
        let r = send(confirm(&tries, &other_than(&code))).await;
        assert_eq!(exception(&r), "CodeMismatchException", "{}", r.json);
    }
    let r = send(confirm(&tries, &code)).await;
    assert_eq!(exception(&r), "LimitExceededException", "{}", r.json);
    let r = send(forgot(&tries)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let reset_code = smtp.wait_for_code(&tries, 1).await;
    let meta_db = syncsphere_db::Db::connect(&h.database_url).await.unwrap();
    syncsphere_db::sqlx::query("UPDATE idp_codes SET expires_ms = 1 WHERE purpose = 'reset'")
        .execute(&meta_db.pool)
        .await
        .unwrap();
    let r = send(reset(&tries, &reset_code, "Reset-horse-2")).await;
    assert_eq!(exception(&r), "ExpiredCodeException", "{}", r.json);
    // Nothing else reached either address.
    assert_eq!(smtp.messages_to(&email).len(), 2);
    assert_eq!(smtp.messages_to(&tries).len(), 2);
    assert!(smtp.messages_to(&nobody).is_empty());
}

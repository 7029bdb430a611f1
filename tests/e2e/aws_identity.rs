//! End to end, AWS mode's identity: the real server configured with a Cognito user pool (moto's,
//! created through the AWS API), and two real `syncsphere` clients that sign up at the pool,
//! confirm the account with the code step, sign in and sync through the server — the same
//! client code path as against Amazon Cognito. (moto accepts any confirmation code and has no
//! `ResendConfirmationCode`; the code's checking is the pool's, not ours.)

use std::time::Duration;

use syncsphere_e2e::cognito::Pool;
use syncsphere_e2e::output_text as text;
use syncsphere_e2e::{Device, Server, same_bytes, wait_for};

/// A password the pool's default policy accepts (length, upper, lower, digit, symbol).
const POOL_PASSWORD: &str = "Correct-horse-9";
const SETTLE: Duration = Duration::from_secs(20);

fn device(name: &str, password: &str) -> Device {
    Device::with_password(name, password).expect("device")
}

/// A new pool at the emulator (none without one) and a server configured with it.
async fn pool_and_server() -> Option<(syncsphere_test_support::Moto, Pool, Server)> {
    let moto = syncsphere_test_support::moto()?;
    let pool = Pool::create(&moto.url).await;
    let args = pool.server_args();
    let server = Server::start_with(None, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .expect("server starts with the pool");
    Some((moto, pool, server))
}

/// `confirm-signup` with the code the emulator accepts; succeeds.
fn confirm(device: &Device, server: &Server, email: &str) {
    let out = device.run(&with_code("confirm-signup", server, email));
    assert!(out.status.success(), "{}", text(&out));
}

/// `verb --server URL --email E --code C` with the code the emulator accepts (any).
fn with_code<'a>(verb: &'a str, server: &'a Server, email: &'a str) -> [&'a str; 7] {
    [
        verb,
        "--server",
        &server.url,
        "--email",
        email,
        "--code",
        "123456",
    ]
}

#[tokio::test]
async fn two_devices_sign_up_confirm_sign_in_and_sync_through_a_cognito_pool() {
    let Some((moto, pool, server)) = pool_and_server().await else {
        return;
    };
    let email = "ada@example.com";

    // The pool's password policy is the pool's: a weak password is refused, nothing created.
    let weak = device("weak", "password");
    let out = weak.account("signup", &server, email).unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("password is not accepted"),
        "{}",
        text(&out)
    );

    // Sign-up at the pool: created, not confirmed; the CLI says how to finish (no terminal).
    let a = device("laptop", POOL_PASSWORD);
    let out = a.account("signup", &server, email).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("confirmation code was sent")
            && text(&out).contains("syncsphere confirm-signup"),
        "{}",
        text(&out)
    );
    assert_eq!(pool.user_status(email).await, "UNCONFIRMED");
    let out = a.account("login", &server, email).unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("not confirmed yet"), "{}", text(&out));

    // The code step confirms and signs in; the client keeps the pool's settings.
    confirm(&a, &server, email);
    assert_eq!(pool.user_status(email).await, "CONFIRMED");
    let cognito = &a.config()["cognito"];
    assert_eq!(cognito["endpoint"], moto.url);
    assert_eq!(cognito["user_pool_id"], pool.id);
    assert_eq!(cognito["client_id"], pool.client_id);
    assert_eq!(cognito["device_keys"], false);

    // A second device signs in at the pool; a wrong password is the pool's refusal.
    let b = device("desktop", POOL_PASSWORD);
    let wrong = device("desktop", "Wrong-horse-9");
    let out = wrong.account("login", &server, email).unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Incorrect email or password"),
        "{}",
        text(&out)
    );
    b.login(&server, email);

    // Both sync through the server, which verifies the pool's tokens on REST and push.
    std::fs::create_dir_all(&a.folder).unwrap();
    std::fs::write(a.path("from-laptop.txt"), b"written on the laptop").unwrap();
    let mut pa = a.start_sync().unwrap();
    let mut pb = b.start_sync().unwrap();
    assert!(
        wait_for(SETTLE, || same_bytes(&a, &b, "from-laptop.txt")).is_some(),
        "laptop -> desktop\n{}\n{}",
        a.log(),
        b.log()
    );
    assert!(
        wait_for(SETTLE, || a.is_up_to_date() && b.is_up_to_date()).is_some(),
        "both connected (push) and up to date\n{}\n{}",
        a.log(),
        b.log()
    );
    std::fs::write(b.path("from-desktop.txt"), b"written on the desktop").unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || same_bytes(
            &a,
            &b,
            "from-desktop.txt"
        ))
        .is_some(),
        "desktop -> laptop by push\n{}\n{}",
        a.log(),
        b.log()
    );

    // Unlink the laptop, from the desktop. The pool knows nothing of it, but the laptop's
    // sign-in session was bound to its device when it registered (0038): its tokens, and the
    // ones the pool refreshes for that session afterwards, are refused; its sync stops by
    // itself; it signs in again as a new device.
    let a_id = a.config()["device_id"].as_str().unwrap().to_owned();
    let a_refresh = a.session()["refresh_token"]
        .as_str()
        .expect("a refresh token in the session")
        .to_owned();
    let out = b.run(&["revoke-device", &a_id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        pa.wait_exit(SETTLE).is_some(),
        "the laptop's sync did not stop\n{}",
        a.log()
    );
    assert_eq!(a.status().unwrap()["error_kind"], "device_revoked");
    let (status, refreshed) = syncsphere_e2e::cognito::try_call(
        &moto.url,
        "InitiateAuth",
        serde_json::json!({
            "AuthFlow": "REFRESH_TOKEN_AUTH",
            "ClientId": pool.client_id,
            "AuthParameters": { "REFRESH_TOKEN": a_refresh },
        }),
    )
    .await;
    assert!(status.is_success(), "the pool refreshes still: {refreshed}");
    let stolen = refreshed["AuthenticationResult"]["AccessToken"]
        .as_str()
        .unwrap();
    let r = reqwest::Client::new()
        .get(format!("{}/v1/files", server.url))
        .bearer_auth(stolen)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "device_revoked", "{body}");
    a.login(&server, email);
    assert_ne!(a.config()["device_id"], a_id.as_str(), "a new device");
    let mut pa = a.start_sync().unwrap();
    std::fs::write(a.path("after-unlink.txt"), b"the laptop again").unwrap();
    assert!(
        wait_for(SETTLE, || same_bytes(&a, &b, "after-unlink.txt")).is_some(),
        "the laptop, signed in again, syncs\n{}\n{}",
        a.log(),
        b.log()
    );

    // Sign out of all devices, from the desktop: the server refuses every earlier token of the
    // user at once (the pool alone could not make it), the pool revokes the refresh tokens
    // (`GlobalSignOut`), both syncs stop by themselves, and signing in again works.
    let old_token = a.access_token();
    let old_refresh = a.session()["refresh_token"]
        .as_str()
        .expect("a refresh token in the session")
        .to_owned();
    let out = b.run(&["logout", "--everywhere"]);
    assert!(out.status.success(), "{}", text(&out));
    for (device, process) in [(&a, &mut pa), (&b, &mut pb)] {
        assert!(
            process.wait_exit(SETTLE).is_some(),
            "{}'s sync did not stop\n{}",
            device.name,
            device.log()
        );
        let status = device.status().unwrap();
        assert_eq!(status["error_kind"], "signed_out", "{status}");
    }
    let r = reqwest::Client::new()
        .get(format!("{}/v1/files", server.url))
        .bearer_auth(&old_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "signed_out", "{body}");
    let (status, refused) = syncsphere_e2e::cognito::try_call(
        &moto.url,
        "InitiateAuth",
        serde_json::json!({
            "AuthFlow": "REFRESH_TOKEN_AUTH",
            "ClientId": pool.client_id,
            "AuthParameters": { "REFRESH_TOKEN": old_refresh },
        }),
    )
    .await;
    assert!(!status.is_success(), "the pool still refreshes: {refused}");
    a.login(&server, email);
    let _pa = a.start_sync().unwrap();
    assert!(
        wait_for(SETTLE, || a.is_up_to_date()).is_some(),
        "signed in again\n{}",
        a.log()
    );
}

/// The pool's password flows, through the CLI: a forgotten password is reset with the code the
/// pool sends (`reset-password`), and an account an administrator created with a temporary
/// password (`AdminCreateUser`) is asked for a new one at its first `login`.
#[tokio::test]
async fn a_forgotten_password_is_reset_and_a_temporary_one_replaced() {
    let Some((moto, pool, server)) = pool_and_server().await else {
        return;
    };

    // Forgot password: a code is sent; with it and a new password, the account signs in.
    let email = "grace@example.com";
    let a = device("laptop", POOL_PASSWORD);
    a.account("signup", &server, email).unwrap();
    confirm(&a, &server, email);
    let out = a.run(&["reset-password", "--server", &server.url, "--email", email]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("A code to reset the password was sent")
            && text(&out).contains("--code CODE"),
        "{}",
        text(&out)
    );
    let mut reset = device("laptop-reset", POOL_PASSWORD);
    reset
        .env
        .push(("SYNCSPHERE_NEW_PASSWORD".into(), "Reset-horse-7".into()));
    let reset_args = with_code("reset-password", &server, email);
    // (moto's ConfirmForgotPassword does not apply the pool's password policy: not checked.)
    let out = reset.run(&reset_args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Password reset; signed in"),
        "{}",
        text(&out)
    );
    let out = a.account("login", &server, email).unwrap();
    assert!(!out.status.success(), "the old password still works");
    device("desktop", "Reset-horse-7").login(&server, email);
    // Signed in, the password is changed with the current one.
    let mut change = device("laptop-reset", "Reset-horse-7");
    change.config_dir = reset.config_dir.clone();
    change
        .env
        .push(("SYNCSPHERE_NEW_PASSWORD".into(), "Changed-horse-3".into()));
    let out = change.run(&["change-password"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Password changed."), "{}", text(&out));
    device("third", "Changed-horse-3").login(&server, email);

    // A temporary password from the administrator: the first login asks for a new one.
    let temp_email = "hopper@example.com";
    syncsphere_e2e::cognito::call(
        &moto.url,
        "AdminCreateUser",
        serde_json::json!({
            "UserPoolId": pool.id,
            "Username": temp_email,
            "TemporaryPassword": "Temp-0rary!",
            "MessageAction": "SUPPRESS",
            "UserAttributes": [{ "Name": "email", "Value": temp_email }],
        }),
    )
    .await;
    assert_eq!(pool.user_status(temp_email).await, "FORCE_CHANGE_PASSWORD");
    let b = device("new-hire", "Temp-0rary!");
    let out = b.account("login", &server, temp_email).unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("needs a new password")
            && text(&out).contains("SYNCSPHERE_NEW_PASSWORD"),
        "{}",
        text(&out)
    );
    let mut b = b;
    b.env
        .push(("SYNCSPHERE_NEW_PASSWORD".into(), "Chosen-horse-5".into()));
    let out = b.account("login", &server, temp_email).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("New password set."), "{}", text(&out));
    assert_eq!(pool.user_status(temp_email).await, "CONFIRMED");
    device("second", "Chosen-horse-5").login(&server, temp_email);
}

/// The same client steps against the built-in provider once it has a mail relay (aiosmtpd,
/// a real SMTP server): `signup` is confirmed with the mailed code, a wrong code is refused,
/// `reset-password` resets with the mailed code — what self-hosters get without a pool.
#[tokio::test]
async fn the_built_in_provider_mails_the_codes_of_sign_up_and_password_reset() {
    let Some(smtp) = syncsphere_test_support::smtp() else {
        return;
    };
    let server = Server::start_with(
        None,
        &[
            "--smtp-url",
            &smtp.url,
            "--mail-from",
            "SyncSphere <no-reply@syncsphere.test>",
        ],
    )
    .expect("server starts with a mail relay");
    let email = format!("ida-{}@example.com", std::process::id());
    let a = device("laptop", POOL_PASSWORD);
    let out = a.account("signup", &server, &email).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("confirmation code was sent") && text(&out).contains("i***@e***"),
        "{}",
        text(&out)
    );
    let out = a.account("login", &server, &email).unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("not confirmed yet"), "{}", text(&out));
    let code = smtp.wait_for_code(&email, 0).await;
    let confirm_with = |code: &str| {
        a.run(&[
            "confirm-signup",
            "--server",
            &server.url,
            "--email",
            &email,
            "--code",
            code,
        ])
    };
    let wrong = if code == "123456" { "654321" } else { "123456" };
    let out = confirm_with(wrong);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not the one that was sent"),
        "{}",
        text(&out)
    );
    let out = confirm_with(&code);
    assert!(out.status.success(), "{}", text(&out));
    let _pa = a.start_sync().unwrap();
    assert!(
        wait_for(SETTLE, || a.is_up_to_date()).is_some(),
        "confirmed and syncing\n{}",
        a.log()
    );

    // Forgot password: the code arrives by mail; with it, a new password; the old one is void.
    let out = a.run(&["reset-password", "--server", &server.url, "--email", &email]);
    assert!(out.status.success(), "{}", text(&out));
    let reset_code = smtp.wait_for_code(&email, 1).await;
    let mut reset = device("laptop-reset", POOL_PASSWORD);
    reset
        .env
        .push(("SYNCSPHERE_NEW_PASSWORD".into(), "Reset-horse-7".into()));
    let out = reset.run(&[
        "reset-password",
        "--server",
        &server.url,
        "--email",
        &email,
        "--code",
        &reset_code,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Password reset; signed in"),
        "{}",
        text(&out)
    );
    let out = device("desktop", POOL_PASSWORD)
        .account("login", &server, &email)
        .unwrap();
    assert!(!out.status.success(), "the old password still works");
    device("desktop", "Reset-horse-7").login(&server, &email);
}

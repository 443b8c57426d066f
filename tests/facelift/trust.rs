//! What a lock is judged by: access that ends when an administrator says so, and attempt
//! limits that an attacker cannot multiply with addresses, races or a shared address.
//! person01 (img4 logs in) and person05 (img14, an administrator) are enrolled; img38 is a
//! stranger.

use std::sync::Arc;

use facelift::clock::{Clock, ManualClock};
use facelift::store::{AuditKind, AuditOutcome, Disabled};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::read_photo;
use crate::http::{AppOptions, TestApp, spawn_app_with};

/// A browser of its own (its own cookies), sending as `address` through the trusted proxy.
struct Browser {
    client: reqwest::Client,
    address: String,
    csrf: Option<String>,
}

impl Browser {
    fn new(address: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .expect("client"),
            address: address.to_string(),
            csrf: None,
        }
    }

    async fn log_in(&mut self, app: &TestApp, photo: &str) -> (StatusCode, Value) {
        let form = Form::new().part("frame", Part::bytes(read_photo(photo)).file_name("f.jpg"));
        let response = self
            .client
            .post(format!("{}/api/v1/login", app.base))
            .header("x-forwarded-for", &self.address)
            .multipart(form)
            .send()
            .await
            .expect("login");
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        if status == StatusCode::OK {
            self.csrf = body["csrf_token"].as_str().map(str::to_string);
        }
        (status, body)
    }

    async fn send(&self, method: reqwest::Method, url: String, body: Option<Value>) -> StatusCode {
        let mut request = self
            .client
            .request(method, url)
            .header("x-forwarded-for", &self.address);
        if let Some(token) = &self.csrf {
            request = request.header(facelift::web::CSRF_HEADER, token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request").status()
    }

    async fn me(&self, app: &TestApp) -> StatusCode {
        self.send(
            reqwest::Method::GET,
            format!("{}/api/v1/me", app.base),
            None,
        )
        .await
    }

    async fn set_face_login(&self, app: &TestApp, person: &str, enabled: bool) -> StatusCode {
        let url = format!("{}/api/v1/admin/people/{person}/login", app.base);
        self.send(
            reqwest::Method::PUT,
            url,
            Some(json!({ "enabled": enabled })),
        )
        .await
    }
}

/// The app behind a trusted proxy on loopback (so `x-forwarded-for` names the address), on a
/// clock moved by hand.
async fn app_with(clock: &ManualClock, change: impl FnOnce(&mut facelift::Settings)) -> TestApp {
    let mut options = AppOptions {
        clock: Some(Arc::new(clock.clone())),
        device: None,
        ..AppOptions::default()
    };
    options.settings.web.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    change(&mut options.settings);
    spawn_app_with(options).await
}

fn clock() -> ManualClock {
    ManualClock::starting_at(1_800_000_000)
}

#[tokio::test]
async fn disabling_or_removing_a_person_ends_their_sessions_and_refuses_their_logins() {
    let clock = clock();
    let app = app_with(&clock, |_| {}).await;
    let mut resident = Browser::new("198.51.100.1");
    let mut admin = Browser::new("198.51.100.2");
    assert_eq!(resident.log_in(&app, "img4.jpg").await.0, StatusCode::OK);
    assert_eq!(admin.log_in(&app, "img14.jpg").await.0, StatusCode::OK);
    assert_eq!(resident.me(&app).await, StatusCode::OK);
    let mut stream = resident
        .client
        .get(format!("{}/api/v1/lift/events", app.base))
        .header("x-forwarded-for", &resident.address)
        .send()
        .await
        .expect("event stream");
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(
        stream.chunk().await.expect("read").is_some(),
        "the first event"
    );

    assert_eq!(
        admin.set_face_login(&app, "person01", false).await,
        StatusCode::OK
    );
    assert_eq!(
        resident.me(&app).await,
        StatusCode::UNAUTHORIZED,
        "ended at once"
    );
    // the open event stream ends within its check interval (5 s)
    let ended = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        while stream.chunk().await.expect("read").is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream of a disabled person ends");
    let (status, body) = resident.log_in(&app, "img4.jpg").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("login_disabled")),
        "{body}"
    );
    let log = app.store.recent_audit(AuditKind::Login, 1).expect("audit");
    assert_eq!(log[0].outcome, AuditOutcome::LoginDisabled);

    assert_eq!(
        admin.set_face_login(&app, "person01", true).await,
        StatusCode::OK
    );
    assert_eq!(resident.log_in(&app, "img4.jpg").await.0, StatusCode::OK);

    let removed = admin
        .send(
            reqwest::Method::DELETE,
            format!("{}/api/v1/admin/people/person01", app.base),
            None,
        )
        .await;
    assert_eq!(removed, StatusCode::OK);
    assert_eq!(
        resident.me(&app).await,
        StatusCode::UNAUTHORIZED,
        "ended at once"
    );
    let moved = resident
        .send(
            reqwest::Method::POST,
            format!("{}/api/v1/lift/move", app.base),
            Some(json!({"floor": 2})),
        )
        .await;
    assert_eq!(moved, StatusCode::UNAUTHORIZED);
    assert_eq!(
        resident.log_in(&app, "img4.jpg").await.0,
        StatusCode::UNAUTHORIZED,
        "no longer recognised"
    );
}

#[tokio::test]
async fn administrator_rights_come_from_the_current_settings_not_from_the_session() {
    // the session store's expiry is in real time, and the second app's session cleaner reads
    // its clock at start: a clock in the future would clean the session away
    let clock = ManualClock::starting_at(facelift::clock::SystemClock.now());
    let mut admin = Browser::new("198.51.100.2");
    let before = app_with(&clock, |_| {}).await;
    assert_eq!(admin.log_in(&before, "img14.jpg").await.0, StatusCode::OK);
    let people = format!("{}/api/v1/people", before.base);
    assert_eq!(
        admin.send(reqwest::Method::GET, people, None).await,
        StatusCode::OK
    );
    // the same database, restarted without person05 in web.admins: the session still works,
    // but no longer as an administrator
    let shared = Arc::clone(&before.store);
    let after = spawn_app_with({
        let mut options = AppOptions {
            clock: Some(Arc::new(clock.clone())),
            store: Some(shared),
            device: None,
            ..AppOptions::default()
        };
        options.settings.web.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
        options.settings.web.admins = Vec::new();
        options
    })
    .await;
    let me = admin
        .client
        .get(format!("{}/api/v1/me", after.base))
        .send()
        .await
        .expect("me");
    assert_eq!(
        me.status(),
        StatusCode::OK,
        "the session goes on: {:?}",
        me.text().await
    );
    let people = format!("{}/api/v1/people", after.base);
    assert_eq!(
        admin.send(reqwest::Method::GET, people, None).await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn failures_from_many_addresses_meet_one_ceiling() {
    let clock = clock();
    let app = app_with(&clock, |_| {}).await;
    let mut evaluated = 0;
    let mut refused = 0;
    for address in 0..20 {
        let mut stranger = Browser::new(&format!("203.0.113.{address}"));
        for _ in 0..5 {
            match stranger.log_in(&app, "img38.jpg").await.0 {
                StatusCode::UNAUTHORIZED => evaluated += 1,
                StatusCode::TOO_MANY_REQUESTS => refused += 1,
                other => panic!("unexpected {other}"),
            }
        }
    }
    assert_eq!(
        (evaluated, refused),
        (30, 70),
        "30 failed matches a minute across all addresses (web.login_failures_per_minute)"
    );
    // a minute later there is room again
    clock.advance(60);
    let mut resident = Browser::new("203.0.113.99");
    assert_eq!(resident.log_in(&app, "img4.jpg").await.0, StatusCode::OK);
}

#[tokio::test]
async fn simultaneous_tries_from_one_address_are_held_to_its_limit() {
    let clock = clock();
    let app = app_with(&clock, |_| {}).await;
    let tries = (0..16).map(|_| {
        let app = &app;
        async move { Browser::new("203.0.113.7").log_in(app, "img38.jpg").await.0 }
    });
    let statuses = futures_util::future::join_all(tries).await;
    let evaluated = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    // refused by the attempt limit, or before that by the address's share of the engine's
    // waiting room (503, its upload unread)
    let refused = statuses
        .iter()
        .filter(|s| {
            [
                StatusCode::TOO_MANY_REQUESTS,
                StatusCode::SERVICE_UNAVAILABLE,
            ]
            .contains(s)
        })
        .count();
    assert!(evaluated <= 5, "{evaluated} evaluated: {statuses:?}");
    assert_eq!(evaluated + refused, 16, "{statuses:?}");
}

#[tokio::test]
async fn a_stranger_failing_on_a_shared_address_does_not_lock_out_a_resident_who_logged_in_there() {
    let clock = clock();
    let app = app_with(&clock, |_| {}).await;
    let kiosk = "192.0.2.10";
    let mut resident = Browser::new(kiosk);
    assert_eq!(resident.log_in(&app, "img4.jpg").await.0, StatusCode::OK);

    let mut stranger = Browser::new(kiosk);
    for _ in 0..5 {
        assert_eq!(
            stranger.log_in(&app, "img38.jpg").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        stranger.log_in(&app, "img38.jpg").await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "the stranger waits"
    );
    assert_eq!(
        resident.log_in(&app, "img4.jpg").await.0,
        StatusCode::OK,
        "the resident's browser is limited on its own"
    );
    // a browser that never logged in here cannot be told from the stranger: it waits too
    let mut newcomer = Browser::new(kiosk);
    assert_eq!(
        newcomer.log_in(&app, "img14.jpg").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn failures_near_a_person_make_them_wait_then_turn_their_face_login_off() {
    let clock = clock();
    // every failed attempt counts against the closest person, so that a stranger's photo
    // stands in for a near miss; the client and ceiling limits are out of the way
    let app = app_with(&clock, |settings| {
        settings.web.near_miss_similarity = Some(-1.0);
        settings.web.login_failures_before_wait = 1_000;
        settings.web.login_failures_per_minute = 1_000;
        settings.web.admins = vec!["person01".into(), "person05".into()];
        // 50 attempts 30 s apart outlast the default inactivity limit
        settings.web.session_inactivity_secs = 24 * 3600;
    })
    .await;
    let mut attacker = Browser::new("203.0.113.50");
    assert_eq!(
        attacker.log_in(&app, "img38.jpg").await.0,
        StatusCode::UNAUTHORIZED
    );
    let detail = app.store.recent_audit(AuditKind::Login, 1).expect("audit")[0]
        .detail
        .clone()
        .expect("the near miss is named");
    let (target, genuine, other, other_photo) = if detail.contains("near person01") {
        ("person01", "img4.jpg", "person05", "img14.jpg")
    } else {
        ("person05", "img14.jpg", "person01", "img4.jpg")
    };
    let mut admin = Browser::new("198.51.100.2");
    assert_eq!(admin.log_in(&app, other_photo).await.0, StatusCode::OK);

    for _ in 1..5 {
        attacker.log_in(&app, "img38.jpg").await;
    }
    let mut owner = Browser::new("198.51.100.3");
    let (status, body) = owner.log_in(&app, genuine).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "after 5 in a row even {target} waits: {body}"
    );
    let log = app.store.recent_audit(AuditKind::Login, 1).expect("audit");
    assert_eq!(log[0].outcome, AuditOutcome::PersonWait);
    assert_eq!(
        attacker.log_in(&app, "img38.jpg").await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "the attacker too"
    );

    // 30 s apart, up to 50 in a row: then face login is off for them
    for _ in 5..50 {
        clock.advance(30);
        assert_eq!(
            attacker.log_in(&app, "img38.jpg").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let standing = app.store.standing(target).expect("standing");
    assert_eq!(standing.disabled, Some(Disabled::AfterFailures));
    assert_eq!(app.store.standing(other).expect("s").failures_in_a_row, 0);
    clock.advance(30);
    let (status, body) = owner.log_in(&app, genuine).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("login_disabled"))
    );
    assert_eq!(
        admin.me(&app).await,
        StatusCode::OK,
        "others are not affected"
    );
    assert_eq!(
        admin.set_face_login(&app, target, true).await,
        StatusCode::OK
    );
    assert_eq!(owner.log_in(&app, genuine).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_stranger_far_from_everyone_counts_against_no_one() {
    let clock = clock();
    let app = app_with(&clock, |settings| {
        settings.web.login_failures_before_wait = 1_000;
    })
    .await;
    let mut stranger = Browser::new("203.0.113.60");
    for _ in 0..10 {
        stranger.log_in(&app, "img38.jpg").await;
    }
    let best = app.store.recent_audit(AuditKind::Login, 1).expect("audit")[0]
        .similarity
        .expect("a similarity");
    assert!(best < 0.35, "img38 is far from everyone: {best}");
    for person in ["person01", "person05"] {
        assert_eq!(app.store.standing(person).expect("s").failures_in_a_row, 0);
    }
}

/// With PAD on, a frame of a person that PAD refuses counts against that person (it may be
/// their photo held up), and their face login goes off after 100 in a row, not 50.
#[tokio::test]
async fn refusals_by_pad_count_against_the_person_shown_and_turn_their_login_off_after_100() {
    let clock = clock();
    let app = app_with(&clock, |settings| {
        settings.pad = facelift::config::PadMode::Passive;
        // every frame refused by PAD: a liveness score cannot reach 1.01
        settings.web.liveness_min = 1.01;
        settings.web.login_failures_before_wait = 1_000;
        settings.web.login_failures_per_minute = 1_000;
        settings.web.session_inactivity_secs = 24 * 3600;
    })
    .await;
    let mut attacker = Browser::new("203.0.113.70");
    for attempt in 1..=100 {
        clock.advance(30);
        let (status, body) = attacker.log_in(&app, "img4.jpg").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("pad_refused")),
            "attempt {attempt}"
        );
        let standing = app.store.standing("person01").expect("standing");
        assert_eq!(standing.failures_in_a_row, attempt);
        assert_eq!(
            standing.disabled.is_some(),
            attempt == 100,
            "after {attempt} in a row"
        );
    }
    let entry = &app.store.recent_audit(AuditKind::Login, 1).expect("audit")[0];
    assert_eq!(entry.outcome, AuditOutcome::PadRefused);
    assert!(
        entry
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("pad=passive") && d.ends_with("refused=not_live")),
        "{:?}",
        entry.detail
    );
    clock.advance(30);
    let (status, body) = Browser::new("198.51.100.9").log_in(&app, "img4.jpg").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("login_disabled"))
    );
}

/// With the challenge, a resident who never logged in at a shared address still passes there
/// after a stranger made it wait: a live attempt from a waiting address is decided on
/// probation, a few a minute, which is all the stranger gains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_challenge_a_resident_passes_at_an_address_a_stranger_made_wait() {
    use crate::challenge::{ask_challenge, cookie_client, person01_by_yaw, send_burst, turns_of};
    // ten seconds into a minute: the probation budget counts per minute of this clock, which
    // also moves with real time, so the test must not cross into the next minute
    let clock = ManualClock::starting_at(1_800_000_010);
    let app = app_with(&clock, |settings| {
        settings.pad = facelift::config::PadMode::Challenge;
    })
    .await;
    let stranger = cookie_client();
    let still = vec![read_photo("img38.jpg"); 3];
    let try_stranger = async || {
        let challenge = ask_challenge(&app, &stranger).await;
        let nonce = challenge["nonce"].as_str().expect("nonce").to_string();
        send_burst(&app, &stranger, &nonce, still.clone()).await.0
    };
    for _ in 0..5 {
        assert_eq!(try_stranger().await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        try_stranger().await,
        StatusCode::UNAUTHORIZED,
        "decided on probation, not refused with 429"
    );

    let resident = cookie_client();
    let challenge = ask_challenge(&app, &resident).await;
    let order =
        facelift::access::pad_eval::turn_order(&person01_by_yaw(), &turns_of(&challenge), false);
    let frames = order.iter().map(|name| read_photo(name)).collect();
    let nonce = challenge["nonce"].as_str().expect("nonce");
    let (status, body) = send_burst(&app, &resident, nonce, frames).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // the stranger's live attempts while the address waits are few: at most a minute's
    // probation (some of it was used above, how much depends on which attempt first found the
    // address waiting), then 429
    let mut decided = 0;
    let last = loop {
        let status = try_stranger().await;
        if status != StatusCode::UNAUTHORIZED {
            break status;
        }
        decided += 1;
        assert!(
            decided <= facelift::access::PROBATION_PER_MINUTE,
            "unbounded: {decided} decided while the address waits"
        );
    };
    assert_eq!(
        last,
        StatusCode::TOO_MANY_REQUESTS,
        "after {decided} decided"
    );
}

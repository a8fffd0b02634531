//! The web view in a real browser (headless Chromium through WebDriver): sign in with a token,
//! an environment's timeline with a deploy, an alert and CloudTrail changes, filters, an item,
//! an alert's suspects, a deploy arriving live, the connections' import status, the keyboard,
//! sign-out, and a deleted token's session ending. Every page is audited (no console error, no
//! request elsewhere, every control labelled) and photographed under `target/web-view/`.
//! Without a browser: the session's cookie, CSRF and headers, over plain HTTP.

use std::time::Duration;

use fantoccini::Locator;
use serde_json::{json, Value};
use test_support::browser::Browser;
use test_support::Backend;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use worker::Importer;

use crate::importer::{setup, test_settings, Setup};

on_both_backends!(the_web_view_in_a_browser, sessions_cookies_csrf_and_headers_over_http,);

const WAIT: Duration = Duration::from_secs(10);

/// Waits until the browser shows the page at `path`, loaded.
async fn arrive(browser: &Browser, path: &str) {
    let script = format!("return location.pathname === {path:?} && document.readyState === 'complete';");
    browser.wait_for(&format!("the page {path}"), &script, WAIT).await;
}

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// A deploy, an alert after it, and real CloudTrail changes imported by the importer; the alert.
async fn a_busy_environment(s: &Setup) -> Value {
    let t = s.token.as_str();
    let now = OffsetDateTime::now_utc();
    // Real write records, a second apart.
    let records = crate::push::recent_changes(30, 0);
    test_support::seed(
        &s.standin.standin,
        "222222222222",
        "us-east-1",
        &records,
        now - time::Duration::minutes(20),
        |_| time::Duration::ZERO,
    );
    Importer::new(s.app.db.store.clone(), s.aws.clone(), test_settings()).run_due_jobs_once().await;
    let deploy = json!({"environment": "production", "service": "checkout-api", "version": "v43", "status": "succeeded",
                        "started_at": at(now - time::Duration::minutes(6)), "actor": "alice"});
    let (status, answer) = s.app.post("/v1/deploys", t, deploy).await;
    assert_eq!(status, 201, "{answer}");
    let alert = json!({"environment": "production", "title": "checkout latency above 2 s", "severity": "critical",
                       "status": "triggered", "started_at": at(now - time::Duration::minutes(1)), "source": "pagerduty",
                       "service": "checkout-api"});
    let (status, alert) = s.app.post("/v1/alerts", t, alert).await;
    assert_eq!(status, 201, "{alert}");
    alert
}

async fn the_web_view_in_a_browser(backend: Backend) {
    const TEST: &str = "the_web_view_in_a_browser";
    let Some(s) = setup(backend).await else { return test_support::skipped(TEST) };
    let Some(browser) = Browser::start(TEST).await else { return };
    let alert = a_busy_environment(&s).await;
    let origin = s.app.base_url.clone();
    let c = &browser.client;
    let shot = |name: &str| format!("{}-{name}", if backend == Backend::Sqlite { "sqlite" } else { "postgres" });
    let audited = |page: &'static str| {
        let browser = &browser;
        let origin = origin.clone();
        async move {
            let problems = browser.audit(&origin).await;
            assert!(problems.is_empty(), "the {page} page: {problems:#?}");
        }
    };

    // Not signed in: the view sends the browser to the sign-in page.
    c.goto(&s.app.url("/ui/")).await.unwrap();
    arrive(&browser, "/ui/sign-in").await;
    audited("sign-in").await;
    browser.screenshot(&shot("sign-in")).await;

    // A wrong token is refused and not echoed back.
    c.wait()
        .for_element(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys("ct_not-a-token-of-anybody-at-all")
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("form[action='/ui/sign-in'] button")).await.unwrap().click().await.unwrap();
    let refusal = c.wait().for_element(Locator::Css("p.error")).await.unwrap().text().await.unwrap();
    assert!(refusal.contains("not a valid API token"), "{refusal}");
    assert!(!c.source().await.unwrap().contains("ct_not-a-token"), "the token is never written into a page");
    let refused = browser.console_errors().await;
    assert!(refused.len() == 1 && refused[0].contains("401"), "the refusal is a 401, nothing else: {refused:?}");

    // Signing in: a session cookie (HttpOnly, SameSite=Strict), not the token.
    c.wait().for_element(Locator::Id("token")).await.unwrap().send_keys(&s.token).await.unwrap();
    c.wait().for_element(Locator::Css("form[action='/ui/sign-in'] button")).await.unwrap().click().await.unwrap();
    arrive(&browser, "/ui/").await;
    let cookies = c.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|k| k.name() == "ct_session").expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    assert_ne!(session.value(), s.token, "the cookie is a session, not the token");
    assert!(!c.source().await.unwrap().contains(&s.token));
    assert!(!c.current_url().await.unwrap().as_str().contains(&s.token));
    audited("environments").await;
    browser.screenshot(&shot("environments")).await;

    // The environment's timeline: a deploy, an alert, CloudTrail changes, newest first.
    c.wait().for_element(Locator::LinkText("production")).await.unwrap().click().await.unwrap();
    arrive(&browser, "/ui/environments/production").await;
    for kind in ["deploy", "alert", "cloudtrail"] {
        let rows = c.find_all(Locator::Css(&format!("#timeline li.kind-{kind}"))).await.unwrap();
        assert!(!rows.is_empty(), "a {kind} on the timeline");
    }
    let first = c.wait().for_element(Locator::Css("#timeline li")).await.unwrap();
    assert_eq!(first.attr("data-id").await.unwrap().as_deref(), alert["id"].as_str(), "newest first");
    let rows = c.find_all(Locator::Css("#timeline li")).await.unwrap().len();
    let visible = browser
        // A 1080p screen's browser window, less its tabs and address bar: 950 px of page.
        .eval("return [...document.querySelectorAll('#timeline li')].filter(r => r.getBoundingClientRect().bottom <= 950).length;")
        .await;
    assert!(rows >= 30, "{rows} rows");
    assert!(visible.as_u64() >= Some(25), "a 1080p screen shows at least 25 rows, it shows {visible}");
    let time = c.wait().for_element(Locator::Css("#timeline li time")).await.unwrap();
    assert!(time.attr("title").await.unwrap().unwrap().ends_with("UTC"), "UTC on hover");
    audited("timeline").await;
    browser.screenshot(&shot("timeline")).await;

    // Filter by kind: only deploys.
    c.wait().for_element(Locator::Id("kind-deploy")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("form.filters button[type=submit]")).await.unwrap().click().await.unwrap();
    let filtered = "return location.search.includes('kind=deploy') && document.readyState === 'complete';";
    browser.wait_for("the filtered timeline", filtered, WAIT).await;
    let kinds = browser.eval("return [...document.querySelectorAll('#timeline li')].map(r => r.className);").await;
    assert_eq!(kinds, json!(["kind-deploy"]), "only the deploy");
    // A preset keeps the filter.
    c.wait().for_element(Locator::LinkText("1 hour")).await.unwrap().click().await.unwrap();
    let preset = "return location.search.includes('range=1h') && document.readyState === 'complete';";
    browser.wait_for("the last hour", preset, WAIT).await;
    let query = c.current_url().await.unwrap().query().unwrap().to_owned();
    assert!(query.contains("kind=deploy") && query.contains("range=1h"), "{query}");
    assert_eq!(browser.eval("return document.querySelectorAll('#timeline li').length;").await, json!(1));

    // An item in full: a CloudTrail change with its original record.
    c.goto(&s.app.url("/ui/environments/production?kind=cloudtrail")).await.unwrap();
    let link = c.wait().for_element(Locator::Css("#timeline li.kind-cloudtrail a")).await.unwrap();
    let title = link.text().await.unwrap();
    link.click().await.unwrap();
    browser
        .wait_for(
            "an item's page",
            "return location.pathname.startsWith('/ui/items/') && document.readyState === 'complete';",
            WAIT,
        )
        .await;
    assert_eq!(c.wait().for_element(Locator::Css("h1")).await.unwrap().text().await.unwrap(), title);
    let record = c.wait().for_element(Locator::Css("pre.record")).await.unwrap().text().await.unwrap();
    let record: Value = serde_json::from_str(&record).expect("the original record, pretty-printed JSON");
    assert!(record["eventID"].is_string() && record["eventSource"].is_string(), "{record}");
    audited("item").await;
    browser.screenshot(&shot("item")).await;

    // An alert and its suspects, with scores and reasons.
    c.goto(&s.app.url("/ui/environments/production")).await.unwrap();
    c.wait().for_element(Locator::Css("#timeline li.kind-alert a")).await.unwrap().click().await.unwrap();
    arrive(&browser, &format!("/ui/alerts/{}", alert["id"].as_str().unwrap())).await;
    let suspect = c.wait().for_element(Locator::Css("#suspects tbody tr")).await.unwrap().text().await.unwrap();
    assert!(
        suspect.contains("checkout-api") && suspect.contains("deploy of checkout-api 5 minutes before"),
        "the deploy first: {suspect}"
    );
    assert!(suspect.contains("same service as the alert (checkout-api)"), "{suspect}");
    audited("alert").await;
    browser.screenshot(&shot("alert")).await;

    // Live: a deploy posted now appears on the open timeline without a reload, marked new.
    c.goto(&s.app.url("/ui/environments/production")).await.unwrap();
    browser.eval("window.notReloaded = true; return true;").await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the stream connects
    let live = json!({"environment": "production", "service": "checkout-api", "version": "v44", "status": "succeeded",
                      "started_at": at(OffsetDateTime::now_utc())});
    let (status, live) = s.app.post("/v1/deploys", &s.token, live).await;
    assert_eq!(status, 201);
    let arrived =
        format!("return !!document.querySelector('#timeline li.new[data-id=\"{}\"]');", live["id"].as_str().unwrap());
    browser.wait_for("the live deploy", &arrived, Duration::from_secs(5)).await;
    assert_eq!(browser.eval("return window.notReloaded === true;").await, json!(true), "no reload");
    assert_eq!(c.wait().for_element(Locator::Id("new-items")).await.unwrap().text().await.unwrap(), "1 new item");
    audited("live timeline").await;
    browser.screenshot(&shot("timeline-live")).await;

    // The keyboard: j moves down, k up, Enter opens.
    let body = c.wait().for_element(Locator::Css("body")).await.unwrap();
    body.send_keys("jjk").await.unwrap();
    let selected = browser.eval("return document.querySelector('#timeline li.selected').dataset.id;").await;
    assert_eq!(selected.as_str(), live["id"].as_str(), "j, j, k: the first row");
    let focused = browser.eval("return document.activeElement.closest('li').dataset.id;").await;
    assert_eq!(focused, selected, "the selected row's link has focus");
    c.active_element().await.unwrap().send_keys("\u{E007}").await.unwrap(); // Enter
    arrive(&browser, &format!("/ui/items/{}", live["id"].as_str().unwrap())).await;

    // The connections, with each region's import status.
    c.wait().for_element(Locator::LinkText("Connections")).await.unwrap().click().await.unwrap();
    let region = c.wait().for_element(Locator::Css("table tbody tr")).await.unwrap().text().await.unwrap();
    assert!(region.contains("us-east-1") && region.contains("none"), "a healthy region: {region}");
    audited("connections").await;
    browser.screenshot(&shot("connections")).await;

    // At a phone's width the timeline still reads.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&s.app.url("/ui/environments/production")).await.unwrap();
    let overflow = browser.eval("return document.documentElement.scrollWidth <= window.innerWidth + 1;").await;
    assert_eq!(overflow, json!(true), "no sideways scrolling on a phone");
    browser.screenshot(&shot("timeline-phone")).await;
    c.set_window_size(1280, 1080).await.unwrap();

    // Another organisation's alert is not found.
    let other = s.app.org("other").await;
    let (_, theirs) = s.app.post("/v1/environments", &other.admin_token, json!({"name": "production"})).await;
    assert!(theirs["id"].is_string());
    let (_, their_alert) = s
        .app
        .post(
            "/v1/alerts",
            &other.admin_token,
            json!({"environment": "production", "title": "theirs", "severity": "critical", "status": "triggered",
                   "started_at": at(OffsetDateTime::now_utc()), "source": "pagerduty"}),
        )
        .await;
    for path in ["items", "alerts"] {
        c.goto(&s.app.url(&format!("/ui/{path}/{}", their_alert["id"].as_str().unwrap()))).await.unwrap();
        assert_eq!(c.wait().for_element(Locator::Css("h1")).await.unwrap().text().await.unwrap(), "Not Found");
        assert!(!c.source().await.unwrap().contains("theirs"));
    }

    // Sign out: back to the sign-in page, and the view needs signing in again.
    c.goto(&s.app.url("/ui/")).await.unwrap();
    c.wait().for_element(Locator::Css("form[action='/ui/sign-out'] button")).await.unwrap().click().await.unwrap();
    arrive(&browser, "/ui/sign-in").await;
    c.goto(&s.app.url("/ui/environments/production")).await.unwrap();
    arrive(&browser, "/ui/sign-in").await;

    // A deleted token's session stops working at once.
    let (status, made) =
        s.app.post("/v1/tokens", &s.token, json!({"name": "on-call laptop", "scopes": ["read"]})).await;
    assert_eq!(status, 201, "{made}");
    c.wait()
        .for_element(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(made["secret"].as_str().unwrap())
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("form[action='/ui/sign-in'] button")).await.unwrap().click().await.unwrap();
    arrive(&browser, "/ui/").await;
    let (status, _) =
        s.app.call("DELETE", &format!("/v1/tokens/{}", made["id"].as_str().unwrap()), Some(&s.token), None).await;
    assert_eq!(status, 204);
    c.goto(&s.app.url("/ui/environments/production")).await.unwrap();
    arrive(&browser, "/ui/sign-in").await;
    browser.client.clone().close().await.unwrap();
}

/// The parts of the session a browser hides: cookies' attributes, CSRF, headers.
async fn sessions_cookies_csrf_and_headers_over_http(backend: Backend) {
    let app = app_or_skip!(backend, "sessions_cookies_csrf_and_headers_over_http");
    let org = app.org("acme").await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = |csrf: &str, token: &str| format!("csrf={csrf}&token={token}");

    let page = http.get(app.url("/ui/sign-in")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let nonce = cookie.split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

    let post = |body: String, cookie: Option<String>| {
        let mut request =
            http.post(app.url("/ui/sign-in")).header("content-type", "application/x-www-form-urlencoded").body(body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    // Without the form's own cookie (a cross-site form): refused, nothing signed in.
    let answer = post(form(&csrf, &org.admin_token), None).await.unwrap();
    assert_eq!(answer.status(), 403);
    assert!(answer.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("ct_session")));
    // A CSRF token that is not the cookie's: refused.
    let answer = post(form("forged", &org.admin_token), Some(nonce.clone())).await.unwrap();
    assert_eq!(answer.status(), 403);
    // A token without the read scope cannot sign in.
    let (_, writer) = app.post("/v1/tokens", &org.admin_token, json!({"name": "ci", "scopes": ["write"]})).await;
    let answer = post(form(&csrf, writer["secret"].as_str().unwrap()), Some(nonce.clone())).await.unwrap();
    assert_eq!(answer.status(), 403);
    assert!(!answer.text().await.unwrap().contains(writer["secret"].as_str().unwrap()));
    // The right form: a session cookie, and on to the view.
    let answer = post(form(&csrf, &org.admin_token), Some(nonce.clone())).await.unwrap();
    assert_eq!(answer.status(), 303);
    assert_eq!(answer.headers()["location"], "/ui/");
    let session = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("ct_session="))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict") && session.contains("Path=/ui"),
        "{session}"
    );
    assert!(!session.contains("Secure"), "plain http here");
    assert!(!session.contains(&org.admin_token));
    let session = session.split(';').next().unwrap().to_owned();

    let page = http.get(app.url("/ui/")).header("cookie", &session).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store", "pages with tenant data are not cached");
    let html = page.text().await.unwrap();
    // Sign-out needs the session's CSRF token.
    let sign_out = |body: &'static str| {
        http.post(app.url("/ui/sign-out"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", &session)
            .body(body)
            .send()
    };
    assert_eq!(sign_out("csrf=forged").await.unwrap().status(), 403);
    assert_eq!(
        http.get(app.url("/ui/")).header("cookie", &session).send().await.unwrap().status(),
        200,
        "still signed in"
    );
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let answer = http
        .post(app.url("/ui/sign-out"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &session)
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let page = http.get(app.url("/ui/")).header("cookie", &session).send().await.unwrap();
    assert_eq!((page.status().as_u16(), page.headers()["location"].to_str().unwrap()), (303, "/ui/sign-in"));

    // Hostile input gets a page that says what is wrong.
    let forged = http.get(app.url("/ui/")).header("cookie", "ct_session=<script>").send().await.unwrap();
    assert_eq!(forged.status(), 303);
    let answer = http
        .post(app.url("/ui/sign-in"))
        .header("content-type", "application/json")
        .header("cookie", nonce)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 415);
    let missing = http.get(app.url("/ui/no-such-page")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let script = http.get(app.url("/ui/static/app.js")).send().await.unwrap();
    assert_eq!(script.status(), 200);
    assert!(script.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
}

//! Headless Chromium driven through WebDriver (Debian's `chromium` and `chromium-driver`), for
//! the web view's tests: a real browser loading the real pages, with what a page audit checks.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

const CHROMEDRIVER: &str = "chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Set by CI, where a missing browser fails the test instead of skipping it.
pub const REQUIRE_VAR: &str = "CHANGETRAIL_REQUIRE_BROWSER";

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// A browser session and the driver process behind it (stopped on drop).
pub struct Browser {
    pub client: Client,
    driver: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// A headless Chromium at 1280 × 1080, or `None` (after saying why) when this machine has
    /// no browser and `CHANGETRAIL_REQUIRE_BROWSER` is unset.
    pub async fn start(test: &str) -> Option<Browser> {
        if !on_path(CHROMEDRIVER) || !std::path::Path::new(CHROMIUM).exists() {
            if std::env::var_os(REQUIRE_VAR).is_some() {
                panic!("{test}: {REQUIRE_VAR} is set but {CHROMIUM} or {CHROMEDRIVER} is missing: apt-get install chromium chromium-driver");
            }
            eprintln!(
                "SKIPPED {test}: no headless browser here (apt-get install chromium chromium-driver; CI installs them)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start listening on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("a browser profile directory");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1080", "--no-first-run", "--disable-extensions",
                         format!("--user-data-dir={}", profile.path().display())],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session through chromedriver");
        Some(Browser { client, driver, port, _profile: profile })
    }

    /// What the page wrote to the console since the last call, at the `SEVERE` level: script
    /// errors, refused resources and Content-Security-Policy violations.
    pub async fn console_errors(&self) -> Vec<String> {
        let session = self.client.session_id().await.expect("a session").expect("a session id");
        let url = format!("http://127.0.0.1:{}/session/{session}/se/log", self.port);
        let answer: Value = reqwest::Client::new()
            .post(url)
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .expect("read the browser's log")
            .json()
            .await
            .expect("the log as JSON");
        answer["value"]
            .as_array()
            .unwrap_or_else(|| panic!("chromedriver answered no log: {answer}"))
            .iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub async fn eval(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// The checks of a page audit: nothing in the console, no request to another origin, every
    /// form control labelled. Returns what is wrong, empty when the page passes.
    pub async fn audit(&self, origin: &str) -> Vec<String> {
        let mut problems: Vec<String> =
            self.console_errors().await.into_iter().map(|e| format!("console: {e}")).collect();
        let resources = self
            .eval("return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);")
            .await;
        for url in resources.as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !url.starts_with(origin) {
                problems.push(format!("a request to another origin: {url}"));
            }
        }
        let unlabelled = self
            .eval(
                "return [...document.querySelectorAll('input, select, textarea')]
                   .filter(e => e.type !== 'hidden')
                   .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                   .map(e => e.outerHTML);",
            )
            .await;
        for control in unlabelled.as_array().into_iter().flatten() {
            problems.push(format!("a form control without a label: {control}"));
        }
        problems
    }

    /// Saves a screenshot of the window as `target/web-view/{name}.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
            .join("web-view");
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// Waits until `script` returns true, or fails the test after `wait`.
    pub async fn wait_for(&self, what: &str, script: &str, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            if self.eval(script).await == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < deadline, "waited {wait:?} for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

//! The README's run command, as a newcomer runs it: `changetrail serve` on a fresh machine with
//! no database installed prints an admin token that works, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn serve_on_a_fresh_machine_prints_a_working_admin_token() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_changetrail"))
        .arg("serve")
        .env_clear()
        .env("CHANGETRAIL_DATA_DIR", data.path().join("data"))
        .env("CHANGETRAIL_LISTEN", format!("127.0.0.1:{port}"))
        .env("CHANGETRAIL_LOG", "warn")
        // No AWS here: a closed local endpoint, and never the instance metadata service.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE000000000")
        .env("AWS_SECRET_ACCESS_KEY", "not-a-secret")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let token = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.split_whitespace().find(|w| w.starts_with("ct_")).map(str::to_owned))
    })
    .await
    .unwrap()
    .expect("serve prints the admin token");

    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/environments");
    let deadline = Instant::now() + Duration::from_secs(20);
    let response = loop {
        match client.get(&url).bearer_auth(&token).send().await {
            Ok(response) => break response,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("the API never answered: {e}"),
        }
    };
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"items":[],"next_cursor":null}"#);
    assert!(data.path().join("data/changetrail.db").exists(), "the SQLite database lives in the data directory");

    // SIGTERM: a graceful stop with exit code 0.
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "serve exits cleanly on SIGTERM: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "serve did not stop within 15 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The log, written to a pipe here as to a file or a collector: plain text, no secret.
    let log = log.join().unwrap();
    assert!(log.contains("AWS identity is unknown"), "the warning is logged: {log}");
    assert!(!log.contains('\x1b'), "no colour codes when stderr is not a terminal: {log:?}");
    assert!(!log.contains(&token), "the admin token is printed on stdout only, never logged");
}

//! `changetrail demo`, as the README tells a newcomer to run it: it prints a curl that shows
//! imported CloudTrail changes on the timeline.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn demo_prints_a_timeline_of_imported_changes() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_changetrail"))
        .arg("demo")
        .env_clear()
        .env("CHANGETRAIL_LISTEN", format!("127.0.0.1:{port}"))
        .env("CHANGETRAIL_LOG", "warn")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read every line the demo prints (never closing its stdout early), and hand over the lines
    // up to the timeline's curl.
    let (ready, lines) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut ready = Some(ready);
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("/timeline?");
            seen.push(line);
            if done {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(seen.clone());
                }
            }
        }
    });
    let lines =
        tokio::time::timeout(std::time::Duration::from_secs(90), lines).await.expect("demo ready within 90 s").unwrap();
    let text = lines.join("\n");
    assert!(text.contains("Imported 143 changes"), "{text}");
    assert!(text.contains("(7 session events left out"), "the sample's session noise is counted: {text}");
    let curl = lines.last().unwrap();
    let token = curl.split("Bearer ").nth(1).unwrap().split('"').next().unwrap();
    let url = curl.split('\'').nth(1).unwrap();
    let page: serde_json::Value =
        reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 20, "{page}");
    assert!(items.iter().all(|i| i["kind"] == "cloudtrail" && i["environments"] == serde_json::json!(["production"])));
    assert!(items.iter().any(|i| i["title"].as_str().unwrap().contains(" (ec2)")), "{page}");
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(child.wait().unwrap().success(), "the demo stops cleanly");
}

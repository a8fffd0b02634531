//! Role validation against moto's STS (PyPI `moto[server]`): proves the STS client and its
//! parsing against an AWS implementation nobody here wrote. moto does not evaluate trust
//! policies, so every role there can be assumed without an external ID, which is exactly what
//! the confused-deputy check must catch. CI installs moto and sets CHANGETRAIL_REQUIRE_LINTERS=1,
//! which makes a missing moto_server a failure rather than a skip.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use test_support::{Backend, TestApp};

struct Moto(Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_moto() -> Option<Moto> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = match Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(_) => {
            let required = std::env::var("CHANGETRAIL_REQUIRE_LINTERS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "moto_server is required (CHANGETRAIL_REQUIRE_LINTERS=1) but not installed: pip install 'moto[server]'"
            );
            eprintln!(
                "SKIPPED role validation against moto: moto_server is not installed (pip install 'moto[server]')"
            );
            return None;
        }
    };
    let moto = Moto(child, port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(moto)
}

#[tokio::test]
async fn role_validation_against_motos_sts() {
    let Some(moto) = start_moto().await else { return };
    let url = format!("http://127.0.0.1:{}", moto.1);
    let aws = test_support::aws_access(&url, None).await;
    let principal = aws.principal().await.expect("GetCallerIdentity against moto");
    assert!(principal.starts_with("arn:aws:") && principal.contains(":123456789012:"), "{principal}");

    let app = TestApp::spawn_with(Backend::Sqlite, api::HttpSettings::default(), aws).await.unwrap();
    let token = app.org("acme").await.admin_token;
    let (_, connection) = app.post("/v1/connections", &token, json!({"name": "moto", "regions": ["us-east-1"]})).await;
    let path = format!("/v1/connections/{}/role", connection["id"].as_str().unwrap());
    let role = "arn:aws:iam::123456789012:role/changetrail-reader";
    let (status, problem) = app.call("PUT", &path, Some(&token), Some(json!({"role_arn": role}))).await;
    assert_eq!((status, problem["code"].as_str()), (422, Some("external_id_not_enforced")), "{problem}");

    let (_, setup) = app.get(&format!("/v1/connections/{}/setup", connection["id"].as_str().unwrap()), &token).await;
    assert_eq!(setup["service_principal_arn"], principal.as_str());
}

//! Linters for the rendered setup documents. Where a linter is not installed the check says so
//! and passes, unless `CHANGETRAIL_REQUIRE_LINTERS=1` (CI sets it and installs cfn-lint).

use std::process::Command;

fn required() -> bool {
    std::env::var("CHANGETRAIL_REQUIRE_LINTERS").is_ok_and(|v| v == "1")
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success())
}

pub fn cfn_lint(template: &str) {
    if !have("cfn-lint") {
        assert!(
            !required(),
            "cfn-lint is required (CHANGETRAIL_REQUIRE_LINTERS=1) but not installed: pip install cfn-lint"
        );
        eprintln!("SKIPPED cfn-lint: not installed (pip install cfn-lint)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("changetrail-role.yaml");
    std::fs::write(&path, template).unwrap();
    let out = Command::new("cfn-lint").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "cfn-lint rejects the rendered template:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `terraform fmt -check` where terraform is installed; this project's machines cannot install
/// it (it is in none of their package registries), so there it is skipped and says so.
pub fn terraform_fmt(module: &str) {
    if !have("terraform") {
        eprintln!("SKIPPED terraform fmt -check: terraform is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.tf"), module).unwrap();
    let out = Command::new("terraform").args(["fmt", "-check", "-diff"]).current_dir(dir.path()).output().unwrap();
    assert!(out.status.success(), "terraform fmt -check:\n{}", String::from_utf8_lossy(&out.stdout));
}

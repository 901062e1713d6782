//! The management API against its own OpenAPI document, checked by
//! schemathesis (from PyPI): generated requests, valid and invalid, must get
//! answers the document allows, with the documented status codes and bodies.

use std::process::Command;

use crate::clients::run;
use crate::common::*;

#[tokio::test]
async fn the_management_api_keeps_its_openapi_contract() {
    if !have("schemathesis") {
        return;
    }
    // Generated requests include wrong credentials; keep them from locking
    // the administrator out for the rest of the run.
    let s = TestServer::start_with(|c| c.auth.max_failed_logins = 1_000_000).await;
    let mut command = Command::new("schemathesis");
    command
        .arg("run")
        .arg(s.url("/api/v1/openapi.json"))
        .args(["--url", &s.base])
        .args(["-H", &format!("Authorization: {}", admin_basic())])
        .args([
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "20261122",
        ])
        // The lifecycle settings' bodies carry rules JSON Schema cannot state
        // (pattern and cron syntax, counts a rule needs, integral numbers
        // written as floats); schemathesis would call their refusals
        // schema-valid requests rejected. They are driven by the lifecycle
        // integration tests instead, until the schema says more.
        .args([
            "--exclude-path-regex",
            "/projects/\\{project\\}/(immutability|quota|retention)$",
        ])
        .args(["--no-color"])
        .current_dir(s.dir.path());
    run(command).await;
}

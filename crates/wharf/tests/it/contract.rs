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
    // Every check, everywhere. The lifecycle settings' bodies carry rules
    // JSON Schema cannot state (pattern and cron syntax, integral numbers
    // written as floats), and so do webhook policies (event type names,
    // URLs), promotions (references), rollbacks (a digest the tag pointed
    // at must be stored) and tag patterns (glob and regex syntax): a request
    // the schema allows may be refused there with 400 and a message:
    // schemathesis's own list of acceptable answers to valid data, plus
    // 400. The lifecycle, webhook and promotion integration tests cover
    // what is accepted. (A 5xx still fails the "not a server error" check.)
    let config = s.dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        r#"checks.enabled = true

[[operations]]
include-path-regex = '/projects/\{project\}/(immutability|quota|retention)$'
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]

[[operations]]
include-path-regex = '(/promote|/webhooks|/webhooks/\{id\}|/tags|/rollback)$'
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
"#,
    )
    .unwrap();
    let mut command = Command::new("schemathesis");
    command
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(s.url("/api/v1/openapi.json"))
        .args(["--url", &s.base])
        .args(["-H", &format!("Authorization: {}", admin_basic())])
        .args(["--max-examples", "25", "--seed", "20261122"])
        .args(["--no-color"])
        .current_dir(s.dir.path());
    run(command).await;
}

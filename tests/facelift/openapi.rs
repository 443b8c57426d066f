//! The OpenAPI document at `/api/v1/openapi.json`: it names every API route the code
//! registers, every operation answers only statuses it documents, and schemathesis (PyPI,
//! installed by `scripts/setup --for-tests`) finds no 5xx and no answer off the document.

use std::collections::BTreeSet;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::repo_root;
use crate::http::{TestApp, spawn_app};

/// The API as the README describes it: each must be in the document.
const API: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("post", "/api/v1/login"),
    ("post", "/api/v1/login/challenge"),
    ("post", "/api/v1/logout"),
    ("get", "/api/v1/me"),
    ("get", "/api/v1/people"),
    ("post", "/api/v1/identify"),
    ("post", "/api/v1/verify"),
    ("get", "/api/v1/lifts"),
    ("get", "/api/v1/lifts/{lift}"),
    ("post", "/api/v1/lift/move"),
    ("get", "/api/v1/lift/events"),
    ("post", "/api/v1/admin/lifts/{lift}/reset"),
    ("post", "/api/v1/admin/recall"),
    ("delete", "/api/v1/admin/recall"),
    ("get", "/api/v1/admin/people/{name}/access"),
    ("put", "/api/v1/admin/people/{name}/access"),
    ("post", "/api/v1/admin/people/{name}/passes"),
    ("delete", "/api/v1/admin/passes/{id}"),
    ("post", "/api/v1/admin/people/{name}/photos"),
    ("delete", "/api/v1/admin/people/{name}"),
    ("put", "/api/v1/admin/people/{name}/login"),
    ("get", "/api/v1/admin/people/{name}/thumbnail"),
    ("post", "/api/v1/device/status"),
    ("get", "/api/v1/device/commands"),
    ("get", "/api/v1/device/capture"),
    ("post", "/api/v1/device/frames"),
    ("post", "/api/v1/kiosks/{name}/attempts"),
    ("post", "/api/v1/kiosks/{name}/rides"),
    ("get", "/api/v1/kiosks/{name}/events"),
];

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, operations)| {
            let operations = operations.as_object().expect("operations");
            operations.keys().map(move |m| (m.clone(), path.clone()))
        })
        .collect()
}

/// The paths of routes registered with plain `.route(...)`, which the document cannot see.
fn plain_routes_in_source() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("src/web")).expect("src/web") {
        let source = std::fs::read_to_string(entry.expect("entry").path()).expect("source");
        for piece in source.split(".route(\"").skip(1) {
            found.push(piece.split('"').next().unwrap_or_default().to_string());
        }
    }
    found
}

#[tokio::test]
async fn the_document_describes_every_api_route_and_each_answers_as_described() {
    let app = spawn_app().await;
    let doc = app.get_json("/api/v1/openapi.json").await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1: {}",
        doc["openapi"]
    );
    // the command line prints the same document, for clients made without a server
    let printed = crate::helpers::facelift_json(&["openapi"]);
    assert_eq!(printed, doc, "facelift openapi and the server agree");
    let listed = documented(&doc);
    for (method, path) in API {
        assert!(
            listed.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is missing from the document"
        );
    }
    // the request timeout's 408 is documented where it applies, not on the endless stream
    let responses = |method: &str, path: &str| doc["paths"][path][method]["responses"].clone();
    assert!(responses("get", "/api/v1/lifts")["408"].is_object());
    assert!(responses("get", "/api/v1/lift/events")["408"].is_null());
    // a route outside the document is a page: HTML or a static file, never JSON
    let plain = plain_routes_in_source();
    assert!(plain.contains(&"/".to_string()), "the scan sees the pages");
    for path in plain {
        assert!(
            !listed.iter().any(|(_, p)| *p == path),
            "{path} is registered twice"
        );
        let url = format!("{}{}", app.base, path.replace("{file}", "login.js"));
        let response = app.client.get(url).send().await.expect("request");
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            !kind.contains("json"),
            "{path} answers JSON ({kind}) but is not in the OpenAPI document"
        );
    }

    // every operation, asked without a body by a logged-in administrator, answers a status it
    // documents, in the documented content type; logout last, as it ends the session
    let token = app.log_in_admin().await;
    let mut operations: Vec<_> = listed.into_iter().collect();
    operations.sort_by_key(|(_, path)| path == "/api/v1/logout");
    for (method, path) in operations {
        let url = format!("{}{}", app.base, path.replace("{name}", "nobody"));
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let response = app
            .client
            .request(method.clone(), url)
            .header(facelift::web::CSRF_HEADER, &token)
            .query(&[("wait", "0")])
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16().to_string();
        let described = &doc["paths"][&path][method.as_str().to_lowercase()]["responses"][&status];
        assert!(
            described.is_object(),
            "{method} {path} answered {status}, which its document does not list"
        );
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        if let Some(content) = described["content"].as_object() {
            assert!(
                content.contains_key(&kind),
                "{method} {path} answered {status} as {kind:?}, documented as {:?}",
                content.keys().collect::<Vec<_>>()
            );
        }
    }
}

/// Logs in as the administrator: the session cookie (`name=value`) and the CSRF token, for
/// another program to use.
async fn admin_credentials(app: &TestApp) -> (String, String) {
    let (status, body, cookie) = app.login("img14.jpg").await;
    assert_eq!(status, StatusCode::OK);
    let cookie = cookie
        .as_deref()
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let token = body["csrf_token"].as_str().expect("token").to_string();
    (cookie, token)
}

/// schemathesis generates requests from the document (valid ones and broken ones) for every
/// operation that does not move the lift; none may get a 5xx or an answer that differs from
/// what the document says (status, content type, headers, body schema).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let schemathesis = repo_root().join(".deps/schemathesis/bin/schemathesis");
    assert!(
        schemathesis.is_file(),
        "schemathesis is missing: run scripts/setup --for-tests"
    );
    let app = spawn_app().await;
    let (cookie, token) = admin_credentials(&app).await;
    // the credentials as the document's security schemes, so that schemathesis knows them for
    // what they are (and leaves them out when it tests a request without them)
    let config = tempfile::tempdir().expect("tempdir");
    let config_file = config.path().join("schemathesis.toml");
    std::fs::write(
        &config_file,
        "[auth.openapi.session]\napi_key = \"${FACELIFT_TEST_SESSION}\"\n\
         [auth.openapi.csrf]\napi_key = \"${FACELIFT_TEST_CSRF}\"\n",
    )
    .expect("config");
    let session = cookie
        .split_once('=')
        .map(|(_, value)| value.to_string())
        .expect("name=value");
    let schema = format!("{}/api/v1/openapi.json", app.base);
    let run = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis)
            .current_dir(config.path())
            .env("FACELIFT_TEST_SESSION", session)
            .env("FACELIFT_TEST_CSRF", token)
            .arg("--config-file")
            .arg(&config_file)
            .args(["--no-color", "run", &schema])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance,\
                 negative_data_rejection,missing_required_header,ignored_auth",
            ])
            // moves the lift; never ends; ends the session the rest runs on
            .args(["--exclude-path", "/api/v1/lift/move"])
            .args(["--exclude-path", "/api/v1/lift/events"])
            .args(["--exclude-path", "/api/v1/logout"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", "25", "--workers", "1"])
            .args(["--request-timeout", "20", "--seed", "12"])
            .output()
            .expect("run schemathesis")
    })
    .await
    .expect("join");
    let printed = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "schemathesis found failures:\n{printed}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // it ran the operations, not nothing
    assert!(printed.contains("/api/v1/identify"), "{printed}");
}

//! The built-in upstreams: the tutorial's course list and the echo.

use crate::support::{self, config, tutorial_gateway, Gateway};

#[tokio::test]
async fn the_tutorials_course_list_needs_a_cryptr_token() {
    let (issuer, gw) = tutorial_gateway().await;
    let res = support::client()
        .get(gw.url("/api/v1/courses"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let token = issuer.token(&issuer.claims("acme"));
    let res = support::client()
        .get(gw.url("/api/v1/courses"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let got: serde_json::Value = res.json().await.unwrap();
    let expected = serde_json::json!([{
        "id": 1,
        "user_id": "eba25511-afce-4c8e-8cab-f82822434648",
        "title": "learn git",
        "tags": ["colaborate", "git", "cli", "commit", "versionning"],
        "img": "https://carlchenet.com/wp-content/uploads/2019/04/git-logo.png",
        "desc": "Learn how to create, manage, fork, and collaborate on a project. Git stays a major part of all companies projects. Learning git is learning how to make your project better everyday",
        "date": "5 Nov",
        "timestamp": 1604577600000u64,
        "teacher": {
            "name": "Max",
            "picture": "https://images.unsplash.com/photo-1558531304-a4773b7e3a9c?ixlib=rb-1.2.1&ixid=eyJhcHBfaWQiOjEyMDd9&auto=format&fit=crop&w=634&q=80"
        }
    }]);
    assert_eq!(got, expected);
}

#[tokio::test]
async fn courses_refuses_writes_with_405() {
    let gw = Gateway::start(&config(
        "  - name: c\n    match: { prefix: /c }\n    upstream: builtin:courses\n    auth: none\n",
    ))
    .await;
    let res = support::client().post(gw.url("/c")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
    let head = support::client().head(gw.url("/c")).send().await.unwrap();
    assert_eq!(head.status(), 200);
}

#[tokio::test]
async fn echo_shows_what_an_upstream_would_receive() {
    let (_issuer, gw) = tutorial_gateway().await;
    let res = support::client()
        .put(gw.url("/echo/a/b?x=%2F&y"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("connection", "x-drop-me")
        .header("x-drop-me", "1")
        .header("x-keep", "2")
        .body("twelve bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: serde_json::Value = res.json().await.unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/echo/a/b");
    assert_eq!(echo["query"], "x=%2F&y");
    assert_eq!(echo["body_length"], 12);
    let headers = &echo["headers"];
    assert_eq!(headers["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(headers["x-keep"], serde_json::json!(["2"]));
    assert_eq!(headers["via"], serde_json::json!(["1.1 cryptr-gateway"]));
    assert!(headers.get("x-drop-me").is_none(), "{headers}");
    assert!(headers.get("connection").is_none(), "{headers}");
}

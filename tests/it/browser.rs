//! End to end in a real browser: headless Chromium loads a page from one origin that calls the
//! gateway on another, as the Cryptr Vue sample does, and the test reads what the page saw.
//!
//! Driven with `--dump-dom` and `--virtual-time-budget` (Chromium runs the page's fetches, then
//! prints the DOM): no WebDriver or DevTools client to keep in step with the browser.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use cryptr_gateway::body;
use http::{Request, Response};
use hyper::body::Incoming;
use serde_json::Value;

use crate::support::issuer::TestIssuer;
use crate::support::{Gateway, TempDir, Upstream};

/// Chromium from `$CHROMIUM`, else Debian's. `None` (and a clear message) when absent, which
/// fails the test under CI.
fn chromium() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("CHROMIUM").map(PathBuf::from),
        Some(PathBuf::from("/usr/bin/chromium")),
        Some(PathBuf::from("/usr/bin/chromium-browser")),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.exists());
    if found.is_none() {
        let message = "Chromium is not installed (apt-get install chromium, or set CHROMIUM): the browser test cannot run";
        assert!(std::env::var_os("CI").is_none(), "{message}");
        eprintln!("SKIPPED: {message}");
    }
    found
}

/// The page: calls the API with and without the token, and writes what it saw into the DOM.
fn page(api: &str, token: &str) -> String {
    format!(
        r#"<!doctype html><html><head><title>courses</title></head><body>
<pre id="result">pending</pre>
<script>
(async () => {{
  const api = "{api}";
  const seen = {{}};
  async function call(name, init) {{
    try {{
      const res = await fetch(api, init);
      const body = await res.json();
      seen[name] = {{ status: res.status, title: Array.isArray(body) ? body[0].title : null, code: body.code || null }};
    }} catch (e) {{
      seen[name] = {{ error: e.name }};
    }}
  }}
  await call("with_token", {{ headers: {{ Authorization: "Bearer {token}", "sentry-trace": "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1" }} }});
  await call("without_token", {{}});
  document.getElementById("result").textContent = JSON.stringify(seen);
}})();
</script></body></html>"#
    )
}

/// Serves the page at `/` from its own origin; the page is set once the gateway's address is
/// known (the gateway's config needs this server's origin first).
async fn page_server() -> (Upstream, Arc<Mutex<String>>) {
    let html = Arc::new(Mutex::new(String::new()));
    let shared = html.clone();
    let server = Upstream::serve(move |_req: Request<Incoming>| {
        let html = shared.lock().unwrap().clone();
        async move {
            let mut res = Response::new(body::full(html));
            res.headers_mut()
                .insert("content-type", "text/html; charset=utf-8".parse().unwrap());
            res
        }
    })
    .await;
    (server, html)
}

/// Loads `url` in headless Chromium, lets its scripts run, and returns the DOM.
fn dump_dom(chromium: &PathBuf, url: &str) -> String {
    // A profile of its own for every run: two Chromiums on one profile refuse to start
    // ("SingletonLock: File exists"), which a folder named after the URL's bytes allowed.
    let profile = TempDir::new("chromium");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("start chromium");
    drop(profile);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("</html>"),
        "chromium printed no page: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// Loads `url` in headless Chromium and returns what the page wrote into `#result`.
fn visit(chromium: &PathBuf, url: &str) -> Value {
    let dom = dump_dom(chromium, url);
    let start = dom
        .find("<pre id=\"result\">")
        .map(|i| i + "<pre id=\"result\">".len());
    let text = start
        .and_then(|s| dom[s..].find("</pre>").map(|e| &dom[s..s + e]))
        .unwrap_or_else(|| panic!("no result in the page:\n{dom}"));
    let text = text
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("the page did not finish: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_app_on_another_origin_reads_courses_and_errors_through_the_gateway() {
    let Some(chromium) = chromium() else { return };
    let issuer = TestIssuer::start().await;
    let (allowed, allowed_page) = page_server().await;
    let (stranger, stranger_page) = page_server().await;
    let gw = Gateway::start(&format!(
        "listen: 127.0.0.1:0
cors:
  allowed_origins: [\"http://{app}\"]
  allowed_headers: [Authorization, Content-Type, sentry-trace, baggage]
issuers:
  cryptr:
    cryptr: {{ base_url: {base}, tenants: [acme] }}
    audiences: [http://localhost:8080]
routes:
  - name: courses
    match: {{ prefix: /api/v1/courses, methods: [GET] }}
    upstream: builtin:courses
    auth: {{ issuers: [cryptr] }}
",
        app = allowed.addr,
        base = issuer.base_url()
    ))
    .await;
    let html = page(
        &format!("http://{}/api/v1/courses", gw.addr),
        &issuer.token(&issuer.claims("acme")),
    );
    *allowed_page.lock().unwrap() = html.clone();
    *stranger_page.lock().unwrap() = html;

    let seen = tokio::task::spawn_blocking({
        let chromium = chromium.clone();
        let url = format!("http://{}/", allowed.addr);
        move || visit(&chromium, &url)
    })
    .await
    .unwrap();
    assert_eq!(seen["with_token"]["status"], 200, "{seen}");
    assert_eq!(seen["with_token"]["title"], "learn git", "{seen}");
    assert_eq!(seen["without_token"]["status"], 401, "{seen}");
    assert_eq!(
        seen["without_token"]["code"], "authorization_header_missing",
        "{seen}"
    );

    let seen = tokio::task::spawn_blocking({
        let url = format!("http://{}/", stranger.addr);
        move || visit(&chromium, &url)
    })
    .await
    .unwrap();
    // The browser, not the gateway, blocks it: fetch rejects with a TypeError.
    assert_eq!(seen["with_token"]["error"], "TypeError", "{seen}");
    assert_eq!(seen["without_token"]["error"], "TypeError", "{seen}");
}

/// The demo's own page (the part of the Cryptr Vue sample), signed out then signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_shows_the_401_then_the_courses_once_signed_in() {
    let Some(chromium) = chromium() else { return };
    let demo = cryptr_gateway::demo::Demo::start(cryptr_gateway::demo::DemoOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        app_listen: "127.0.0.1:0".parse().unwrap(),
    })
    .await
    .unwrap();
    let app = format!("http://127.0.0.1:{}/", demo.app.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(demo.serve(async {
        let _ = rx.await;
    }));
    let signed_out = tokio::task::spawn_blocking({
        let (chromium, url) = (chromium.clone(), app.clone());
        move || dump_dom(&chromium, &url)
    })
    .await
    .unwrap();
    assert!(signed_out.contains("data-status=\"401\""), "{signed_out}");
    assert!(
        signed_out.contains("data-code=\"authorization_header_missing\""),
        "{signed_out}"
    );
    let signed_in =
        tokio::task::spawn_blocking(move || dump_dom(&chromium, &format!("{app}?signed_in")))
            .await
            .unwrap();
    assert!(signed_in.contains("data-status=\"200\""), "{signed_in}");
    assert!(
        signed_in.contains("<h2 class=\"title\">learn git</h2>"),
        "{signed_in}"
    );
    assert!(signed_in.contains("max@example.com"), "{signed_in}");
    let _ = tx.send(());
    let _ = serving.await;
}

//! Config parsing and compilation: arbitrary text as `gateway.yaml` into
//! `config::load_str` (interpolation, YAML, every field, issuers with `jwks_file`, routes,
//! CORS, upstream URLs), with the fixture folder as `dir`.
//!
//! Inputs that could make compilation touch anything but plain files are skipped, see
//! [`harmless`]: `dev_issuer` (it binds a port and serves), and any text that could name a
//! device, `/proc`, `/sys`, a temporary folder or `../` in a file name (`jwks_file`,
//! `ca_file`, `client_cert`, `tls`...), which could block or read without end.
//!
//! Invariants: no panic; every error is located and printable; a plan that compiles has
//! routes, unique route names, canonical route paths, no route shadowed by an earlier one, a
//! token route with issuers and a `max_token_size` that is its issuers' largest, and a summary.
#![no_main]

mod common;

use cryptr_gateway::config;
use cryptr_gateway::route::Auth;
use libfuzzer_sys::fuzz_target;

/// The variables the fuzzed text may use (`${PORT}`, `${EMPTY:-x}`); any other is unset.
fn env(name: &str) -> Option<String> {
    match name {
        "PORT" => Some("9000".into()),
        "HOST" => Some("127.0.0.1".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// `${NAME}` / `${NAME:-default}` expanded everywhere (comments included) as the loader
/// would with [`env`]; what it cannot expand is left as it is. A word the loader's
/// expansion could form is then present in this text or in the original one: the loader
/// keeps comments verbatim, and a comment starts at `#`, which no forbidden word holds.
fn expand_everywhere(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut rest = line;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i..];
            if let Some(tail) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = tail;
            } else if let Some(tail) = after.strip_prefix("${") {
                match tail.find('}') {
                    Some(close) => {
                        let expr = &tail[..close];
                        let (name, default) = match expr.split_once(":-") {
                            Some((n, d)) => (n, Some(d)),
                            None => (expr, None),
                        };
                        match (env(name).filter(|v| !v.is_empty()), default) {
                            (Some(v), _) => out.push_str(&v),
                            (None, Some(d)) => out.push_str(d),
                            (None, None) => {}
                        }
                        rest = &tail[close + 1..];
                    }
                    None => {
                        out.push_str(after);
                        rest = "";
                    }
                }
            } else {
                out.push('$');
                rest = &after[1..];
            }
        }
        out.push_str(rest);
    }
    out
}

/// False for text that could make the loader read anything but a plain file (under the
/// fixture folder, or named by an absolute path outside the temporary folder), or start the
/// dev issuer: no `../` (the fixture folder is in the temporary folder, where others may
/// leave fifos), no device, `/proc`, `/sys`, temporary or mounted folder. YAML spells a
/// string only literally or with `\` escapes (refused here), so a forbidden word is in the
/// text or in its expansion.
fn harmless(text: &str) -> bool {
    const FORBIDDEN: [&str; 8] = ["\\", "../", "dev", "proc", "sys", "tmp", "mnt", "fd/"];
    let expanded = expand_everywhere(text);
    ![text, expanded.as_str()].iter().any(|t| {
        let lower = t.to_ascii_lowercase();
        FORBIDDEN.iter().any(|w| lower.contains(w))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if !harmless(text) {
        return;
    }
    let dir = common::fixture_dir();
    match config::load_str(text, "fuzz.yaml", dir, &env) {
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an empty error list");
            // YAML breaks lines at `\n`, `\r` and `\r\n`; one more for the end of the text.
            let lines = text.matches(['\n', '\r']).count() + 2;
            for e in &errors.0 {
                assert!(!e.message.is_empty(), "an error without a message: {e:?}");
                if let Some(line) = e.line {
                    assert!(line >= 1 && line <= lines, "line {line} of {lines}: {e}");
                }
                let _ = e.to_string();
            }
        }
        Ok(plan) => {
            assert!(!plan.routes.is_empty(), "a plan without routes");
            for (i, r) in plan.routes.iter().enumerate() {
                let p = r.path.as_str();
                assert_eq!(
                    cryptr_gateway::path::normalize(p).as_deref(),
                    Ok(p),
                    "route {} has a non-canonical path",
                    r.name
                );
                for earlier in &plan.routes[..i] {
                    assert_ne!(earlier.name, r.name, "two routes named {}", r.name);
                    assert!(
                        !earlier.shadows(r),
                        "route {} is shadowed by {}",
                        r.name,
                        earlier.name
                    );
                }
                if let Auth::Token(rules) = &r.auth {
                    assert!(
                        !rules.issuers.is_empty(),
                        "route {} accepts no issuer",
                        r.name
                    );
                    let largest = rules.issuers.iter().map(|i| i.max_token_size).max();
                    assert_eq!(Some(rules.max_token_size), largest);
                }
                if let Some(cors) = &r.cors {
                    assert!(
                        !(cors.allow_credentials && cors.origins.any),
                        "credentials with any origin on {}",
                        r.name
                    );
                }
            }
            let _ = plan.summary();
        }
    }
});

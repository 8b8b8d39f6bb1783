//! What the fuzz targets share: the key files their plans read (`jwks_file:`, no network), the
//! instant tokens are judged at, the issuers of the fixed plans, and a signing key.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cryptr_gateway::auth::Clock;
use cryptr_gateway::config::{self, Plan};
use cryptr_gateway::mint::SigningKey;

/// 2024-01-01T00:00:00Z: inside the lifetime of the real Cryptr token of the fixtures, and the
/// `now` of every minted seed token.
pub const NOW: u64 = 1_704_067_200;

/// The real Cryptr tenant of `../shared/fixtures/cryptr` (read from there, not copied).
pub const CRYPTR_ISS: &str = "http://localhost:4000/t/drag-n-survey";
pub const CRYPTR_AUD: &str = "http://localhost:8000";
/// The generic issuer whose keys are `fuzz/fixtures/local.jwks.json` (from `tests/keys/`).
pub const LOCAL_ISS: &str = "https://issuer.test/t/acme";
pub const LOCAL_AUD: &str = "https://api.test";

pub const CRYPTR_JWKS: &[u8] =
    include_bytes!("../../../../shared/fixtures/cryptr/drag-n-survey.jwks.json");
pub const LOCAL_JWKS: &[u8] = include_bytes!("../../fixtures/local.jwks.json");
pub const CRYPTR_TOKEN: &str =
    include_str!("../../../../shared/fixtures/cryptr/drag-n-survey.v1.access.jwt");

pub mod plans;

/// A folder holding the key files the plans name (relative to it), shared by every process
/// of every target (fork mode starts many): named after its content, each file written
/// whole (temporary name, then rename). It is also the `dir` of the config fuzzer, so
/// relative file names there land here.
pub fn fixture_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let files = [
            ("cryptr.jwks.json", CRYPTR_JWKS),
            ("local.jwks.json", LOCAL_JWKS),
        ];
        // FNV-1a over the contents.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for (_, bytes) in files {
            for b in bytes {
                hash = (hash ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        let dir = std::env::temp_dir().join(format!("cryptr-gateway-fuzz-{hash:016x}"));
        std::fs::create_dir_all(&dir).expect("fixture dir");
        for (name, bytes) in files {
            let path = dir.join(name);
            if std::fs::read(&path).ok().as_deref() != Some(bytes) {
                let tmp = dir.join(format!(".{name}.{}", std::process::id()));
                std::fs::write(&tmp, bytes).expect("write a fixture");
                std::fs::rename(&tmp, &path).expect("place a fixture");
            }
        }
        dir
    })
}

/// Compiles a fixed plan (a bad one is a harness bug: panics at start-up), judged at [`NOW`].
pub fn plan(yaml: &str) -> Plan {
    let mut plan = config::load_str(yaml, "fuzz.yaml", fixture_dir(), &|_| None)
        .unwrap_or_else(|e| panic!("the fuzz plan does not compile:\n{e}"));
    plan.auth.clock = Clock::fixed(NOW);
    plan
}

/// The P-256 key of `tests/keys/ec-p256.pem` (kid `ec-p256` in `local.jwks.json`): signs
/// fast enough to sign a fuzzed payload on every run.
pub fn ec_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        SigningKey::from_pem(
            include_bytes!("../../../tests/keys/ec-p256.pem"),
            Some("ec-p256"),
        )
        .expect("ec key")
    })
}

/// The route of `plan` named `name`, with its token rules.
pub fn route_auth<'p>(plan: &'p Plan, name: &str) -> &'p cryptr_gateway::auth::RouteAuth {
    let route = plan
        .routes
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route {name}"));
    match &route.auth {
        cryptr_gateway::route::Auth::Token(rules) => rules,
        cryptr_gateway::route::Auth::None => panic!("route {name} is public"),
    }
}

/// Splits `data` at the first `\n` (or not at all).
pub fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == b'\n').collect()
}

//! docker/ agrees with the repository: compose.yaml, the two Dockerfiles and .env.example
//! against gateway.yaml, the binary's flags and the Cryptr Vue sample.
//!
//! No Docker engine runs where these tests run, so no image is built here: the files are read
//! (compose.yaml as YAML, the Dockerfiles as text) and cross-checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use cryptr_gateway::config::Plan;
use serde_yaml::Value;

use crate::support::plan_in;
use crate::support::{read, repo};

/// Where the Cryptr Vue sample calls its API (`src/views/Profile.vue`, branch
/// `07-backend-courses-api` of cryptr-examples/cryptr-vue2-sample, commit 251c6a1).
const VUE_SAMPLE_API: &str = "http://localhost:8000/api/v1/courses";
/// The sample's own URL: its `VUE_APP_AUDIENCE` and redirect URI (its step 04 README).
const VUE_APP_URL: &str = "http://localhost:8080";
/// Everything the sample's `src/main.js` reads from `process.env` (same branch and commit).
const VUE_SAMPLE_VARIABLES: [&str; 8] = [
    "VUE_APP_AUDIENCE",
    "VUE_APP_CLIENT_ID",
    "VUE_APP_CRYPTR_BASE_URL",
    "VUE_APP_CRYPTR_REGION",
    "VUE_APP_CRYPTR_TELEMETRY",
    "VUE_APP_DEFAULT_LOCALE",
    "VUE_APP_DEFAULT_REDIRECT_URI",
    "VUE_APP_TENANT_DOMAIN",
];
/// The sample's settings that must be the gateway's too: app side, gateway side.
const SHARED_SETTINGS: [(&str, &str); 4] = [
    ("VUE_APP_AUDIENCE", "CRYPTR_AUDIENCE"),
    ("VUE_APP_TENANT_DOMAIN", "CRYPTR_TENANT_DOMAIN"),
    ("VUE_APP_CRYPTR_BASE_URL", "CRYPTR_BASE_URL"),
    ("VUE_APP_DEFAULT_REDIRECT_URI", "CRYPTR_APP_ORIGIN"),
];

type Env = BTreeMap<String, String>;

#[test]
fn compose_builds_from_files_that_exist() {
    let compose = compose();
    let mut builds = 0;
    for (name, service) in services(&compose) {
        if service["build"].is_null() {
            continue;
        }
        let context = docker_dir().join(text(&service["build"]["context"]));
        let dockerfile = context.join(text(&service["build"]["dockerfile"]));
        assert!(context.is_dir(), "{name}: no folder {}", context.display());
        assert!(
            dockerfile.is_file(),
            "{name}: no file {}",
            dockerfile.display()
        );
        builds += 1;
    }
    assert_eq!(builds, 3, "gateway, vue-app and demo each build an image");
    let ours = |file: &str| docker_dir().join(file).canonicalize().unwrap();
    assert_eq!(dockerfile_path(&compose, "gateway"), ours("Dockerfile"));
    assert_eq!(
        dockerfile_path(&compose, "vue-app"),
        ours("vue-sample.Dockerfile")
    );
}

#[test]
fn the_build_context_lets_through_every_file_the_dockerfile_copies() {
    let compose = compose();
    let dockerfile = dockerfile_path(&compose, "gateway");
    let context = dockerfile_context(&compose, "gateway");
    // BuildKit reads `<Dockerfile>.dockerignore`, an allow-list here: `*`, then `!what` stays.
    let ignore = read(Path::new(&format!("{}.dockerignore", dockerfile.display())));
    let allowed: BTreeSet<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .collect();
    assert!(ignore.lines().any(|l| l.trim() == "*"), "{ignore}");
    let copies = instructions(&read(&dockerfile))
        .into_iter()
        .filter(|(keyword, args)| keyword == "COPY" && !args.starts_with("--from"))
        .collect::<Vec<_>>();
    assert!(!copies.is_empty());
    for (_, args) in copies {
        let words: Vec<&str> = args.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            let source = source.trim_start_matches("./").trim_end_matches('/');
            assert!(
                context.join(source).exists(),
                "COPY {source}: not in the repository"
            );
            assert!(
                allowed.contains(source),
                "COPY {source}: Dockerfile.dockerignore leaves it out of the build context"
            );
        }
    }
}

#[test]
fn gateway_service_passes_only_variables_gateway_yaml_reads() {
    let yaml = read(&repo().join("gateway.yaml"));
    let compose = compose();
    let passed = mapping(&compose["services"]["gateway"]["environment"]);
    assert!(!passed.is_empty());
    for name in passed.keys() {
        assert!(
            yaml.contains(&format!("${{{name}}}")) || yaml.contains(&format!("${{{name}:-")),
            "compose passes {name}, which gateway.yaml never reads as ${{{name}...}}"
        );
    }
}

#[test]
fn gateway_yaml_compiles_with_exactly_the_environment_compose_gives_it() {
    // Every `${NAME}` without a default must be provided: a missing one fails the compile,
    // with an empty docker/.env as with the example one.
    let compose = compose();
    for dotenv in [Env::new(), env_example()] {
        let env = gateway_env(&compose, &dotenv);
        if let Err(e) = gateway_plan(&env) {
            panic!("with {env:?}:\n{e}");
        }
    }
}

#[test]
fn compose_and_env_example_defaults_are_the_ones_gateway_yaml_has() {
    let yaml = read(&repo().join("gateway.yaml"));
    let yaml_defaults: BTreeMap<String, String> = references(&uncommented(&yaml))
        .into_iter()
        .filter_map(|(name, default)| Some((name, default?)))
        .collect();
    let compose = compose();
    for (name, value) in mapping(&compose["services"]["gateway"]["environment"]) {
        for (variable, default) in references(&value) {
            let (Some(default), Some(theirs)) = (default, yaml_defaults.get(&variable)) else {
                continue;
            };
            // An empty default hands the choice to gateway.yaml's own.
            if !default.is_empty() {
                assert_eq!(&default, theirs, "{name}: ${{{variable}:-...}}");
            }
        }
    }
    // Copying .env.example to .env changes nothing but the lines one fills in.
    let example = env_example();
    for string in strings(&compose) {
        for (variable, default) in references(&string) {
            match (example.get(&variable), default) {
                (Some(value), Some(default)) if !value.is_empty() => {
                    assert_eq!(
                        value, &default,
                        "{variable} in .env.example and compose.yaml"
                    )
                }
                _ => {}
            }
        }
    }
}

#[test]
fn env_example_documents_every_variable_compose_reads_with_one_comment_line_each() {
    let compose = compose();
    let read_by_compose: BTreeSet<String> = strings(&compose)
        .iter()
        .flat_map(|s| references(s))
        .map(|(name, _)| name)
        .collect();
    let example = env_example();
    let documented: BTreeSet<String> = example.keys().cloned().collect();
    assert_eq!(documented, read_by_compose);
    let text = read(&docker_dir().join(".env.example"));
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let comment = i.checked_sub(1).map(|j| lines[j]).unwrap_or("");
        assert!(
            comment.starts_with("# ") && comment.len() > 10,
            "`{line}` has no comment line above it"
        );
    }
}

#[test]
fn vue_dockerfile_builds_the_sample_with_every_variable_it_reads() {
    let dockerfile = read(&docker_dir().join("vue-sample.Dockerfile"));
    let steps = instructions(&dockerfile);
    let args: BTreeSet<String> = steps
        .iter()
        .filter(|(keyword, _)| keyword == "ARG")
        .map(|(_, arg)| arg.split('=').next().unwrap().to_string())
        .filter(|name| name.starts_with("VUE_APP_"))
        .collect();
    let wanted: BTreeSet<String> = VUE_SAMPLE_VARIABLES.map(String::from).into();
    assert_eq!(args, wanted, "ARGs against the sample's src/main.js");
    for name in VUE_SAMPLE_VARIABLES {
        assert!(
            dockerfile.contains(&format!("\"{name}=${name}\"")),
            "{name} is not written to .env.local"
        );
    }
    let compose = compose();
    let passed: BTreeSet<String> = mapping(&compose["services"]["vue-app"]["build"]["args"])
        .into_keys()
        .collect();
    assert_eq!(passed, wanted, "compose's build args for vue-app");
    assert!(dockerfile.contains("github.com/cryptr-examples/cryptr-vue2-sample"));
    assert!(dockerfile.contains("=07-backend-courses-api"));
    // Vue CLI 4.5's webpack 4 needs OpenSSL 1.1, which Node 17 and later no longer have.
    let from = &steps
        .iter()
        .find(|(keyword, _)| keyword == "FROM")
        .unwrap()
        .1;
    assert!(from.starts_with("node:16 "), "{from}");
}

#[test]
fn vue_app_and_gateway_take_tenant_audience_and_origin_from_the_same_settings() {
    let compose = compose();
    // A distinct value for every setting, so that reading the wrong one shows.
    let dotenv: Env = env_example()
        .into_keys()
        .map(|name| (name.clone(), format!("value-of-{name}")))
        .collect();
    let app = vue_args(&compose, &dotenv);
    let gateway = gateway_env(&compose, &dotenv);
    for (app_name, gateway_name) in SHARED_SETTINGS {
        assert_eq!(
            app[app_name], gateway[gateway_name],
            "{app_name}, {gateway_name}"
        );
    }
}

#[test]
fn audience_and_origin_default_to_the_vue_apps_url() {
    // Cryptr puts the app's URL in `aud`, so the gateway must require that one, not its own.
    let compose = compose();
    let app = vue_args(&compose, &Env::new());
    let gateway = gateway_env(&compose, &Env::new());
    assert_eq!(app["VUE_APP_AUDIENCE"], VUE_APP_URL);
    assert_eq!(app["VUE_APP_DEFAULT_REDIRECT_URI"], VUE_APP_URL);
    assert_eq!(gateway["CRYPTR_AUDIENCE"], VUE_APP_URL);
    assert_eq!(gateway["CRYPTR_APP_ORIGIN"], VUE_APP_URL);
}

#[test]
fn compose_publishes_the_gateway_where_the_vue_sample_calls_it() {
    let compose = compose();
    let plan = gateway_plan(&gateway_env(&compose, &Env::new())).unwrap();
    let [published] = ports(&compose, "gateway")[..] else {
        panic!("the gateway publishes one port");
    };
    assert_eq!(published.host, url_port(VUE_SAMPLE_API));
    assert_eq!(
        published.container,
        plan.listen.port(),
        "GATEWAY_LISTEN's port"
    );
    let path = VUE_SAMPLE_API.trim_start_matches("http://localhost:8000");
    assert!(
        plan.routes.iter().any(|r| r.path.matches(path)),
        "no route in gateway.yaml serves {path}"
    );
}

#[test]
fn compose_publishes_the_vue_app_on_its_own_url() {
    let compose = compose();
    let [published] = ports(&compose, "vue-app")[..] else {
        panic!("the Vue app publishes one port");
    };
    assert_eq!(published.host, url_port(VUE_APP_URL));
    let dockerfile = instructions(&read(&dockerfile_path(&compose, "vue-app")));
    assert_eq!(exposed(&dockerfile), published.container);
}

#[test]
fn the_image_exposes_the_published_port_and_health_checks_the_admin_endpoint() {
    let compose = compose();
    let dockerfile = final_stage(&compose, "gateway");
    let [published] = ports(&compose, "gateway")[..] else {
        panic!("the gateway publishes one port");
    };
    assert_eq!(exposed(&dockerfile), published.container);
    let check = dockerfile
        .iter()
        .find(|(keyword, _)| keyword == "HEALTHCHECK")
        .expect("a HEALTHCHECK");
    // The admin listener of gateway.yaml as the container runs it, asked for /healthz.
    let plan = gateway_plan(&gateway_env(&compose, &Env::new())).unwrap();
    let admin = plan.admin.expect("the admin listener is on");
    assert!(
        admin.ip().is_loopback(),
        "{admin}: the check runs inside the container"
    );
    assert_eq!(health_port(&check.1), admin.port());
    let request = format!("GET {} HTTP/1.1", cryptr_gateway::admin::HEALTH_PATH);
    assert!(check.1.contains(&request), "{}", check.1);
}

#[test]
fn the_mounted_config_is_where_the_image_looks_for_it() {
    let compose = compose();
    let dockerfile = final_stage(&compose, "gateway");
    let config = dockerfile
        .iter()
        .find_map(|(keyword, args)| {
            let value = args.strip_prefix("GATEWAY_CONFIG=")?;
            (keyword == "ENV").then(|| value.to_string())
        })
        .expect("ENV GATEWAY_CONFIG=...");
    assert!(
        dockerfile.contains(&("COPY".to_string(), format!("gateway.yaml {config}"))),
        "the image must carry gateway.yaml at {config}"
    );
    let volumes = compose["services"]["gateway"]["volumes"]
        .as_sequence()
        .expect("gateway volumes");
    let mount = volumes
        .iter()
        .find(|v| v["target"].as_str() == Some(config.as_str()))
        .unwrap_or_else(|| panic!("nothing mounted at {config}"));
    assert_eq!(text(&mount["type"]), "bind");
    assert_eq!(mount["read_only"].as_bool(), Some(true));
    let source = docker_dir().join(text(&mount["source"]));
    assert_eq!(
        source.canonicalize().unwrap(),
        repo().join("gateway.yaml").canonicalize().unwrap()
    );
}

#[test]
fn the_image_runs_cryptr_gateway_run_as_a_non_root_user() {
    let compose = compose();
    let dockerfile = final_stage(&compose, "gateway");
    let one = |keyword: &str| {
        let found: Vec<&String> = dockerfile
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, args)| args)
            .collect();
        assert_eq!(found.len(), 1, "{keyword}: {found:?}");
        found[0].clone()
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_cryptr-gateway"))
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(exec_form(&one("ENTRYPOINT")), [bin]);
    assert_eq!(exec_form(&one("CMD")), ["run"]);
    assert!(dockerfile.contains(&(
        "COPY".to_string(),
        format!("--from=build /usr/local/bin/{bin} /usr/local/bin/{bin}")
    )));
    let user = one("USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "USER {user}");
    let build = read(&dockerfile_path(&compose, "gateway"));
    assert!(build.contains(&format!("cargo build --release --locked --bin {bin}")));
}

#[test]
fn the_builder_has_the_rust_version_cargo_toml_asks_for() {
    let compose = compose();
    let steps = instructions(&read(&dockerfile_path(&compose, "gateway")));
    let image = steps
        .iter()
        .find(|(keyword, _)| keyword == "FROM")
        .map(|(_, args)| args.split_whitespace().next().unwrap())
        .unwrap();
    let tag = image.strip_prefix("rust:").expect("a rust: builder image");
    let version = tag.split('-').next().unwrap();
    let numbers = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    let (have, need) = (numbers(version), numbers(env!("CARGO_PKG_RUST_VERSION")));
    // `rust:1` is the newest 1.x; a pinned `rust:1.NN` must be at least rust-version.
    assert!(
        (have.len() == 1 && have[0] == need[0]) || have >= need,
        "rust:{tag} is older than rust-version {}",
        env!("CARGO_PKG_RUST_VERSION")
    );
}

#[test]
fn demo_is_opt_in_and_uses_only_flags_the_binary_accepts() {
    let compose = compose();
    let demo = &compose["services"]["demo"];
    let profiles: Vec<&str> = demo["profiles"]
        .as_sequence()
        .expect("demo has profiles")
        .iter()
        .map(text)
        .collect();
    assert_eq!(profiles, ["demo"]);
    assert_eq!(demo["build"], compose["services"]["gateway"]["build"]);
    let command = command(&compose, "demo");
    assert_eq!(command[0], "demo");
    let out = Command::new(env!("CARGO_BIN_EXE_cryptr-gateway"))
        .args(["demo", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`cryptr-gateway demo --help` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for flag in command.iter().filter(|word| word.starts_with("--")) {
        // A whole word: `--listen` must not pass for being part of `--app-listen`.
        let listed = help.match_indices(flag.as_str()).any(|(at, _)| {
            let before = help[..at].chars().next_back();
            let after = help[at + flag.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '-');
            !word(before) && !word(after)
        });
        assert!(listed, "{flag} is not in:\n{help}");
    }
}

#[test]
fn demo_publishes_its_ports_on_the_same_numbers_inside_and_out() {
    // The demo derives its page's API URL, the allowed origin and the audience from its own
    // ports, so a port published under another number would break the page.
    let compose = compose();
    let command = command(&compose, "demo");
    let flag = |name: &str| -> u16 {
        let at = command.iter().position(|w| w == name).expect(name);
        let addr: std::net::SocketAddr = command[at + 1].parse().unwrap();
        assert!(
            addr.ip().is_unspecified(),
            "{name} {addr}: unreachable from outside"
        );
        addr.port()
    };
    let (listen, app) = (flag("--listen"), flag("--app-listen"));
    assert_eq!(listen, url_port(VUE_SAMPLE_API));
    assert_eq!(app, url_port(VUE_APP_URL));
    let published = ports(&compose, "demo");
    let containers: BTreeSet<u16> = published.iter().map(|p| p.container).collect();
    assert_eq!(containers, BTreeSet::from([listen, app]));
    for p in published {
        assert_eq!(p.host, p.container);
    }
    // The image's HEALTHCHECK looks at `run`'s port; the demo's gateway is elsewhere.
    let test: Vec<&str> = compose["services"]["demo"]["healthcheck"]["test"]
        .as_sequence()
        .expect("demo overrides the healthcheck")
        .iter()
        .map(text)
        .collect();
    assert_eq!(health_port(&test.join(" ")), listen);
}

// ---- reading the files ----------------------------------------------------------------------

/// Compose resolves relative paths from the compose file's folder.
fn docker_dir() -> PathBuf {
    repo().join("docker")
}

fn compose() -> Value {
    serde_yaml::from_str(&read(&docker_dir().join("compose.yaml"))).unwrap()
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value:?}"))
}

fn services(compose: &Value) -> Vec<(&str, &Value)> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(name, service)| (text(name), service))
        .collect()
}

/// A mapping of strings, such as `environment:` or `args:`, its values not yet interpolated.
fn mapping(value: &Value) -> BTreeMap<String, String> {
    value
        .as_mapping()
        .unwrap_or_else(|| panic!("not a mapping: {value:?}"))
        .iter()
        .map(|(k, v)| (text(k).to_string(), text(v).to_string()))
        .collect()
}

/// Every string value in the file: what Compose interpolates.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        Value::Mapping(map) => map.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

fn dockerfile_context(compose: &Value, service: &str) -> PathBuf {
    docker_dir().join(text(&compose["services"][service]["build"]["context"]))
}

fn dockerfile_path(compose: &Value, service: &str) -> PathBuf {
    let context = dockerfile_context(compose, service);
    let path = context.join(text(&compose["services"][service]["build"]["dockerfile"]));
    path.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `.env.example` as `NAME -> value`.
fn env_example() -> Env {
    read(&docker_dir().join(".env.example"))
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, value) = l.split_once('=').unwrap_or_else(|| panic!("`{l}`"));
            (name.to_string(), value.to_string())
        })
        .collect()
}

fn gateway_env(compose: &Value, dotenv: &Env) -> Env {
    interpolated(&compose["services"]["gateway"]["environment"], dotenv)
}

fn vue_args(compose: &Value, dotenv: &Env) -> Env {
    interpolated(&compose["services"]["vue-app"]["build"]["args"], dotenv)
}

fn interpolated(value: &Value, dotenv: &Env) -> Env {
    mapping(value)
        .into_iter()
        .map(|(k, v)| (k, interpolate(&v, dotenv)))
        .collect()
}

/// gateway.yaml compiled with `env` and nothing else, as in the container.
fn gateway_plan(env: &Env) -> Result<Plan, cryptr_gateway::config::ConfigErrors> {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    plan_in(repo(), &read(&repo().join("gateway.yaml")), &pairs)
}

/// The `${NAME}` and `${NAME:-default}` in `s`, in order. Other forms (`:?`, `-`) are refused
/// so that this test never silently misreads one.
fn references(s: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            rest = &rest[at + 2..];
            continue;
        }
        let end = rest[at..]
            .find('}')
            .unwrap_or_else(|| panic!("unclosed: {s}"))
            + at;
        let inner = &rest[at + 2..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default.to_string())),
            None => (inner, None),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "unexpected form ${{{inner}}} in {s}"
        );
        found.push((name.to_string(), default));
        rest = &rest[end + 1..];
    }
    found
}

/// Compose's interpolation for the forms [`references`] accepts; `:-` also covers empty.
fn interpolate(s: &str, dotenv: &Env) -> String {
    let mut out = s.to_string();
    for (name, default) in references(s) {
        let pattern = match &default {
            Some(d) => format!("${{{name}:-{d}}}"),
            None => format!("${{{name}}}"),
        };
        let value = match (dotenv.get(&name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => d,
            (None, None) => String::new(),
        };
        out = out.replacen(&pattern, &value, 1);
    }
    out
}

/// gateway.yaml without its comments, which it never interpolates.
fn uncommented(yaml: &str) -> String {
    yaml.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A Dockerfile as `(KEYWORD, arguments)`, continuation lines joined, comments dropped.
pub(crate) fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((keyword.to_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

/// The instructions after the last `FROM`: what the image is made of.
fn final_stage(compose: &Value, service: &str) -> Vec<(String, String)> {
    let steps = instructions(&read(&dockerfile_path(compose, service)));
    let last = steps.iter().rposition(|(k, _)| k == "FROM").unwrap();
    steps[last..].to_vec()
}

fn exposed(steps: &[(String, String)]) -> u16 {
    let all: Vec<&String> = steps
        .iter()
        .filter(|(k, _)| k == "EXPOSE")
        .map(|(_, args)| args)
        .collect();
    assert_eq!(all.len(), 1, "one EXPOSE: {all:?}");
    all[0].trim_end_matches("/tcp").parse().unwrap()
}

fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not the exec form: {args}: {e}"))
}

/// The port of `exec 3<>/dev/tcp/127.0.0.1/PORT`.
fn health_port(check: &str) -> u16 {
    let (_, after) = check
        .split_once("/dev/tcp/127.0.0.1/")
        .unwrap_or_else(|| panic!("no /dev/tcp probe in {check}"));
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

fn url_port(url: &str) -> u16 {
    let authority = url.trim_start_matches("http://").split('/').next().unwrap();
    authority.rsplit(':').next().unwrap().parse().unwrap()
}

fn command(compose: &Value, service: &str) -> Vec<String> {
    compose["services"][service]["command"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{service}: command as a list"))
        .iter()
        .map(|w| text(w).to_string())
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Published {
    host: u16,
    container: u16,
}

/// `ports:` in the short syntax, `[IP:]HOST:CONTAINER[/tcp]`.
fn ports(compose: &Value, service: &str) -> Vec<Published> {
    compose["services"][service]["ports"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{service}: no ports"))
        .iter()
        .map(|p| {
            let spec = text(p).trim_end_matches("/tcp");
            let mut parts = spec.rsplit(':');
            let container = parts.next().unwrap().parse().unwrap();
            let host = parts
                .next()
                .unwrap_or_else(|| panic!("{spec}: no host port"))
                .parse()
                .unwrap();
            Published { host, container }
        })
        .collect()
}

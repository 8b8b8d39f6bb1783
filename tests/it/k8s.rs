//! docker/k8s/ agrees with the binary: the Deployment's ports, probes, mount, arguments and
//! grace period against the ConfigMap's gateway.yaml as the library compiles it, the pods'
//! user against the image's, and the Service, HPA and PDB against the Deployment.
//!
//! No cluster runs where these tests run, so nothing is applied: the manifests are read as YAML
//! and cross-checked, and the container's command line is handed to the binary as `check`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cryptr_gateway::admin::{HEALTH_PATH, METRICS_PATH, READY_PATH};
use cryptr_gateway::config::{self, ConfigErrors, Plan};
use serde_yaml::Value;

use crate::support::{read, repo};

#[test]
fn the_kustomization_lists_every_manifest_in_the_folder() {
    let listed = resources();
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "listed twice: {listed:?}");
    let on_disk: BTreeSet<String> = std::fs::read_dir(k8s_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .filter(|name| name != "kustomization.yaml")
        .collect();
    assert_eq!(unique, on_disk, "kustomization.yaml's resources");
    let kustomization = manifest("kustomization.yaml");
    // A generator would add a hash suffix to the ConfigMap's name, and a new name per edit
    // means a rollout instead of the in-place update that the gateway's reload relies on.
    for generator in ["configMapGenerator", "secretGenerator"] {
        assert!(kustomization[generator].is_null(), "{generator}");
    }
}

#[test]
fn the_configmaps_gateway_yaml_compiles_with_the_deployments_environment() {
    let plan = plan().unwrap_or_else(|e| panic!("with {:?}:\n{e}", env()));
    // `dev_issuer: true` hands out tokens to whoever asks: never in a cluster.
    assert!(
        plan.dev_issuer.is_none(),
        "the ConfigMap's config has a dev issuer"
    );
    assert!(!plan.routes.is_empty());
    // Every variable the Deployment sets is one the config reads: a misspelt name would
    // otherwise leave the config on its default, silently.
    let text = uncommented(&config_text());
    for name in env().keys() {
        assert!(
            text.contains(&format!("${{{name}}}")) || text.contains(&format!("${{{name}:-")),
            "the Deployment sets {name}, which the ConfigMap's gateway.yaml never reads"
        );
    }
    // And each variable the config requires (no default) is one that the Deployment sets.
    let without: BTreeMap<String, String> = BTreeMap::new();
    let errors = compile(&without).expect_err("the config reads no variable");
    for name in env().keys() {
        let required = text.contains(&format!("${{{name}}}"));
        assert_eq!(
            errors.to_string().contains(&format!("`{name}`")),
            required,
            "{name}:\n{errors}"
        );
    }
}

#[test]
fn the_config_listens_on_the_container_ports_and_its_admin_off_loopback() {
    let plan = plan().unwrap();
    let deployment = deployment();
    let container = container(&deployment);
    let admin = plan
        .admin
        .expect("the admin listener is on: the probes need it");
    assert_eq!(
        plan.listen.port(),
        container_port(container, "http"),
        "listen"
    );
    assert_eq!(
        admin.port(),
        container_port(container, "admin"),
        "admin.listen"
    );
    // A pod's IP is not known in advance: only the unspecified address is reachable on it.
    for (what, addr) in [("listen", plan.listen), ("admin.listen", admin)] {
        assert!(
            addr.ip().is_unspecified(),
            "{what} {addr}: the kubelet's probes and the Service reach the pod on its IP"
        );
    }
    let ports: BTreeSet<&str> = sequence(&container["ports"])
        .iter()
        .map(|p| text(&p["name"]))
        .collect();
    assert_eq!(ports, BTreeSet::from(["admin", "http"]));
}

#[test]
fn probes_point_at_the_admin_endpoints_of_the_binary() {
    let deployment = deployment();
    let container = container(&deployment);
    let admin = container_port(container, "admin");
    for (probe, path) in [
        ("readinessProbe", READY_PATH),
        ("livenessProbe", HEALTH_PATH),
        ("startupProbe", HEALTH_PATH),
    ] {
        let get = &container[probe]["httpGet"];
        if probe == "startupProbe" && container[probe].is_null() {
            continue;
        }
        assert_eq!(text(&get["path"]), path, "{probe}");
        assert_eq!(resolve_port(container, &get["port"]), admin, "{probe}");
        assert!(get["scheme"].is_null() || text(&get["scheme"]) == "HTTP");
    }
}

#[test]
fn prometheus_scrapes_the_admin_metrics_endpoint() {
    let deployment = deployment();
    let container = container(&deployment);
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(text(&annotations["prometheus.io/scrape"]), "true");
    assert_eq!(text(&annotations["prometheus.io/path"]), METRICS_PATH);
    let port: u16 = text(&annotations["prometheus.io/port"]).parse().unwrap();
    assert_eq!(port, container_port(container, "admin"));
}

#[test]
fn the_config_is_mounted_as_a_folder_from_the_configmap_where_the_args_point() {
    let deployment = deployment();
    let container = container(&deployment);
    let config = config_arg(container);
    let (dir, file) = (config.parent().unwrap(), file_name(&config));
    let mount = sequence(&container["volumeMounts"])
        .iter()
        .find(|m| Path::new(text(&m["mountPath"])) == dir)
        .unwrap_or_else(|| panic!("nothing mounted at {}", dir.display()));
    // The kubelet updates a ConfigMap volume by swapping its `..data` symlink; a subPath
    // mount is a copy that never changes, so the gateway would never reload.
    assert!(mount["subPath"].is_null() && mount["subPathExpr"].is_null());
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
    let volume = sequence(&deployment["spec"]["template"]["spec"]["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mount's volume");
    let config_map = config_map();
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"]);
    assert!(
        volume["configMap"]["items"].is_null(),
        "every key of the ConfigMap, under its own name"
    );
    assert!(
        !config_map["data"][file.as_str()].is_null(),
        "the ConfigMap has no key {file}"
    );
    // The image's GATEWAY_CONFIG is the same file, so that `kubectl exec ... cryptr-gateway
    // check` without -c checks what the pod serves.
    let image_config = dockerfile_final_stage()
        .into_iter()
        .find_map(|(keyword, args)| {
            let value = args.strip_prefix("GATEWAY_CONFIG=")?;
            (keyword == "ENV").then(|| value.to_string())
        })
        .expect("ENV GATEWAY_CONFIG=... in docker/Dockerfile");
    assert_eq!(config, Path::new(&image_config));
}

#[test]
fn the_container_args_are_a_command_line_the_binary_accepts() {
    let deployment = deployment();
    let container = container(&deployment);
    assert!(
        container["command"].is_null(),
        "the image's ENTRYPOINT runs"
    );
    let args = strings(&container["args"]);
    assert_eq!(args[0], "run");
    let config = config_arg(container);
    let mounted = Mounted::new("args");
    // `check` takes the same flags as `run` and stops after compiling the config; the file is
    // where the ConfigMap would put it, the environment the Deployment's and nothing else.
    let mut check: Vec<String> = args.clone();
    check[0] = "check".into();
    for arg in &mut check {
        if Path::new(arg.as_str()) == config {
            *arg = mounted.0.join(file_name(&config)).display().to_string();
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_cryptr-gateway"))
        .args(&check)
        .env_clear()
        .envs(env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cryptr-gateway {check:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pods_run_as_the_images_non_root_user_locked_down() {
    let deployment = deployment();
    let container = container(&deployment);
    let pod = &deployment["spec"]["template"]["spec"];
    // The container's securityContext overrides the pod's, field by field.
    let field = |name: &str| -> Value {
        let own = &container["securityContext"][name];
        if own.is_null() {
            pod["securityContext"][name].clone()
        } else {
            own.clone()
        }
    };
    let user = dockerfile_final_stage()
        .into_iter()
        .filter(|(keyword, _)| keyword == "USER")
        .map(|(_, args)| args)
        .next_back()
        .expect("USER in docker/Dockerfile");
    let (uid, gid) = user.split_once(':').unwrap_or((&user, &user));
    assert_eq!(field("runAsNonRoot").as_bool(), Some(true));
    assert_eq!(
        field("runAsUser").as_u64(),
        Some(uid.parse().unwrap()),
        "USER {user}"
    );
    assert_eq!(
        field("runAsGroup").as_u64(),
        Some(gid.parse().unwrap()),
        "USER {user}"
    );
    assert_eq!(field("readOnlyRootFilesystem").as_bool(), Some(true));
    assert_eq!(field("allowPrivilegeEscalation").as_bool(), Some(false));
    assert_eq!(text(&field("seccompProfile")["type"]), "RuntimeDefault");
    assert_eq!(
        strings(&container["securityContext"]["capabilities"]["drop"]),
        ["ALL"]
    );
    assert!(container["securityContext"]["capabilities"]["add"].is_null());
    // Dropping every capability is possible because neither port is privileged.
    let plan = plan().unwrap();
    assert!(plan.listen.port() >= 1024 && plan.admin.unwrap().port() >= 1024);
}

#[test]
fn the_grace_period_outlasts_the_prestop_sleep_and_the_drain() {
    let deployment = deployment();
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    let drain = plan().unwrap().limits.drain_timeout;
    // The preStop hook runs before SIGTERM, inside the same grace period.
    let pre_stop = &container(&deployment)["lifecycle"]["preStop"];
    let sleep = match strings(&pre_stop["exec"]["command"]).as_slice() {
        [sleep, seconds] if sleep == "sleep" => Duration::from_secs(seconds.parse().unwrap()),
        other => panic!("preStop: expected [sleep, N], got {other:?}"),
    };
    assert!(sleep > Duration::ZERO);
    assert!(
        grace > sleep + drain,
        "terminationGracePeriodSeconds {grace:?}: the kubelet kills the pod before \
         preStop ({sleep:?}) and limits.drain_timeout ({drain:?}) are over"
    );
}

#[test]
fn rollouts_start_a_ready_pod_before_stopping_one() {
    let deployment = deployment();
    let strategy = &deployment["spec"]["strategy"];
    assert_eq!(text(&strategy["type"]), "RollingUpdate");
    assert_eq!(
        strategy["rollingUpdate"]["maxUnavailable"].as_u64(),
        Some(0)
    );
    assert_eq!(strategy["rollingUpdate"]["maxSurge"].as_u64(), Some(1));
    let labels = pod_labels(&deployment);
    let spread = sequence(&deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]);
    let keys: BTreeSet<&str> = spread
        .iter()
        .inspect(|c| {
            assert!(is_subset(
                &mapping(&c["labelSelector"]["matchLabels"]),
                &labels
            ))
        })
        .map(|c| text(&c["topologyKey"]))
        .collect();
    assert!(keys.contains("kubernetes.io/hostname"), "{keys:?}");
}

#[test]
fn the_service_sends_its_port_to_the_http_container_port_only() {
    let deployment = deployment();
    let container = container(&deployment);
    let service = find("Service");
    assert_eq!(service["metadata"]["name"], deployment["metadata"]["name"]);
    let selector = mapping(&service["spec"]["selector"]);
    assert_eq!(selector, deployment_selector(&deployment));
    assert!(is_subset(&selector, &pod_labels(&deployment)));
    let ports = sequence(&service["spec"]["ports"]);
    let targets: Vec<u16> = ports
        .iter()
        .map(|p| resolve_port(container, &p["targetPort"]))
        .collect();
    // The admin port serves /config and /metrics: pods only, never behind the Service.
    assert_eq!(targets, [container_port(container, "http")]);
}

#[test]
fn the_hpa_owns_the_replica_count_of_the_deployment() {
    let deployment = deployment();
    let hpa = find("HorizontalPodAutoscaler");
    assert_eq!(text(&hpa["apiVersion"]), "autoscaling/v2");
    let target = &hpa["spec"]["scaleTargetRef"];
    assert_eq!(text(&target["apiVersion"]), text(&deployment["apiVersion"]));
    assert_eq!(text(&target["kind"]), "Deployment");
    assert_eq!(target["name"], deployment["metadata"]["name"]);
    let min = hpa["spec"]["minReplicas"].as_u64().unwrap();
    let max = hpa["spec"]["maxReplicas"].as_u64().unwrap();
    assert_eq!(min, 3, "one pod lost leaves two");
    assert!(max > min);
    // A `replicas:` in the Deployment would undo the HPA's scaling at each `kubectl apply`.
    assert!(
        deployment["spec"]["replicas"].is_null(),
        "the Deployment sets replicas; the HPA's minReplicas is the count"
    );
    // Utilization is a share of the request: without one, the HPA cannot compute it.
    for metric in sequence(&hpa["spec"]["metrics"]) {
        let resource = text(&metric["resource"]["name"]);
        assert!(
            !container(&deployment)["resources"]["requests"][resource].is_null(),
            "the HPA scales on {resource}, which the container does not request"
        );
    }
}

#[test]
fn the_pdb_covers_the_pods_and_never_blocks_a_drain() {
    let deployment = deployment();
    let pdb = find("PodDisruptionBudget");
    assert_eq!(text(&pdb["apiVersion"]), "policy/v1");
    let selector = mapping(&pdb["spec"]["selector"]["matchLabels"]);
    assert!(!selector.is_empty() && is_subset(&selector, &pod_labels(&deployment)));
    let min_replicas = find("HorizontalPodAutoscaler")["spec"]["minReplicas"]
        .as_u64()
        .unwrap();
    // At the fewest replicas, one pod may still go, and not all of them at once.
    let spec = &pdb["spec"];
    let allowed = match (
        spec["maxUnavailable"].as_u64(),
        spec["minAvailable"].as_u64(),
    ) {
        (Some(max), None) => max,
        (None, Some(min)) => min_replicas.saturating_sub(min),
        _ => panic!("one integer maxUnavailable or minAvailable: {spec:?}"),
    };
    assert!(
        allowed >= 1 && allowed < min_replicas,
        "{allowed} of {min_replicas}"
    );
}

#[test]
fn the_memory_request_and_limit_fit_the_benchmarks_measurements() {
    let deployment = deployment();
    let resources = &container(&deployment)["resources"];
    let request = bytes(text(&resources["requests"]["memory"]));
    let limit = bytes(text(&resources["limits"]["memory"]));
    let bench = read(&repo().join("bench/RESULTS.md"));
    let mib = |after: &str| -> f64 {
        let (_, rest) = bench
            .split_once(after)
            .unwrap_or_else(|| panic!("`{after}` not in bench/RESULTS.md"));
        let number = rest.trim_start().split(' ').next().unwrap();
        number.parse::<f64>().unwrap() * 1024.0 * 1024.0
    };
    let idle = mib("RSS at idle:");
    let peak = mib("peak during the run:");
    let thousand = mib("with 1,000 open keep-alive connections:");
    assert!(
        request as f64 >= peak,
        "the request is under the measured peak"
    );
    // Growth from idle to 1,000 connections (measured on a fresh process) is per-connection;
    // at max_connections, plus a full token cache (its default bound, 64 MiB, README), the pod
    // must still be under its limit.
    let connections = plan().unwrap().limits.max_connections as f64;
    let token_cache = 64.0 * 1024.0 * 1024.0;
    let estimate = idle + (thousand - idle) / 1000.0 * connections + token_cache;
    assert!(
        (limit as f64) > estimate,
        "limits.max_connections {connections}: about {:.0} MiB by bench/RESULTS.md, over \
         the {} MiB limit",
        estimate / 1048576.0,
        limit >> 20
    );
}

// ---- reading the files ----------------------------------------------------------------------

fn k8s_dir() -> PathBuf {
    repo().join("docker/k8s")
}

/// One manifest file, one document.
fn manifest(file: &str) -> Value {
    let path = k8s_dir().join(file);
    serde_yaml::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn resources() -> Vec<String> {
    strings(&manifest("kustomization.yaml")["resources"])
}

/// The one resource of `kind` among the kustomization's.
fn find(kind: &str) -> Value {
    let mut found: Vec<Value> = resources()
        .iter()
        .map(|file| manifest(file))
        .filter(|m| m["kind"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} in docker/k8s");
    found.pop().unwrap()
}

fn deployment() -> Value {
    find("Deployment")
}

fn config_map() -> Value {
    find("ConfigMap")
}

fn container(deployment: &Value) -> &Value {
    match sequence(&deployment["spec"]["template"]["spec"]["containers"]) {
        [one] => one,
        all => panic!("one container, not {}", all.len()),
    }
}

fn pod_labels(deployment: &Value) -> BTreeMap<String, String> {
    mapping(&deployment["spec"]["template"]["metadata"]["labels"])
}

fn deployment_selector(deployment: &Value) -> BTreeMap<String, String> {
    let selector = mapping(&deployment["spec"]["selector"]["matchLabels"]);
    assert!(is_subset(&selector, &pod_labels(deployment)));
    selector
}

fn is_subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    !small.is_empty() && small.iter().all(|(k, v)| big.get(k) == Some(v))
}

fn container_port(container: &Value, name: &str) -> u16 {
    sequence(&container["ports"])
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
        .try_into()
        .unwrap()
}

/// A probe's or a Service's port: a number, or the name of a container port.
fn resolve_port(container: &Value, port: &Value) -> u16 {
    match port {
        Value::Number(n) => n.as_u64().unwrap().try_into().unwrap(),
        Value::String(name) => container_port(container, name),
        other => panic!("not a port: {other:?}"),
    }
}

/// The container's environment: literal values only, which is all that a test can resolve.
fn env() -> BTreeMap<String, String> {
    let deployment = deployment();
    sequence(&container(&deployment)["env"])
        .iter()
        .map(|var| {
            let name = text(&var["name"]);
            assert!(var["valueFrom"].is_null(), "{name}: valueFrom");
            (name.to_string(), text(&var["value"]).to_string())
        })
        .collect()
}

/// The file that `-c` / `--config` names.
fn config_arg(container: &Value) -> PathBuf {
    let args = strings(&container["args"]);
    let mut found = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if let Some(value) = arg.strip_prefix("--config=") {
            found.push(value.to_string());
        } else if arg == "-c" || arg == "--config" {
            found.push(args.get(i + 1).expect("a value after -c").clone());
        }
    }
    match found.as_slice() {
        [one] => PathBuf::from(one),
        _ => panic!("one -c in {args:?}"),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_string()
}

/// The ConfigMap's copy of the file the container's `-c` names.
fn config_text() -> String {
    let deployment = deployment();
    let file = file_name(&config_arg(container(&deployment)));
    text(&config_map()["data"][file.as_str()]).to_string()
}

/// The ConfigMap's keys as files in a folder of their own, as the kubelet mounts them.
struct Mounted(PathBuf);

impl Mounted {
    fn new(test: &str) -> Mounted {
        let dir = std::env::temp_dir().join(format!(
            "cryptr-gateway-k8s-{}-{test}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (key, value) in mapping(&config_map()["data"]) {
            std::fs::write(dir.join(key), value).unwrap();
        }
        Mounted(dir)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The ConfigMap's gateway.yaml compiled with `env` and nothing else, in a folder holding the
/// ConfigMap's other keys, as in the pod.
fn compile(env: &BTreeMap<String, String>) -> Result<Plan, ConfigErrors> {
    let mounted = Mounted::new("compile");
    let env = env.clone();
    let deployment = deployment();
    let file = file_name(&config_arg(container(&deployment)));
    config::load_str(&config_text(), &file, &mounted.0, &move |name| {
        env.get(name).cloned()
    })
}

fn plan() -> Result<Plan, ConfigErrors> {
    compile(&env())
}

/// A config file without its comments, which it never interpolates.
fn uncommented(yaml: &str) -> String {
    yaml.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// docker/Dockerfile's last stage as `(KEYWORD, arguments)`, comments dropped and continuation
/// lines joined.
fn dockerfile_final_stage() -> Vec<(String, String)> {
    let mut steps = crate::docker::instructions(&read(&repo().join("docker/Dockerfile")));
    let last = steps.iter().rposition(|(k, _)| k == "FROM").unwrap();
    steps.split_off(last)
}

/// A Kubernetes memory quantity (`256Mi`, `1G`, `1048576`) in bytes.
fn bytes(quantity: &str) -> u64 {
    let units: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(number) = quantity.strip_suffix(suffix) {
            return number.parse::<u64>().unwrap() * factor;
        }
    }
    quantity
        .parse()
        .unwrap_or_else(|_| panic!("quantity {quantity}"))
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value:?}"))
}

fn sequence(value: &Value) -> &[Value] {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("not a list: {value:?}"))
}

fn strings(value: &Value) -> Vec<String> {
    sequence(value)
        .iter()
        .map(|v| text(v).to_string())
        .collect()
}

fn mapping(value: &Value) -> BTreeMap<String, String> {
    value
        .as_mapping()
        .unwrap_or_else(|| panic!("not a mapping: {value:?}"))
        .iter()
        .map(|(k, v)| (text(k).to_string(), text(v).to_string()))
        .collect()
}

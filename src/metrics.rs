//! Prometheus metrics, through `prometheus-client` (one registry per server, so tests in one
//! process do not share counters).
//!
//! Counters that only the request path knows (requests, auth failures, upstream errors) are
//! kept here and bumped by the finish phase. What the plan knows (issuers' keys, the token
//! cache) is read at scrape time by a collector, from whichever plan serves then.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Method;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::config::Plan;

/// The request's method, bounded: extension methods share one label value.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct MethodClass(&'static str);

/// The label values of [`MethodClass`], in the order of [`MethodClass::index`].
const METHOD_CLASSES: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];

impl MethodClass {
    pub fn of(m: &Method) -> MethodClass {
        MethodClass(METHOD_CLASSES[MethodClass::index(m)])
    }

    /// Where the method's label sits in [`METHOD_CLASSES`].
    fn index(m: &Method) -> usize {
        match *m {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::PATCH => 4,
            Method::DELETE => 5,
            Method::OPTIONS => 6,
            _ => 7,
        }
    }
}

impl EncodeLabelValue for MethodClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0)
    }
}

/// A route's name as a label value: shared, so counting a request allocates nothing.
///
/// It also keeps the route's series, once looked up, with the id of the `Metrics` they came
/// from (tests run several servers in one process): the duration histogram's, and the
/// requests counter's by method and status. A family's lookup hashes the labels with SipHash
/// (prometheus-client gives no other hasher) and compares them under a lock, about 400
/// instructions a request; a kept series is two atomic loads away. Equality and hashing are
/// the name's.
#[derive(Clone, Debug)]
pub struct RouteLabel {
    name: Arc<str>,
    duration: std::sync::OnceLock<(u64, Histogram)>,
    /// Shared by the label's clones (a family's keys among them), so it is made once.
    requests: Arc<std::sync::OnceLock<RequestSeries>>,
}

/// How many statuses a route keeps counters for, per method; the rest are looked up in the
/// family. A route answers a handful: 200, 304, 401, 403, 404, 502, ...
const STATUS_SLOTS: usize = 8;

/// The requests counter's series of one route, by method and then status, each slot filled
/// once with the first status that needs it and never changed (so a reader needs no lock).
/// Written by hand: prometheus-client has no per-label handle cache, and a map behind a lock
/// is what this avoids.
#[derive(Debug)]
struct RequestSeries {
    /// The `Metrics` the counters belong to.
    metrics: u64,
    slots: [[std::sync::OnceLock<(u16, Counter)>; STATUS_SLOTS]; METHOD_CLASSES.len()],
}

impl RequestSeries {
    fn new(metrics: u64) -> RequestSeries {
        RequestSeries {
            metrics,
            slots: std::array::from_fn(|_| std::array::from_fn(|_| std::sync::OnceLock::new())),
        }
    }

    /// The counter of (`method`, `status`), made by `make` for a status seen first; `None`
    /// when the method's slots are all taken by other statuses.
    fn counter(&self, method: usize, status: u16, make: impl Fn() -> Counter) -> Option<&Counter> {
        for slot in self.slots.get(method)? {
            // Two threads may race for an empty slot with different statuses: one wins it,
            // and the other goes on to the next.
            let (held, counter) = slot.get_or_init(|| (status, make()));
            if *held == status {
                return Some(counter);
            }
        }
        None
    }
}

impl PartialEq for RouteLabel {
    fn eq(&self, other: &RouteLabel) -> bool {
        self.name == other.name
    }
}

impl Eq for RouteLabel {}

impl std::hash::Hash for RouteLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl RouteLabel {
    pub fn new(name: &str) -> RouteLabel {
        RouteLabel {
            name: Arc::from(name),
            duration: std::sync::OnceLock::new(),
            requests: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// The label of requests that matched no route: `-`.
    pub fn none() -> &'static RouteLabel {
        static NONE: std::sync::OnceLock<RouteLabel> = std::sync::OnceLock::new();
        NONE.get_or_init(|| RouteLabel::new("-"))
    }
}

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.name)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: RouteLabel,
    method: MethodClass,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: RouteLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    route: RouteLabel,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Every metric of one server.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    auth_failures: Family<ReasonLabels, Counter>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    in_flight: Gauge,
    connections: Gauge,
    connections_refused: Counter,
    reloads: Family<ResultLabels, Counter>,
    /// Unix seconds of the last successful (re)load, for alerting on a stale config.
    last_reload: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Unique in the process: whose series a [`RouteLabel`] keeps.
    id: u64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What the finish phase reports of one request.
pub struct RequestOutcome<'a> {
    /// [`RouteLabel::none`] when no route matched.
    pub route: &'a RouteLabel,
    pub method: &'a Method,
    pub status: u16,
    pub duration: Duration,
    /// The error code of a refused token (`invalid_token`, `insufficient_scope`, ...).
    pub auth_failure: Option<&'static str>,
    /// `connect`, `timeout` or `reset`.
    pub upstream_error: Option<&'static str>,
}

impl Metrics {
    /// Metrics for a server whose plan `plan` holds (read at each scrape).
    pub fn new(plan: Arc<ArcSwap<Plan>>) -> Metrics {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("cryptr_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route (`-`: none matched), method and status",
            requests.clone(),
        );
        // 100us to ~26s: a cached-token request sits at the bottom, a slow upstream at the top.
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0001, 2.0, 19,
            ))
        });
        registry.register_with_unit(
            "request_duration",
            "Time from the request head to the response head, by route",
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Requests refused by token checks, by reason (the error code of the answer)",
            auth_failures.clone(),
        );
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Requests whose upstream failed, by route and kind (connect, timeout, reset)",
            upstream_errors.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being served, response bodies still streaming included",
            in_flight.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open on the traffic listener",
            connections.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Client connections closed at once because limits.max_connections was reached",
            connections_refused.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reloads, by result (success, failure)",
            reloads.clone(),
        );
        // Both series exist from the start: an alert on failures sees 0, not nothing.
        for result in ["success", "failure"] {
            let _ = reloads.get_or_create(&ResultLabels { result });
        }
        let last_reload = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "When the serving config was loaded (Unix time)",
            last_reload.clone(),
        );
        last_reload.set(unix_now());
        registry.register(
            "build",
            "The gateway's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register_collector(Box::new(PlanCollector { plan }));
        Metrics {
            registry: root,
            requests,
            duration,
            auth_failures,
            upstream_errors,
            in_flight,
            connections,
            connections_refused,
            reloads,
            last_reload,
            id: {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        }
    }

    /// The finish phase's report of one request.
    pub fn record(&self, o: &RequestOutcome<'_>) {
        let labels = || RequestLabels {
            route: o.route.clone(),
            method: MethodClass::of(o.method),
            status: o.status,
        };
        let series = o.route.requests.get_or_init(|| RequestSeries::new(self.id));
        let kept = (series.metrics == self.id)
            .then(|| {
                series.counter(MethodClass::index(o.method), o.status, || {
                    self.requests.get_or_create(&labels()).clone()
                })
            })
            .flatten();
        match kept {
            Some(counter) => {
                counter.inc();
            }
            // Another server's route (tests), or a status past the route's slots.
            None => {
                self.requests.get_or_create(&labels()).inc();
            }
        }
        let (from, histogram) = o.route.duration.get_or_init(|| {
            let series = self.duration.get_or_create(&RouteLabels {
                route: o.route.clone(),
            });
            (self.id, series.clone())
        });
        if *from == self.id {
            histogram.observe(o.duration.as_secs_f64());
        } else {
            // Another server's route (tests): its own family, looked up.
            self.duration
                .get_or_create(&RouteLabels {
                    route: o.route.clone(),
                })
                .observe(o.duration.as_secs_f64());
        }
        if let Some(reason) = o.auth_failure {
            self.auth_failures
                .get_or_create(&ReasonLabels { reason })
                .inc();
        }
        if let Some(kind) = o.upstream_error {
            self.upstream_errors
                .get_or_create(&UpstreamErrorLabels {
                    route: o.route.clone(),
                    kind,
                })
                .inc();
        }
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Counts an open connection until the guard is dropped.
    pub fn connection(&self) -> InFlight {
        self.connections.inc();
        InFlight(self.connections.clone())
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        if ok {
            self.last_reload.set(unix_now());
        }
    }

    /// Open client connections now.
    pub fn open_connections(&self) -> i64 {
        self.connections.get()
    }

    /// Requests in flight now.
    pub fn requests_in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// The Prometheus text format (0.0.4) of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Decrements its gauge when dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Reads, at each scrape, what the serving plan knows: its issuers' keys and its token cache.
#[derive(Debug)]
struct PlanCollector {
    plan: Arc<ArcSwap<Plan>>,
}

impl Collector for PlanCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let plan = self.plan.load();
        let auth = &plan.auth;
        let mut seen = std::collections::HashSet::new();
        let issuers: Vec<_> = auth
            .issuers
            .iter()
            .filter(|i| seen.insert(i.iss.as_str()))
            .map(|i| (i.iss.as_str(), auth.cache.status(&i.keys)))
            .collect();

        let mut fetches = encoder.encode_descriptor(
            "jwks_fetches",
            "JWKS fetches, by issuer and result (success, failure)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (iss, s) in &issuers {
            for (result, n) in [
                ("success", s.fetches.saturating_sub(s.failures)),
                ("failure", s.failures),
            ] {
                let labels = [("issuer", *iss), ("result", result)];
                ConstCounter::new(n).encode(fetches.encode_family(&labels)?)?;
            }
        }

        let mut keys = encoder.encode_descriptor(
            "jwks_keys",
            "Signing keys held, by issuer (0: none usable)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (iss, s) in &issuers {
            let n = i64::try_from(s.keys).unwrap_or(i64::MAX);
            ConstGauge::new(n).encode(keys.encode_family(&[("issuer", *iss)])?)?;
        }

        let mut age = encoder.encode_descriptor(
            "jwks_seconds_since_last_good_fetch",
            "Seconds since the issuer's keys were last fetched successfully (absent: never)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (iss, s) in &issuers {
            if let Some(since) = s.since_last_good {
                ConstGauge::new(since.as_secs_f64())
                    .encode(age.encode_family(&[("issuer", *iss)])?)?;
            }
        }

        if let Some(cache) = &auth.token_cache {
            let stats = cache.stats();
            let mut lookups = encoder.encode_descriptor(
                "token_cache_lookups",
                "Token cache lookups since the config was loaded, by result (hit, miss, bad_hit: a token refused moments ago)",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (result, n) in [
                ("hit", stats.hits),
                ("miss", stats.misses),
                ("bad_hit", stats.bad_hits),
            ] {
                ConstCounter::new(n).encode(lookups.encode_family(&[("result", result)])?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        let yaml = "listen: 127.0.0.1:0\nroutes:\n  - name: api\n    match: { prefix: / }\n    upstream: builtin:echo\n    auth: none\n";
        let plan =
            crate::config::load_str(yaml, "gateway.yaml", std::path::Path::new("."), &|_| None)
                .unwrap();
        Metrics::new(Arc::new(ArcSwap::from_pointee(plan)))
    }

    fn observe(metrics: &Metrics, route: &RouteLabel, times: usize) {
        for _ in 0..times {
            metrics.record(&RequestOutcome {
                route,
                method: &Method::GET,
                status: 200,
                duration: Duration::from_millis(3),
                auth_failure: None,
                upstream_error: None,
            });
        }
    }

    fn duration_count(metrics: &Metrics) -> String {
        let text = metrics.encode().unwrap();
        text.lines()
            .find(|l| l.starts_with("cryptr_gateway_request_duration_seconds_count{route=\"api\"}"))
            .unwrap_or("none")
            .to_string()
    }

    #[test]
    fn a_route_keeps_its_duration_series_and_each_server_counts_only_its_own() {
        let route = RouteLabel::new("api");
        let (one, two) = (metrics(), metrics());
        observe(&one, &route, 3);
        // The route's kept series is `one`'s: `two` must not count into it.
        observe(&two, &route, 2);
        assert!(
            duration_count(&one).ends_with(" 3"),
            "{}",
            duration_count(&one)
        );
        assert!(
            duration_count(&two).ends_with(" 2"),
            "{}",
            duration_count(&two)
        );
        // A label made anew (a reload) finds the same series.
        observe(&one, &RouteLabel::new("api"), 1);
        assert!(
            duration_count(&one).ends_with(" 4"),
            "{}",
            duration_count(&one)
        );
    }

    /// The requests counter's line for (route `api`, `method`, `status`), as scraped.
    fn requests_count(metrics: &Metrics, method: &str, status: u16) -> u64 {
        let text = metrics.encode().unwrap();
        let want =
            format!("cryptr_gateway_requests_total{{route=\"api\",method=\"{method}\",status=\"{status}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&want))
            .map_or(0, |n| n.parse().unwrap())
    }

    #[test]
    fn requests_are_counted_exactly_by_method_and_status_past_the_kept_series() {
        let route = RouteLabel::new("api");
        let (one, two) = (metrics(), metrics());
        // More statuses than a method keeps series for, in two methods, on two servers.
        let statuses: Vec<u16> = (0..STATUS_SLOTS as u16 + 4).map(|i| 200 + i).collect();
        for (i, &status) in statuses.iter().enumerate() {
            for (metrics, method) in [
                (&one, Method::GET),
                (&one, Method::POST),
                (&two, Method::GET),
            ] {
                for _ in 0..=i {
                    metrics.record(&RequestOutcome {
                        route: &route,
                        method: &method,
                        status,
                        duration: Duration::from_millis(1),
                        auth_failure: None,
                        upstream_error: None,
                    });
                }
            }
        }
        for (i, &status) in statuses.iter().enumerate() {
            let times = i as u64 + 1;
            assert_eq!(requests_count(&one, "GET", status), times, "GET {status}");
            assert_eq!(requests_count(&one, "POST", status), times, "POST {status}");
            assert_eq!(
                requests_count(&two, "GET", status),
                times,
                "two: GET {status}"
            );
            assert_eq!(requests_count(&one, "PUT", status), 0);
        }
        // A label made anew (a reload) counts into the same series.
        let again = RouteLabel::new("api");
        one.record(&RequestOutcome {
            route: &again,
            method: &Method::GET,
            status: 200,
            duration: Duration::from_millis(1),
            auth_failure: None,
            upstream_error: None,
        });
        assert_eq!(requests_count(&one, "GET", 200), 2);
    }
}

//! Graceful shutdown: stop accepting, let in-flight requests finish, bounded by the drain.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cryptr_gateway::body;
use http::{Request, Response};
use hyper::body::Incoming;

use crate::support::{self, config, poll_until, Gateway, Upstream};

async fn slow_upstream(delay: Duration) -> (Upstream, Arc<AtomicUsize>) {
    let started = Arc::new(AtomicUsize::new(0));
    let seen = started.clone();
    let up = Upstream::serve(move |_req: Request<Incoming>| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(delay).await;
            Response::new(body::full("finished"))
        }
    })
    .await;
    (up, started)
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_then_stops() {
    let (up, started) = slow_upstream(Duration::from_millis(500)).await;
    let mut gw = Gateway::start(&config(&format!(
        "  - name: slow\n    match: {{ prefix: / }}\n    upstream: {}\n    auth: none\n",
        up.url()
    )))
    .await;
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { support::client().get(url).send().await });
    poll_until(
        Duration::from_secs(5),
        "the request to reach the upstream",
        || started.load(Ordering::SeqCst) == 1,
    )
    .await;
    let serving = gw.begin_shutdown();
    let res = in_flight
        .await
        .unwrap()
        .expect("the in-flight request was cut");
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "finished");
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("the server did not stop after draining")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(gw.addr).await.is_err(),
        "the listener still accepts after shutdown"
    );
}

#[tokio::test]
async fn drain_timeout_bounds_the_wait_for_in_flight_requests() {
    let (up, started) = slow_upstream(Duration::from_secs(60)).await;
    let mut gw = Gateway::start(&format!(
        "limits: {{ drain_timeout: 200ms }}\n{}",
        config(&format!(
            "  - name: slow\n    match: {{ prefix: / }}\n    upstream: {}\n    timeout: 120s\n    auth: none\n",
            up.url()
        ))
    ))
    .await;
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { support::client().get(url).send().await });
    poll_until(
        Duration::from_secs(5),
        "the request to reach the upstream",
        || started.load(Ordering::SeqCst) == 1,
    )
    .await;
    let serving = gw.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("the drain timeout did not end the wait")
        .unwrap();
    // The request did not finish; whether the client sees an error now or later, it is not a
    // success.
    in_flight.abort();
}

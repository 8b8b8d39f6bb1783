//! Bodies stream through the gateway in both directions: nothing waits for a whole body.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cryptr_gateway::body::{self, Body, BoxError};
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;

use crate::support::{self, config, Gateway, Upstream};

const CHUNK: usize = 64 * 1024;

fn channel_stream<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}

fn big_route(upstream: &Upstream) -> String {
    config(&format!(
        "  - name: big\n    match: {{ prefix: /big }}\n    upstream: {}\n    max_body: 2GiB\n    auth: none\n",
        upstream.url()
    ))
}

#[tokio::test]
async fn download_reaches_the_client_while_the_upstream_is_still_sending() {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let up = Upstream::serve(move |_req: Request<Incoming>| {
        let rx = rx.lock().unwrap().take().expect("one request only");
        async move { Response::new(StreamBody::new(channel_stream(rx)).boxed_unsync()) }
    })
    .await;
    let gw = Gateway::start(&big_route(&up)).await;
    tx.send(Ok(Frame::data(Bytes::from_static(b"first piece"))))
        .await
        .unwrap();
    let mut res = support::client().get(gw.url("/big")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // The upstream has not finished (the sender is alive): a buffering proxy would hang here.
    let first = tokio::time::timeout(Duration::from_secs(5), res.chunk())
        .await
        .expect("the first piece did not stream through")
        .unwrap()
        .unwrap();
    assert_eq!(first, "first piece");
    tx.send(Ok(Frame::data(Bytes::from_static(b" and the rest"))))
        .await
        .unwrap();
    drop(tx);
    let mut rest = Vec::new();
    while let Some(c) = res.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b" and the rest");
}

#[tokio::test]
async fn upload_reaches_the_upstream_while_the_client_is_still_sending() {
    let (seen_tx, mut seen_rx) = mpsc::channel::<Bytes>(1);
    let up = Upstream::serve(move |req: Request<Incoming>| {
        let seen = seen_tx.clone();
        async move {
            let mut body = req.into_body();
            let mut total = 0usize;
            let mut told = false;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    total += d.len();
                    if !told {
                        told = true;
                        let _ = seen.send(d.clone()).await;
                    }
                }
            }
            Response::new(body::full(total.to_string()))
        }
    })
    .await;
    let gw = Gateway::start(&big_route(&up)).await;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let request = tokio::spawn(
        support::client()
            .post(gw.url("/big"))
            .body(reqwest::Body::wrap_stream(channel_stream(rx)))
            .send(),
    );
    tx.send(Ok(Bytes::from_static(b"head"))).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), seen_rx.recv())
        .await
        .expect("the first piece of the upload did not stream through")
        .unwrap();
    assert_eq!(first, "head");
    tx.send(Ok(Bytes::from_static(b"tail"))).await.unwrap();
    drop(tx);
    let res = request.await.unwrap().unwrap();
    assert_eq!(res.text().await.unwrap(), "8");
}

/// 256 MiB each way, generated and counted as it goes: the bytes arrive whole, and the
/// gateway (a 10 MiB default body limit aside) never needs the body in one piece.
#[tokio::test]
async fn large_bodies_cross_whole_in_both_directions() {
    const TOTAL: usize = 256 * 1024 * 1024;
    let piece = Bytes::from(vec![7u8; CHUNK]);
    let download = piece.clone();
    let up = Upstream::serve(move |req: Request<Incoming>| {
        let download = download.clone();
        async move {
            if req.method() == http::Method::GET {
                let frames = futures_util::stream::iter(
                    (0..TOTAL / CHUNK)
                        .map(move |_| Ok::<_, BoxError>(Frame::data(download.clone()))),
                );
                let body: Body = StreamBody::new(frames).boxed_unsync();
                return Response::new(body);
            }
            support::count_body(req).await
        }
    })
    .await;
    let gw = Gateway::start(&big_route(&up)).await;
    let c = support::client();

    let upload = futures_util::stream::iter(
        (0..TOTAL / CHUNK).map(move |_| Ok::<_, std::io::Error>(piece.clone())),
    );
    let res = c
        .post(gw.url("/big"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), TOTAL.to_string());

    let mut res = c.get(gw.url("/big")).send().await.unwrap();
    let mut received = 0usize;
    while let Some(chunk) = res.chunk().await.unwrap() {
        assert!(chunk.iter().all(|b| *b == 7));
        received += chunk.len();
    }
    assert_eq!(received, TOTAL);
}

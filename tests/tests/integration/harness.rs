//! The harness itself: the servers it starts are real and answer.

use std::time::Duration;

use custody_tests::{nats, NatsServer, StoreKind, TestApp};
use futures::StreamExt;

#[tokio::test]
async fn health_answers_on_both_stores() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let response = app
            .client
            .get(app.url("/health"))
            .send()
            .await
            .expect("GET /health");
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("JSON body");
        let expected = match kind {
            StoreKind::Embedded => "embedded",
            StoreKind::Postgres => "postgres",
        };
        assert_eq!(body, serde_json::json!({"status": "ok", "store": expected}));
        app.stop().await;
    }
}

#[tokio::test]
async fn nats_server_runs_jetstream() {
    let client = async_nats::connect(&nats().url)
        .await
        .expect("connect to nats-server");
    let jetstream = async_nats::jetstream::new(client);
    let stream_name = format!("SMOKE_{}", uuid::Uuid::new_v4().simple());
    let subject = format!("smoke.{stream_name}");
    let mut stream = jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: stream_name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .expect("create a stream");
    jetstream
        .publish(subject.clone(), "hello".into())
        .await
        .expect("publish")
        .await
        .expect("publish ack");
    assert_eq!(stream.info().await.expect("stream info").state.messages, 1);
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("smoke".into()),
            ..Default::default()
        })
        .await
        .expect("create a consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("a message within 10 s")
        .expect("stream open")
        .expect("message");
    assert_eq!(message.payload.as_ref(), b"hello");
    message.ack().await.expect("ack");
}

#[tokio::test]
async fn an_owned_nats_server_can_be_killed_and_restarted() {
    let mut server = NatsServer::start().expect("start nats-server");
    let first_pid = server.pid();
    server.kill();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err(),
        "a killed server must not accept connections"
    );
    server.restart().expect("restart nats-server");
    assert_ne!(server.pid(), first_pid);
    let client = async_nats::connect(&server.url)
        .await
        .expect("connect after restart");
    client.flush().await.expect("flush");
}

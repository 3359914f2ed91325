//! The Pulsar trigger's throughput and latency, side by side with its ceiling: messages per
//! second through a hello function (`fnvm serve`, a Pulsar trigger on a backlog of the test
//! broker) against the same broker drained by a plain consumer that does nothing but
//! acknowledge (the same flow window as the worker's, and the client's default one); then the
//! end-to-end latency (broker stored it -> acknowledged after the invocation) at a steady rate,
//! for both. The broker is tests/pulsar-test-broker, in this process.
//!
//! ```text
//! cargo run --release --bin pulsar_trigger -- --fnvm target/release/fnvm \
//!     [--messages 20000] [--rounds 3] [--instances 4] [--rate 500] [--seconds 10]
//! ```

use fnvm_pulsar_test_broker::{BrokerConfig, TestBroker};
use futures::TryStreamExt as _;
use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Args {
    fnvm: PathBuf,
    messages: u64,
    rounds: usize,
    instances: u32,
    rate: u64,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        fnvm: PathBuf::from("target/release/fnvm"),
        messages: 20_000,
        rounds: 3,
        instances: 4,
        rate: 500,
        seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--fnvm" => a.fnvm = v.into(),
            "--messages" => a.messages = v.parse().expect("--messages"),
            "--rounds" => a.rounds = v.parse().expect("--rounds"),
            "--instances" => a.instances = v.parse().expect("--instances"),
            "--rate" => a.rate = v.parse().expect("--rate"),
            "--seconds" => a.seconds = v.parse().expect("--seconds"),
            _ => panic!("unknown argument {flag}"),
        }
    }
    a
}

/// `fnvm serve` on a fresh data directory, killed when dropped.
struct Server {
    child: Child,
    fnvm: PathBuf,
    data: PathBuf,
    api: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    fn start(fnvm: &Path) -> Server {
        let data = std::env::temp_dir().join(format!("fnvm-pulsar-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).unwrap();
        let (api_port, http_port) = (free_port(), free_port());
        let log = std::fs::File::create(data.with_extension("log")).unwrap();
        let child = Command::new(fnvm)
            .args(["serve", "--data-dir"])
            .arg(&data)
            .args(["--api-listen", &format!("127.0.0.1:{api_port}")])
            .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
            .args(["--egress-allow", "127.0.0.0/8"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting fnvm serve");
        let api = format!("http://127.0.0.1:{api_port}");
        let s = Server {
            child,
            fnvm: fnvm.to_path_buf(),
            data,
            api,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", api_port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "fnvm serve did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// Runs `fnvm ARGS` (the CLI, as organisation `bench`); its stdout.
    fn cli(&self, token: &str, args: &[&str]) -> String {
        let out = Command::new(&self.fnvm)
            .args([
                "functions",
                "--api",
                &self.api,
                "--org",
                "bench",
                "--token",
                token,
            ])
            .args(args)
            .output()
            .expect("running the CLI");
        assert!(
            out.status.success(),
            "fnvm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn token(&self) -> String {
        let out = Command::new(&self.fnvm)
            .args(["admin", "token", "create", "--org", "bench", "--data-dir"])
            .arg(&self.data)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_whitespace().last().unwrap().to_string()
    }
}

/// Points the Function's Pulsar trigger at `topic` on `broker` (replacing any earlier one).
fn set_trigger(server: &Server, token: &str, fid: &str, broker: &TestBroker, topic: &str) {
    server.cli(
        token,
        &[
            "trigger",
            "pulsar",
            "set",
            fid,
            "--url",
            &broker.url(),
            "--topic",
            topic,
        ],
    );
}

/// A WASI hello world (raw mode; it ignores the message).
fn hello() -> Vec<u8> {
    wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 8) "Hello World\n")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 8))
            (i32.store (i32.const 4) (i32.const 12))
            (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 64)))))"#,
    )
    .unwrap()
}

async fn client(broker: &TestBroker) -> Pulsar<TokioExecutor> {
    Pulsar::builder(broker.url(), TokioExecutor)
        .build()
        .await
        .unwrap()
}

/// A consumer of `topic` on `sub` with a receiver queue of `window`.
async fn consumer(
    broker: &TestBroker,
    topic: &str,
    sub: &str,
    window: u32,
) -> Consumer<Vec<u8>, TokioExecutor> {
    client(broker)
        .await
        .consumer()
        .with_topic(topic)
        .with_subscription(sub)
        .with_subscription_type(SubType::Shared)
        .with_batch_size(window)
        .with_options(ConsumerOptions::default().with_receiver_queue_size(window))
        .build()
        .await
        .unwrap()
}

/// Publishes `n` small messages, `rate` per second (0: as fast as receipts allow).
async fn publish(broker: &TestBroker, topic: &str, n: u64, rate: u64) {
    let c = client(broker).await;
    let mut p = c.producer().with_topic(topic).build().await.unwrap();
    let start = Instant::now();
    let mut pending = Vec::new();
    for i in 0..n {
        if rate > 0 {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        pending.push(
            p.send_non_blocking(format!("m{i}").into_bytes())
                .await
                .unwrap(),
        );
        // The client refuses more than about 100 pending sends (SlowDown).
        if pending.len() >= 50 {
            for r in pending.drain(..) {
                r.await.unwrap();
            }
        }
    }
    for r in pending {
        r.await.unwrap();
    }
}

fn acked(broker: &TestBroker, topic: &str, sub: &str) -> u64 {
    broker
        .stats(topic)
        .and_then(|t| t.subscriptions.into_iter().find(|s| s.name == sub))
        .map_or(0, |s| s.acked)
}

/// Messages per second from the first acknowledgement to the last of `n`.
async fn drain_rate(broker: &TestBroker, topic: &str, sub: &str, n: u64) -> f64 {
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let a = acked(broker, topic, sub);
        if a > 0 && first.is_none() {
            first = Some((Instant::now(), a));
        }
        if a >= n {
            let (t, a0) = first.unwrap();
            return (n - a0) as f64 / t.elapsed().as_secs_f64();
        }
        assert!(Instant::now() < deadline, "{topic}: stuck at {a} of {n}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A plain consumer that acknowledges everything, until the task is aborted.
fn plain(broker: &TestBroker, topic: &str, sub: &str, window: u32) -> tokio::task::JoinHandle<()> {
    let (url, topic, sub) = (broker.url(), topic.to_string(), sub.to_string());
    tokio::spawn(async move {
        let client: Pulsar<TokioExecutor> =
            Pulsar::builder(url, TokioExecutor).build().await.unwrap();
        let mut c: Consumer<Vec<u8>, TokioExecutor> = client
            .consumer()
            .with_topic(topic)
            .with_subscription(sub)
            .with_subscription_type(SubType::Shared)
            .with_batch_size(window)
            .with_options(ConsumerOptions::default().with_receiver_queue_size(window))
            .build()
            .await
            .unwrap();
        while let Ok(Some(m)) = c.try_next().await {
            let _ = c.ack(&m).await;
        }
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentiles(mut d: Vec<Duration>) -> (f64, f64, usize) {
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(d[((d.len() as f64 * q) as usize).min(d.len() - 1)]);
    (at(0.50), at(0.99), d.len())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let broker = TestBroker::start(BrokerConfig::default()).await.unwrap();
    let server = Server::start(&a.fnvm);
    let token = server.token();
    let wasm = server.data.with_extension("hello.wasm");
    std::fs::write(&wasm, hello()).unwrap();
    let created = server.cli(
        &token,
        &[
            "create",
            "--name",
            "hello",
            "--max-instances",
            &a.instances.to_string(),
        ],
    );
    let fid = created
        .split('"')
        .skip_while(|s| *s != "id")
        .nth(2)
        .expect("the function's id")
        .to_string();
    server.cli(&token, &["deploy", wasm.to_str().unwrap(), &fid]);
    let sub = format!("fnvm-{fid}");
    let n = a.messages;
    println!(
        "Pulsar trigger, {n} messages of a backlog per round, {} rounds, maxInstances {}",
        a.rounds, a.instances
    );
    let (mut via_fnvm, mut same_window, mut default_window) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..a.rounds {
        // fnvm: the subscription made first (it keeps the backlog), then the trigger set.
        let topic = format!("persistent://public/default/fnvm-{round}");
        drop(consumer(&broker, &topic, &sub, 1).await);
        publish(&broker, &topic, n, 0).await;
        set_trigger(&server, &token, &fid, &broker, &topic);
        via_fnvm.push(drain_rate(&broker, &topic, &sub, n).await);
        for (window, out) in [(a.instances, &mut same_window), (1000, &mut default_window)] {
            let topic = format!("persistent://public/default/plain-{window}-{round}");
            drop(consumer(&broker, &topic, "plain", 1).await);
            publish(&broker, &topic, n, 0).await;
            let task = plain(&broker, &topic, "plain", window);
            out.push(drain_rate(&broker, &topic, "plain", n).await);
            task.abort();
        }
        println!(
            "  round {round}: fnvm {:.0}/s, plain consumer (window {}) {:.0}/s, plain (window 1000) {:.0}/s",
            via_fnvm[round], a.instances, same_window[round], default_window[round]
        );
    }
    let (f, s, d) = (
        median(via_fnvm),
        median(same_window),
        median(default_window),
    );
    println!("| consumer | messages/s (median) | vs plain, same window |");
    println!("|---|---:|---:|");
    println!("| fnvm, hello function | {f:.0} | {:.2}x |", f / s);
    println!(
        "| plain consumer, window {} | {s:.0} | 1.00x |",
        a.instances
    );
    println!("| plain consumer, window 1000 | {d:.0} | {:.2}x |", d / s);

    // Latency at a steady rate.
    let total = a.rate * a.seconds;
    let topic = "persistent://public/default/latency-fnvm";
    drop(consumer(&broker, topic, &sub, 1).await);
    set_trigger(&server, &token, &fid, &broker, topic);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = broker.take_ack_delays(topic, &sub);
    publish(&broker, topic, total, a.rate).await;
    drain_rate(&broker, topic, &sub, total).await;
    let (p50, p99, count) = percentiles(broker.take_ack_delays(topic, &sub));
    let ptopic = "persistent://public/default/latency-plain";
    drop(consumer(&broker, ptopic, "plain", 1).await);
    let task = plain(&broker, ptopic, "plain", a.instances);
    tokio::time::sleep(Duration::from_secs(1)).await;
    publish(&broker, ptopic, total, a.rate).await;
    drain_rate(&broker, ptopic, "plain", total).await;
    let (q50, q99, qcount) = percentiles(broker.take_ack_delays(ptopic, "plain"));
    task.abort();
    println!(
        "\nEnd to end at {} messages/s for {} s (stored by the broker -> acknowledged):",
        a.rate, a.seconds
    );
    println!("| consumer | p50 ms | p99 ms | messages |");
    println!("|---|---:|---:|---:|");
    println!("| fnvm, hello function | {p50:.2} | {p99:.2} | {count} |");
    println!("| plain consumer | {q50:.2} | {q99:.2} | {qcount} |");
    broker.shutdown().await;
}

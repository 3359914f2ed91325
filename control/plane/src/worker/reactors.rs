//! The threads that accept and serve the worker's HTTP connections: one per core, each with a
//! single-threaded tokio runtime of its own that owns its connections from accept to close.
//!
//! Why not the process's shared, work-stealing runtime: a thread of it that runs a short guest
//! inline (see [`super::invoker`]) makes the others wake up, steal and park around it
//! (measured: 0.12 to 0.18 voluntary context switches per request, against 0.005 for bare
//! hyper, and the scheduler a fifth of the worker's CPU). A thread that owns its connections
//! never hands a request to another thread, and a guest it runs inline delays only its own
//! connections.
//!
//! Every thread accepts on the same socket, so whichever is free takes a connection; the
//! accepting thread then gives it to the thread serving the fewest connections (itself on a
//! tie), because a burst of connections is otherwise all accepted by the first thread to wake
//! up, leaving the others idle for the connections' whole lives. A thread found gone (its loop
//! ended) gets no more connections; the one meant for it is served where it was accepted.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The connections being served, until [`Reactors::stop`].
#[derive(Debug)]
pub struct Reactors {
    stop: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// The accept loop, when it runs on the caller's runtime.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Reactors {
    /// Stops accepting; the connections being served are dropped.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task {
            let _ = task.await;
        }
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// One reactor thread as the others see it.
#[derive(Debug)]
struct Peer {
    /// Connections it serves, or has been given and will serve.
    open: AtomicUsize,
    /// Where connections accepted by another thread are given to it.
    handoff: mpsc::UnboundedSender<std::net::TcpStream>,
}

/// Accepts on `listener` and runs `serve` for every connection, as a task on the thread that
/// serves it: on `threads` threads of their own, or on the caller's tokio runtime if that is 0.
pub fn start<S, F>(
    listener: std::net::TcpListener,
    threads: usize,
    confine: Option<super::Confine>,
    serve: S,
) -> std::io::Result<Reactors>
where
    S: Fn(tokio::net::TcpStream) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    listener.set_nonblocking(true)?;
    let serve = Arc::new(serve);
    let (stop, stop_rx) = watch::channel(false);
    let count = threads.max(1);
    let mut receivers = Vec::with_capacity(count);
    let peers: Arc<[Peer]> = (0..count)
        .map(|_| {
            let (handoff, rx) = mpsc::unbounded_channel();
            receivers.push(rx);
            Peer {
                open: AtomicUsize::new(0),
                handoff,
            }
        })
        .collect();
    if threads == 0 {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let handoff = receivers
            .pop()
            .unwrap_or_else(|| mpsc::unbounded_channel().1);
        let thread = ReactorThread {
            index: 0,
            peers,
            handoff,
            serve,
        };
        let task = tokio::spawn(thread.run(listener, stopped(stop_rx)));
        return Ok(Reactors {
            stop,
            threads: Vec::new(),
            task: Some(task),
        });
    }
    let mut joins = Vec::with_capacity(threads);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    for (index, handoff) in receivers.into_iter().enumerate() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Registered here, so that a failure is this function's error.
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener.try_clone()?)?
        };
        let thread = ReactorThread {
            index,
            peers: peers.clone(),
            handoff,
            serve: serve.clone(),
        };
        let stopped = stopped(stop_rx.clone());
        let join = std::thread::Builder::new()
            .name(format!("fnvm-http-{index}"))
            // The runtime, and the connections on it, are dropped when accepting stops.
            .spawn({
                let ready = ready_tx.clone();
                move || {
                    let confined = confine.map_or(Ok(()), |c| c());
                    let failed = confined.is_err();
                    let _ = ready.send(confined);
                    if !failed {
                        runtime.block_on(thread.run(listener, stopped))
                    }
                }
            })?;
        joins.push(join);
    }
    drop(ready_tx);
    for _ in 0..joins.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(std::io::Error::other(e)),
            Err(_) => return Err(std::io::Error::other("a reactor thread ended at start")),
        }
    }
    Ok(Reactors {
        stop,
        threads: joins,
        task: None,
    })
}

/// Completes once `true` is sent (or the sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The period of a timer that keeps a runtime's next wake-up ahead of the connections' own
/// timers (see [`ReactorThread::run`]): shorter than any of them.
const TIMER_ANCHOR: Duration = Duration::from_millis(500);

/// The connection count of a thread that is gone: higher than any live thread's, so that it
/// is never chosen again.
const GONE: usize = usize::MAX / 2;

/// One thread's accept loop.
struct ReactorThread<S> {
    index: usize,
    peers: Arc<[Peer]>,
    handoff: mpsc::UnboundedReceiver<std::net::TcpStream>,
    serve: Arc<S>,
}

impl<S, F> ReactorThread<S>
where
    S: Fn(tokio::net::TcpStream) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    async fn run(mut self, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()>) {
        // hyper arms a timer for every request head (`header_read_timeout`), and tokio wakes
        // its driver through an eventfd (a system call) whenever a timer is armed that is due
        // before every other one: with no other timer pending, that is each of them. A timer
        // that is always due sooner than a request's makes those free.
        let anchor = tokio::spawn(async {
            let mut tick = tokio::time::interval(TIMER_ANCHOR);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
            }
        });
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(stream) = self.handoff.recv() => {
                    // Counted by the thread that gave it.
                    match tokio::net::TcpStream::from_std(stream) {
                        Ok(stream) => self.spawn(stream),
                        Err(e) => {
                            self.peers[self.index].open.fetch_sub(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, "worker: taking over a connection");
                        }
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => self.place(stream),
                    Err(e) => {
                        // Out of descriptors, typically: wait a little rather than spin.
                        tracing::warn!(error = %e, "worker: accepting a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        anchor.abort();
    }

    /// Serves `stream` here, or gives it to the thread with the fewest connections.
    fn place(&self, stream: tokio::net::TcpStream) {
        let _ = stream.set_nodelay(true);
        let target = self
            .peers
            .iter()
            .enumerate()
            .min_by_key(|(i, p)| (p.open.load(Ordering::Relaxed), *i != self.index))
            .map_or(self.index, |(i, _)| i);
        let stream = if target == self.index {
            stream
        } else {
            match self.give(target, stream) {
                Some(back) => back,
                None => return,
            }
        };
        self.peers[self.index].open.fetch_add(1, Ordering::Relaxed);
        self.spawn(stream);
    }

    /// Gives `stream` to thread `target`, or returns it if that thread is gone (its loop
    /// ended: it stopped, or panicked), which then gets no more connections.
    fn give(&self, target: usize, stream: tokio::net::TcpStream) -> Option<tokio::net::TcpStream> {
        let peer = &self.peers[target];
        // Counted now, so that a burst is spread before the peer has seen any of it.
        peer.open.fetch_add(1, Ordering::Relaxed);
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                peer.open.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "worker: giving a connection away");
                return None;
            }
        };
        let Err(mpsc::error::SendError(stream)) = peer.handoff.send(stream) else {
            return None;
        };
        peer.open.store(GONE, Ordering::Relaxed);
        tokio::net::TcpStream::from_std(stream)
            .inspect_err(|e| tracing::warn!(error = %e, "worker: taking a connection back"))
            .ok()
    }

    /// Serves `stream` on this thread; it is already counted in this thread's `open`.
    fn spawn(&self, stream: tokio::net::TcpStream) {
        let served = (self.serve)(stream);
        let peers = self.peers.clone();
        let index = self.index;
        tokio::spawn(async move {
            served.await;
            peers[index].open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Connections are spread over the threads, each served on the thread that counted it,
    /// and stopping ends them all.
    #[tokio::test]
    async fn a_burst_of_connections_is_spread_over_the_threads() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Confined as the worker's are: serving connections needs nothing the filter denies.
        let reactors = start(
            listener,
            3,
            crate::worker::confinement(true),
            |mut stream: tokio::net::TcpStream| async move {
                let name = std::thread::current().name().unwrap_or("?").to_owned();
                let mut byte = [0u8; 1];
                // Answer once, then hold the connection until the client closes it.
                if stream.read_exact(&mut byte).await.is_ok() {
                    let _ = stream.write_all(name.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
                let _ = stream.read(&mut byte).await;
            },
        )
        .unwrap();
        let mut clients = Vec::new();
        for _ in 0..12 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut per_thread = std::collections::BTreeMap::<String, usize>::new();
        for c in &mut clients {
            c.write_all(b"?").await.unwrap();
            let mut name = String::new();
            c.read_to_string(&mut name).await.unwrap();
            assert!(name.starts_with("fnvm-http-"), "served on {name:?}");
            *per_thread.entry(name).or_default() += 1;
        }
        assert_eq!(per_thread.len(), 3, "{per_thread:?}");
        for (thread, n) in &per_thread {
            assert!((3..=5).contains(n), "{thread} served {n}: {per_thread:?}");
        }
        drop(clients);
        reactors.stop().await;
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still accepting after stop"
        );
    }

    /// A connection meant for a thread that is gone is served by the thread that accepted it,
    /// and the gone thread gets no more.
    #[tokio::test]
    async fn a_connection_for_a_thread_that_is_gone_is_served_here() {
        let (here_tx, here_rx) = mpsc::unbounded_channel();
        let (gone_tx, gone_rx) = mpsc::unbounded_channel();
        drop(gone_rx);
        let peers: Arc<[Peer]> = vec![
            Peer {
                open: AtomicUsize::new(5),
                handoff: here_tx,
            },
            Peer {
                open: AtomicUsize::new(0),
                handoff: gone_tx,
            },
        ]
        .into();
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let thread = ReactorThread {
            index: 0,
            peers: peers.clone(),
            handoff: here_rx,
            serve: Arc::new(move |_stream: tokio::net::TcpStream| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            }),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        thread.place(stream);
        for _ in 0..100 {
            if served.load(Ordering::SeqCst) == 1 && peers[0].open.load(Ordering::SeqCst) == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(served.load(Ordering::SeqCst), 1, "not served here");
        assert_eq!(
            peers[0].open.load(Ordering::SeqCst),
            5,
            "counted here, then done"
        );
        assert!(
            peers[1].open.load(Ordering::SeqCst) > 1 << 20,
            "the gone thread stays out"
        );
    }

    /// With no threads of its own, connections are served on the caller's runtime.
    #[tokio::test]
    async fn zero_threads_serve_on_the_callers_runtime() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reactors = start(
            listener,
            0,
            None,
            |mut stream: tokio::net::TcpStream| async move {
                let _ = stream.write_all(b"hi").await;
            },
        )
        .unwrap();
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "hi");
        reactors.stop().await;
    }
}

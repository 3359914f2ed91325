//! The threads guest code runs on. The HTTP reactor never runs a guest: it hands each
//! invocation, as a job, to this fixed set of threads (sized to the machine and the pool), and
//! keeps accepting and reading requests while they compute. A job sends its outcome back
//! before the instance it used is reset, so the response leaves first and the reset costs the
//! invoking thread, not the client.

use std::sync::Arc;

/// A unit of work for an invoker thread.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// The invoker threads.
#[derive(Debug)]
pub struct Invoker {
    tx: crossbeam_channel::Sender<Job>,
    threads: usize,
    _joins: Arc<Joins>,
}

/// Joins the threads when the last handle goes (after the channel closes).
#[derive(Debug)]
struct Joins(std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>);

impl Drop for Joins {
    fn drop(&mut self) {
        let handles = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Invoker {
    /// Starts `threads` invoker threads.
    pub fn new(threads: usize) -> std::io::Result<Invoker> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let mut joins = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            joins.push(
                std::thread::Builder::new()
                    .name(format!("fnvm-invoke-{i}"))
                    .spawn(move || {
                        // Ends when every sender is gone.
                        for job in rx.iter() {
                            // A panicking job (a bug) must not take the thread with it.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                    })?,
            );
        }
        Ok(Invoker {
            tx,
            threads: threads.max(1),
            _joins: Arc::new(Joins(std::sync::Mutex::new(joins))),
        })
    }

    /// Threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Queues `job`; it runs on the first free thread.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.tx.send(job).map_err(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_off_the_caller_and_a_panic_spares_the_thread() {
        let inv = Invoker::new(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let caller = std::thread::current().id();
        for i in 0..10 {
            let tx = tx.clone();
            inv.submit(Box::new(move || {
                if i == 3 {
                    panic!("a buggy job");
                }
                tx.send((i, std::thread::current().id())).unwrap();
            }))
            .unwrap_or_else(|_| panic!("submit"));
        }
        drop(tx);
        let got: Vec<_> = rx.iter().collect();
        assert_eq!(got.len(), 9);
        assert!(got.iter().all(|(_, t)| *t != caller));
    }
}

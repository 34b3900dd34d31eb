//! Work on every core for jobs that each stand alone: a cold load reads and parses tens
//! of thousands of files, each on its own.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Below this many jobs, they run on the calling thread: starting workers would cost
/// more than it saves (a re-plan after a one-file edit parses one file).
const MIN_PARALLEL: usize = 16;

/// At most this many workers: each holds its own state (a repository handle) and, with
/// glibc, its own allocator arena, and parsing gains little past a few cores.
const MAX_WORKERS: usize = 8;

/// How many workers suit `jobs` jobs: one (the calling thread) for a handful.
pub(super) fn count(jobs: usize) -> usize {
    if jobs < MIN_PARALLEL {
        return 1;
    }
    std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_WORKERS)
}

/// Runs `work` on every job on `workers` threads (the calling thread and `workers - 1`
/// started for it), each with a `state` of its own made on it, and returns the results in
/// the order of `jobs`. Workers take the next job as they finish one, so uneven jobs even
/// out. A thread that cannot be started (a container's thread limit) leaves its share to
/// the others: the calling thread alone still does every job. A panic in `work` is
/// raised again here.
pub(super) fn map<K, S, R>(
    jobs: &[K],
    workers: usize,
    state: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, &K) -> R + Sync,
) -> Vec<R>
where
    K: Sync,
    R: Send,
{
    if workers <= 1 || jobs.len() <= 1 {
        let mut s = state();
        return jobs.iter().map(|k| work(&mut s, k)).collect();
    }
    let next = AtomicUsize::new(0);
    let run = || {
        let mut s = state();
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(k) = jobs.get(i) else { break };
            done.push((i, work(&mut s, k)));
        }
        done
    };
    let parts: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let mut started = Vec::new();
        for _ in 1..workers.min(jobs.len()) {
            let spawned = std::thread::Builder::new()
                .name("latchkey-load".into())
                .spawn_scoped(scope, run);
            match spawned {
                Ok(handle) => started.push(handle),
                Err(e) => {
                    tracing::debug!(error = %e, "a load worker did not start; the others do its share");
                    break;
                }
            }
        }
        let mut parts = vec![run()];
        for handle in started {
            parts.push(
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        parts
    });
    let mut all: Vec<(usize, R)> = parts.into_iter().flatten().collect();
    all.sort_unstable_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn results_keep_the_order_of_the_jobs_and_each_worker_makes_its_own_state() {
        for (n, workers) in [(0, 4), (1, 4), (15, 1), (16, 2), (1000, 3)] {
            let jobs: Vec<usize> = (0..n).collect();
            let states = Mutex::new(Vec::new());
            let out = map(
                &jobs,
                workers,
                || {
                    let id = std::thread::current().id();
                    states.lock().unwrap().push(id);
                    (id, 0)
                },
                |(id, count), k| {
                    assert_eq!(*id, std::thread::current().id(), "state used on its thread");
                    *count += 1;
                    // Uneven work, so that workers finish out of order.
                    if k % 7 == 0 {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                    k * 10
                },
            );
            assert_eq!(out, jobs.iter().map(|k| k * 10).collect::<Vec<_>>());
            let states = states.into_inner().unwrap();
            let want = if workers > 1 && n > 1 {
                workers.min(n)
            } else {
                1
            };
            assert_eq!(states.len(), want, "{n} jobs on {workers} workers");
            let distinct: std::collections::HashSet<_> = states.iter().collect();
            assert_eq!(distinct.len(), states.len(), "one state per thread");
            assert!(
                states.contains(&std::thread::current().id()),
                "the calling thread works too"
            );
        }
    }

    #[test]
    fn a_handful_of_jobs_runs_on_the_calling_thread() {
        assert_eq!(count(0), 1);
        assert_eq!(count(MIN_PARALLEL - 1), 1);
        assert!((1..=MAX_WORKERS).contains(&count(100_000)));
    }

    #[test]
    fn a_panic_in_the_work_reaches_the_caller() {
        let jobs: Vec<u32> = (0..100).collect();
        let caught = std::panic::catch_unwind(|| {
            map(
                &jobs,
                2,
                || (),
                |(), k| {
                    assert!(*k != 50, "job 50 fails");
                    *k
                },
            )
        });
        let panic = caught.expect_err("the panic is raised again");
        // A literal message is a `&str` payload, a formatted one a `String`.
        let message = panic
            .downcast_ref::<&str>()
            .map(|m| m.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(message.contains("job 50 fails"), "{message}");
    }
}

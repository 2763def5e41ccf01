//! `Bell`: hands work between the event loop and the threads running plain-function
//! closures with as few thread wake-ups as this machine allows.
//!
//! Two costs dominate a hand-off between Python threads: waking a thread parked in the
//! kernel, and that thread then waiting for the GIL the other one still holds. A `Bell` is
//! a one-shot flag that a waiter first watches for a short while with the GIL released
//! (no kernel wake-up needed if it is rung meanwhile), then parks on. `wait` can ring
//! another bell *after* releasing the GIL: a thread that hands work over and then waits
//! rings as its last act, so the thread it wakes finds the GIL free.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// A flag rung by one thread and waited for by another (see the module documentation).
///
/// Watching pays only when the ring comes soon and a CPU is free for the watcher: a watcher
/// on a busy machine takes the CPU from the very thread that would ring. So a watch stops
/// as soon as the thread is switched out while it could have run (the kernel's count of
/// involuntary switches, checked every few dozen turns), and the bell keeps a score of its
/// recent watches: a watch that ends without a ring, or with a switch, costs `MISS_COST`; a
/// ring seen undisturbed earns one point; while the score is negative the bell parks
/// straight away (each such wait earns a point back, so it tries again later). Yielding
/// the CPU while watching was tried: it helps when one other CPU is busy but hands a whole
/// time slice to a busy neighbour when all are.
#[pyclass(name = "Bell", module = "durable_futures._core", frozen)]
#[derive(Default)]
pub struct PyBell {
    rung: AtomicBool,
    // Set while the waiter is parked on `wake`, so that `ring` takes the lock only then.
    parked: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
    score: AtomicI32,
}

const MISS_COST: i32 = 4;
const SCORE_MAX: i32 = 16;
const SCORE_MIN: i32 = -64;

impl PyBell {
    fn ring_now(&self) {
        self.rung.store(true, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) {
            let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.wake.notify_one();
        }
    }

    /// Watches the flag for at most `spin` (see [`PyBell`]). `Some(rung)` if the wait is
    /// over (rung, or `deadline` passed), `None` if the waiter should park.
    fn watch(&self, spin: Duration, deadline: Option<Instant>) -> Option<bool> {
        let score = self.score.load(Ordering::Relaxed);
        if score < 0 {
            self.score.store(score + 1, Ordering::Relaxed);
            return None;
        }
        let start = Instant::now();
        let switches = involuntary_switches();
        let mut turns = 0u32;
        loop {
            std::hint::spin_loop();
            if self.rung.load(Ordering::Acquire) && self.rung.swap(false, Ordering::AcqRel) {
                // Rung, but if this thread was switched out meanwhile, the CPU was wanted:
                // watching took it from someone (perhaps the ringer).
                let score = if involuntary_switches() == switches {
                    (score + 1).min(SCORE_MAX)
                } else {
                    (score - MISS_COST).max(SCORE_MIN)
                };
                self.score.store(score, Ordering::Relaxed);
                return Some(true);
            }
            turns += 1;
            if turns % 64 == 0 {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Some(false);
                }
                if now - start >= spin {
                    break;
                }
                if involuntary_switches() != switches {
                    break; // switched out: the CPU is wanted
                }
            }
        }
        self.score
            .store((score - MISS_COST).max(SCORE_MIN), Ordering::Relaxed);
        None
    }

    /// Watches the flag for `spin`, then parks until it is rung or `deadline` passes.
    /// Returns whether it was rung (and clears it).
    fn wait_for_ring(&self, spin: Duration, deadline: Option<Instant>) -> bool {
        if self.rung.swap(false, Ordering::AcqRel) {
            return true;
        }
        if !spin.is_zero() {
            if let Some(rung) = self.watch(spin, deadline) {
                return rung;
            }
        }
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.parked.store(true, Ordering::SeqCst);
        let rung = loop {
            if self.rung.swap(false, Ordering::AcqRel) {
                break true;
            }
            match deadline {
                None => guard = self.wake.wait(guard).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break false;
                    }
                    guard = self
                        .wake
                        .wait_timeout(guard, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        };
        self.parked.store(false, Ordering::SeqCst);
        rung
    }
}

/// How many times the calling thread was switched out while it could have run (Unix; a
/// constant elsewhere, where a watch then only stops when it runs out).
#[cfg(unix)]
fn involuntary_switches() -> i64 {
    #[cfg(target_os = "linux")]
    const WHO: libc::c_int = libc::RUSAGE_THREAD;
    #[cfg(not(target_os = "linux"))]
    const WHO: libc::c_int = libc::RUSAGE_SELF;
    // SAFETY: getrusage only writes the struct it is given, which is plain data.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(WHO, &mut usage) != 0 {
            return 0;
        }
        usage.ru_nivcsw as i64
    }
}

#[cfg(not(unix))]
fn involuntary_switches() -> i64 {
    0
}

fn duration(seconds: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| pyo3::exceptions::PyValueError::new_err(format!("bad {what}: {seconds}")))
}

#[pymethods]
impl PyBell {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Rings the bell (from any thread); a ring waits for the next `wait` if nobody waits.
    fn ring(&self) {
        self.ring_now();
    }

    /// Rings every bell of `bells` with the GIL released (a thread woken then finds it
    /// free sooner).
    #[staticmethod]
    fn ring_all(py: Python<'_>, bells: Vec<Py<PyBell>>) {
        py.allow_threads(|| {
            for bell in &bells {
                bell.get().ring_now();
            }
        });
    }

    /// Waits until the bell rings, at most `timeout` seconds (`None`: no limit), watching
    /// it for `spin` seconds before parking. With the GIL released, `ring` (another bell,
    /// or a list of them) is rung first. Returns whether this bell rang.
    #[pyo3(signature = (timeout=None, spin=0.0, ring=None))]
    fn wait(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        spin: f64,
        ring: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let deadline = match timeout {
            Some(t) => Some(Instant::now() + duration(t, "timeout")?),
            None => None,
        };
        let spin = duration(spin, "spin")?;
        let mut others: Vec<Py<PyBell>> = Vec::new();
        if let Some(ring) = ring {
            if let Ok(bell) = ring.downcast::<PyBell>() {
                others.push(bell.clone().unbind());
            } else {
                for item in ring.try_iter()? {
                    others.push(item?.downcast_into::<PyBell>()?.unbind());
                }
            }
        }
        Ok(py.allow_threads(|| {
            for bell in &others {
                bell.get().ring_now();
            }
            self.wait_for_ring(spin, deadline)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_ring_before_the_wait_is_kept() {
        let bell = PyBell::default();
        bell.ring_now();
        assert!(bell.wait_for_ring(Duration::ZERO, Some(Instant::now())));
        assert!(!bell.wait_for_ring(Duration::ZERO, Some(Instant::now())));
    }

    #[test]
    fn a_parked_waiter_is_woken() {
        let bell = Arc::new(PyBell::default());
        let other = Arc::clone(&bell);
        let t = std::thread::spawn(move || other.wait_for_ring(Duration::ZERO, None));
        while !bell.parked.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        bell.ring_now();
        assert!(t.join().unwrap());
    }

    #[test]
    fn watches_without_a_ring_make_the_bell_park_at_once_for_a_while() {
        let bell = PyBell::default();
        let short = Duration::from_micros(50);
        // A missed watch costs MISS_COST: the next waits park without watching.
        assert!(!bell.wait_for_ring(short, Some(Instant::now() + Duration::from_millis(1))));
        assert_eq!(bell.score.load(Ordering::Relaxed), -MISS_COST);
        for left in (0..MISS_COST).rev() {
            assert_eq!(bell.watch(short, None), None);
            assert_eq!(bell.score.load(Ordering::Relaxed), -left);
        }
        // Back at zero: it watches again, and a ring seen while watching earns a point.
        bell.ring_now();
        assert_eq!(bell.watch(short, None), Some(true));
        assert_eq!(bell.score.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_spinning_waiter_sees_the_ring_and_a_deadline_ends_the_wait() {
        let bell = Arc::new(PyBell::default());
        let other = Arc::clone(&bell);
        let t = std::thread::spawn(move || {
            other.wait_for_ring(
                Duration::from_secs(5),
                Some(Instant::now() + Duration::from_secs(5)),
            )
        });
        std::thread::sleep(Duration::from_millis(5));
        bell.ring_now();
        assert!(t.join().unwrap());
        let start = Instant::now();
        assert!(!bell.wait_for_ring(
            Duration::from_millis(1),
            Some(start + Duration::from_millis(20))
        ));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }
}

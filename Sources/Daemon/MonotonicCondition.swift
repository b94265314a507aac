// A lock and condition variable whose timed waits run on CLOCK_MONOTONIC. NSCondition waits until a
// wall-clock date, and a box without a real-time clock (most Raspberry Pis) jumps its wall clock
// when NTP first syncs: a wait could then last hours, stopping the health timer and the watchdog.
import Capture
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A mutex and a condition variable timed on the monotonic clock.
final class MonotonicCondition: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    init() {
        mutex = .allocate(capacity: 1)
        cond = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }

    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock()
        defer { unlock() }
        return try body()
    }

    /// Wakes every waiter. Call with the lock held.
    func broadcast() { pthread_cond_broadcast(cond) }

    /// Waits (lock held) until woken or `seconds` pass on the monotonic clock; false on timeout.
    /// Spurious wake-ups return true: callers re-check their condition.
    @discardableResult
    func wait(seconds: Double) -> Bool {
        guard seconds > 0 else { return false }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let whole = seconds.rounded(.down)
        var sec = ts.tv_sec + Int(whole)
        var nsec = ts.tv_nsec + Int((seconds - whole) * 1e9)
        if nsec >= 1_000_000_000 { sec += 1; nsec -= 1_000_000_000 }
        var deadline = timespec(tv_sec: sec, tv_nsec: nsec)
        return pthread_cond_timedwait(cond, mutex, &deadline) != ETIMEDOUT
    }
}

/// Seconds on CLOCK_MONOTONIC (the clock the sources stamp frames with).
func monotonicNow() -> Double { systemClock.now() }

private let systemClock = MonotonicClock()

/// A named thread that can be waited for (the daemon's camera and inference threads).
final class JoinableThread: @unchecked Sendable {
    private let exited = DispatchSemaphore(value: 0)

    /// Starts `body` on a new thread with Foundation name `name`.
    init(name: String, _ body: @escaping @Sendable () -> Void) {
        let done = exited
        let t = Thread {
            Thread.current.name = name
            body()
            done.signal()
        }
        t.start()
    }

    /// Waits for the body to return. Call once.
    func join() { exited.wait() }
}

// A persistent pool of worker threads for CPU-bound work (never Swift's cooperative pool).
import Foundation
import Synchronization

/// Runs `tasks` indices of a body across a fixed set of threads; the caller's thread takes part.
/// Threads are created once; `run` with a `ParallelTask` allocates nothing (a test counts mallocs).
///
/// Work is handed out through one 64-bit ticket: generation (16 bits) | task count (24 bits) |
/// next index (24 bits). A worker claims an index with a compare-and-swap that also checks the
/// generation, so a thread that wakes late can never run a task of a call that already finished.
/// Idle workers spin for about 50 µs (cheap hand-offs between the many short parallel regions of a
/// decoder step), then sleep on a condition variable. The workers share a `PoolCore` with this
/// handle, never the handle itself, so releasing the handle stops and joins them.
public final class WorkerPool: @unchecked Sendable {
    /// Threads that execute work, the caller included.
    public let threadCount: Int
    private let core: PoolCore
    private var threads: [pthread_t] = []

    /// A pool of `threads` threads (default: every online core).
    public init(threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        threadCount = max(1, threads)
        core = PoolCore()
        for i in 1..<threadCount {
            var attr = pthread_attr_t()
            pthread_attr_init(&attr)
            pthread_attr_setstacksize(&attr, 1 << 20)
            var tid = pthread_t()
            let box = Unmanaged.passRetained(WorkerStart(core: core, index: i))
            let rc = pthread_create(&tid, &attr, { raw in
                let start = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
                Thread.current.name = "ocellus-w\(start.index)"
                start.core.started.add(1, ordering: .releasing)
                start.core.workerLoop()
                return nil
            }, box.toOpaque())
            pthread_attr_destroy(&attr)
            precondition(rc == 0, "pthread_create failed: \(rc)")
            self.threads.append(tid)
        }
        // Workers are fully started (named, their one-time allocations done) before first use.
        while core.started.load(ordering: .acquiring) < threadCount - 1 { usleep(50) }
    }

    deinit {
        core.shutDown()
        for t in threads { pthread_join(t, nil) }
    }

    /// Calls `task(i)` for every `i` in `0..<tasks`, spread over the pool; returns when all are done.
    /// Allocates nothing: this is the form for the engine's hot paths. `task` must not call back
    /// into the same pool.
    public func run<T: ParallelTask>(_ tasks: Int, _ task: T) {
        if tasks <= 0 { return }
        if threadCount == 1 || tasks == 1 {
            for i in 0..<tasks { task(i) }
            return
        }
        precondition(tasks < PoolCore.maxTasks, "WorkerPool.run supports fewer than 2^24 tasks")
        withUnsafePointer(to: task) { p in core.run(tasks, PointerInvoker(task: p)) }
    }

    /// Splits `0..<count` into about one contiguous chunk per thread (at least `minChunk` long)
    /// and calls `task(range)` on each. Allocates nothing.
    public func parallelFor<T: RangeTask>(_ count: Int, minChunk: Int = 1, _ task: T) {
        if count <= 0 { return }
        let chunks = max(1, min(threadCount, count / max(1, minChunk)))
        run(chunks, ChunkedTask(task: task, count: count, per: (count + chunks - 1) / chunks))
    }

    /// Calls `body(i)` for every `i` in `0..<tasks`. Convenient, but Swift allocates a small
    /// block per call to hand a closure to other threads: use `ParallelTask` on per-inference paths.
    public func run(_ tasks: Int, _ body: (Int) -> Void) {
        if tasks <= 0 { return }
        if threadCount == 1 || tasks == 1 {
            for i in 0..<tasks { body(i) }
            return
        }
        withoutActuallyEscaping(body) { escaping in run(tasks, ClosureTask(body: escaping)) }
    }

    /// Splits `0..<count` into about one contiguous chunk per thread and runs `body` on each.
    /// Allocates a small block per call (see `run(_:_:)`); use `RangeTask` on per-inference paths.
    public func parallelFor(_ count: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        if count <= 0 { return }
        let chunks = max(1, min(threadCount, count / max(1, minChunk)))
        let per = (count + chunks - 1) / chunks
        run(chunks) { c in
            let lo = c * per
            let hi = min(count, lo + per)
            if lo < hi { body(lo..<hi) }
        }
    }
}

// MARK: - Shared state

/// What the caller and the workers share: the ticket, the current body, the locks.
final class PoolCore: @unchecked Sendable {
    let ticket = Atomic<UInt64>(0)
    let unfinished = Atomic<Int>(0)
    let shuttingDown = Atomic<Bool>(false)
    let started = Atomic<Int>(0)
    /// The current call's body (a one-word invoker pointing at the caller's task on its stack),
    /// valid while the generation in `ticket` has unfinished tasks (published by the ticket's
    /// release store). One word fits an existential's inline buffer: storing it allocates nothing.
    private var body: (any TaskInvoker)?
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let workCond: UnsafeMutablePointer<pthread_cond_t>
    private let doneCond: UnsafeMutablePointer<pthread_cond_t>

    static let maxTasks = 1 << 24
    private static let spinNanoseconds: UInt64 = 50_000

    init() {
        mutex = .allocate(capacity: 1)
        workCond = .allocate(capacity: 1)
        doneCond = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(workCond, nil)
        pthread_cond_init(doneCond, nil)
    }

    deinit {
        pthread_cond_destroy(workCond)
        pthread_cond_destroy(doneCond)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        workCond.deallocate()
        doneCond.deallocate()
    }

    func shutDown() {
        shuttingDown.store(true, ordering: .releasing)
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(workCond)
        pthread_mutex_unlock(mutex)
    }

    /// Publishes `invoker` for `tasks` tasks, takes part, and returns when all are done.
    func run(_ tasks: Int, _ invoker: some TaskInvoker) {
        precondition(body == nil, "WorkerPool.run called from inside a task of the same pool (or from two threads at once)")
        let old = ticket.load(ordering: .relaxed)
        let gen = ((old >> 48) &+ 1) & 0xffff
        body = invoker
        unfinished.store(tasks, ordering: .relaxed)
        pthread_mutex_lock(mutex)
        ticket.store(gen << 48 | UInt64(tasks) << 24, ordering: .releasing)
        pthread_cond_broadcast(workCond)
        pthread_mutex_unlock(mutex)
        drain(generation: gen)
        waitUntilDone()
        body = nil
    }

    // MARK: - Hand-out

    /// Claims and runs tasks of generation `gen` until none is left.
    private func drain(generation gen: UInt64) {
        while true {
            var t = ticket.load(ordering: .acquiring)
            var claimed = -1
            while true {
                guard t >> 48 == gen else { return }
                let count = (t >> 24) & 0xffffff, next = t & 0xffffff
                guard next < count else { return }
                let (exchanged, now) = ticket.compareExchange(expected: t, desired: t + 1, ordering: .acquiringAndReleasing)
                if exchanged { claimed = Int(next); break }
                t = now
            }
            body!.invoke(claimed)
            if unfinished.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                pthread_mutex_lock(mutex)
                pthread_cond_broadcast(doneCond)
                pthread_mutex_unlock(mutex)
            }
        }
    }

    private func waitUntilDone() {
        let start = PoolCore.now()
        while unfinished.load(ordering: .acquiring) > 0 {
            if PoolCore.now() &- start > PoolCore.spinNanoseconds {
                pthread_mutex_lock(mutex)
                while unfinished.load(ordering: .acquiring) > 0 { pthread_cond_wait(doneCond, mutex) }
                pthread_mutex_unlock(mutex)
                return
            }
        }
    }

    func workerLoop() {
        var seen: UInt64 = 0  // the generation before the first run: a late-starting worker joins whatever is current
        while true {
            let start = PoolCore.now()
            var gen = ticket.load(ordering: .acquiring) >> 48
            while gen == seen && !shuttingDown.load(ordering: .acquiring) {
                if PoolCore.now() &- start > PoolCore.spinNanoseconds {
                    pthread_mutex_lock(mutex)
                    while ticket.load(ordering: .acquiring) >> 48 == seen && !shuttingDown.load(ordering: .acquiring) {
                        pthread_cond_wait(workCond, mutex)
                    }
                    pthread_mutex_unlock(mutex)
                }
                gen = ticket.load(ordering: .acquiring) >> 48
            }
            if shuttingDown.load(ordering: .acquiring) { return }
            seen = gen
            drain(generation: gen)
        }
    }

    private static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}

/// What a new worker thread needs (passed through pthread_create's argument).
private final class WorkerStart {
    let core: PoolCore
    let index: Int
    init(core: PoolCore, index: Int) { self.core = core; self.index = index }
}

// MARK: - Tasks

/// Work for `WorkerPool.run`: a small struct holding what every task needs (pointers, sizes);
/// `callAsFunction(i)` does task `i`. Called concurrently from several threads.
public protocol ParallelTask {
    /// Does task `index`.
    func callAsFunction(_ index: Int)
}

/// Work for `WorkerPool.parallelFor`: `callAsFunction(range)` handles the indices in `range`.
public protocol RangeTask {
    /// Handles the indices in `range`.
    func callAsFunction(_ range: Range<Int>)
}

/// Type-erased call of the current task.
protocol TaskInvoker {
    func invoke(_ index: Int)
}

/// Points at the caller's task for the duration of one `run`.
private struct PointerInvoker<T: ParallelTask>: TaskInvoker {
    let task: UnsafePointer<T>
    func invoke(_ index: Int) { task.pointee(index) }
}

private struct ChunkedTask<T: RangeTask>: ParallelTask {
    let task: T
    let count: Int
    let per: Int
    func callAsFunction(_ c: Int) {
        let lo = c * per
        let hi = min(count, lo + per)
        if lo < hi { task(lo..<hi) }
    }
}

private struct ClosureTask: ParallelTask {
    let body: (Int) -> Void
    func callAsFunction(_ index: Int) { body(index) }
}

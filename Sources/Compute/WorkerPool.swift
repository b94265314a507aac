// A persistent pool of worker threads for CPU-bound work (never Swift's cooperative pool).
import Foundation

/// Runs `tasks` indices of a body across a fixed set of threads; the caller's thread takes part.
/// Threads are created once; `run` allocates nothing.
public final class WorkerPool: @unchecked Sendable {
    /// Threads that execute work, the caller included.
    public let threadCount: Int
    private let cond = NSCondition()
    private var body: ((Int) -> Void)?
    private var taskCount = 0
    private var nextTask = 0
    private var unfinished = 0
    private var generation = 0
    private var shuttingDown = false
    private var threads: [Thread] = []

    /// A pool of `threads` threads (default: every online core).
    public init(threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        threadCount = max(1, threads)
        for i in 1..<threadCount {
            let t = Thread { [weak self] in self?.workerLoop() } // weak: the pool may be gone before the thread starts
            t.name = "ocellus-worker-\(i)"
            t.stackSize = 1 << 20
            self.threads.append(t)
            t.start()
        }
    }

    deinit {
        cond.lock()
        shuttingDown = true
        cond.broadcast()
        cond.unlock()
    }

    /// Calls `body(i)` for every `i` in `0..<tasks`, spread over the pool; returns when all are done.
    public func run(_ tasks: Int, _ body: (Int) -> Void) {
        if tasks <= 0 { return }
        if threadCount == 1 || tasks == 1 {
            for i in 0..<tasks { body(i) }
            return
        }
        withoutActuallyEscaping(body) { escaping in
            cond.lock()
            self.body = escaping
            taskCount = tasks
            nextTask = 0
            unfinished = tasks
            generation &+= 1
            cond.broadcast()
            cond.unlock()
            drain()
            cond.lock()
            while unfinished > 0 { cond.wait() }
            self.body = nil
            cond.unlock()
        }
    }

    /// Splits `0..<count` into about one contiguous chunk per thread and runs `body` on each.
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

    private func drain() {
        while let i = claim() {
            execute(i)
            finish()
        }
    }

    /// The next task index, or nil when all are taken (never touches `body`, so a late worker
    /// holds no reference to a closure `run` is about to release).
    private func claim() -> Int? {
        cond.lock()
        defer { cond.unlock() }
        guard nextTask < taskCount else { return nil }
        nextTask += 1
        return nextTask - 1
    }

    /// Runs task `i`; the closure reference ends with this call, before `finish` lets `run` return
    /// (`withoutActuallyEscaping` traps if a worker still holds it then).
    @inline(never)
    private func execute(_ i: Int) {
        cond.lock()
        let b = body!
        cond.unlock()
        b(i)
    }

    private func finish() {
        cond.lock()
        unfinished -= 1
        if unfinished == 0 { cond.broadcast() }
        cond.unlock()
    }

    private func workerLoop() {
        var seen = 0
        while true {
            cond.lock()
            while generation == seen && !shuttingDown { cond.wait() }
            if shuttingDown { cond.unlock(); return }
            seen = generation
            cond.unlock()
            drain()
        }
    }
}

// One camera of the daemon: its own capture thread (a source that blocks never holds another
// camera or the model), its task schedule, and the numbers the health message reports. A camera
// that cannot be opened is `offline` and retried with backoff (1, 2, 4 ... 30 s); faults after it
// opened (unplug, stall, a bad file) are handled by the source itself and show in its counters.
import Capture
import Foundation
import Logging

/// What the health message reports of one running camera.
struct CameraSnapshot: Sendable {
    var status: String
    var frames: Int
    var dropped: Int
    var reconnects: Int
    var lastError: String?
}

/// A camera's source, capture thread and schedule.
final class CameraRunner: @unchecked Sendable {
    /// The camera's configuration when it was opened (source, size, fps); tasks change on reload.
    let configuration: CameraConfiguration
    var name: String { configuration.name }

    private struct Scheduled {
        var task: TaskConfiguration
        /// CLOCK_MONOTONIC seconds when it is due next.
        var due: Double
    }

    private let lock = MonotonicCondition()
    private var schedule: [Scheduled] = []
    private var stopping = false
    private var snapshot = CameraSnapshot(status: "offline", frames: 0, dropped: 0, reconnects: 0, lastError: nil)
    private var openFailures = 0
    /// Counters of the sources replaced so far (a failed open makes a fresh source object).
    private var base = SourceCounters()
    /// Successful opens after failed ones (the daemon's own retries).
    private var ownReconnects = 0

    private let queue: InferenceQueue
    private let clock = MonotonicClock()
    private let logger: Logger
    private let statusChanged: @Sendable (String, String) -> Void
    private let progressed: @Sendable () -> Void
    private let makeSource: (CameraConfiguration) -> FrameSource
    private var source: FrameSource
    private var opened = false
    private var thread: JoinableThread?

    /// A camera feeding `queue`. `statusChanged(camera, status)` runs on the capture thread when the
    /// status changes; `progressed` after every capture-loop turn (the watchdog's capture loop).
    init(_ configuration: CameraConfiguration, queue: InferenceQueue, logger: Logger,
         makeSource: @escaping (CameraConfiguration) -> FrameSource = CameraRunner.source(for:),
         statusChanged: @escaping @Sendable (String, String) -> Void, progressed: @escaping @Sendable () -> Void) {
        self.configuration = configuration
        self.queue = queue
        self.logger = logger
        self.makeSource = makeSource
        self.statusChanged = statusChanged
        self.progressed = progressed
        source = makeSource(configuration)
        let now = clock.now()
        schedule = configuration.tasks.map { Scheduled(task: $0, due: now) }
    }

    /// The frame source for a camera's `source` key.
    static func source(for c: CameraConfiguration) -> FrameSource {
        switch c.source {
        case .pattern:
            return SyntheticSource(width: c.size.width, height: c.size.height, fps: c.fps)
        case let .device(path):
            return V4L2Camera(CameraConfig(device: path, width: c.size.width, height: c.size.height, fps: c.fps))
        case let .imageFile(path), let .imageFolder(path):
            return ImageFileSource(path: path, fps: c.fps)
        }
    }

    // MARK: Life cycle

    /// Tries to open the source once (on the caller's thread, so start-up can report READY after the
    /// sources were opened), then starts the capture thread, which retries a failed open.
    func start() {
        queue.add(camera: name)
        tryOpen()
        thread = JoinableThread(name: "cam-\(name)") { [self] in captureLoop() }
    }

    /// Asks the capture thread to stop (returns at once; `stop()` waits).
    func requestStop() {
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
    }

    /// Stops the capture thread, waits for it and closes the source; its waiting job is dropped.
    func stop() {
        requestStop()
        thread?.join()
        thread = nil
        source.close()
        queue.remove(camera: name)
        logger.info("camera closed", metadata: ["camera": "\(name)"])
    }

    /// Takes a new task list from the next frame (reload): tasks whose settings are unchanged keep
    /// their schedule; new or changed ones are due at once.
    /// A waiting job's tasks are dropped with the old list; those still configured unchanged are
    /// due again at once (they lose nothing). Done under the queue's lock: no frame is offered
    /// between the two steps.
    func updateTasks(_ tasks: [TaskConfiguration]) {
        let now = clock.now()
        queue.dropPending(camera: name) { dropped in
            let waiting = Set(dropped.map(\.name))
            lock.withLock {
                let old = schedule
                schedule = tasks.map { t in
                    if let o = old.first(where: { $0.task == t }), !waiting.contains(t.name) { return o }
                    return Scheduled(task: t, due: now)
                }
            }
        }
    }

    /// Counters and status for the health message.
    var health: CameraSnapshot { lock.withLock { snapshot } }

    /// The tasks it runs now.
    var tasks: [TaskConfiguration] { lock.withLock { schedule.map(\.task) } }

    // MARK: Capture thread

    private func tryOpen() {
        do {
            try source.open()
            try source.start()
            opened = true
            if openFailures > 0 { ownReconnects += 1 }
            openFailures = 0
            logger.info("camera open", metadata: ["camera": "\(name)", "source": "\(configuration.source)",
                                                  "size": "\(configuration.size)", "fps": "\(configuration.fps)"])
        } catch {
            source.close()
            openFailures += 1
            let message = "\(error)"
            lock.withLock { snapshot.lastError = message }
            logger.error("camera cannot be opened; retrying", metadata: [
                "camera": "\(name)", "source": "\(configuration.source)", "error": "\(message)",
                "retry_in_s": "\(retryDelay)"])
        }
        publishStatus()
    }

    /// 1, 2, 4, 8, 16, then 30 s after consecutive open failures.
    private var retryDelay: Double { min(30, Double(1 << min(5, max(0, openFailures - 1)))) }

    private var isStopping: Bool { lock.withLock { stopping } }

    /// Sleeps up to `seconds`, waking for `stop()`; reports progress every half second.
    private func pause(_ seconds: Double) {
        let end = monotonicNow() + seconds
        lock.lock()
        while !stopping {
            let left = end - monotonicNow()
            if left <= 0 { break }
            lock.wait(seconds: min(left, 0.5))
            lock.unlock()
            progressed()
            lock.lock()
        }
        lock.unlock()
    }

    private var lastStatus: String?

    private func publishStatus() {
        let s: String = opened && source.health.state == .online ? "online" : "offline"
        lock.withLock { snapshot.status = s }
        if s != lastStatus {
            lastStatus = s
            statusChanged(name, s)
        }
    }

    private func captureLoop() {
        while !isStopping {
            progressed()
            if !opened {
                pause(retryDelay)
                if isStopping { break }
                retire()
                source = makeSource(configuration)
                tryOpen()
                continue
            }
            do {
                _ = try source.withLatestFrame(maxWait: 0.5) { frame in
                    let now = clock.now()
                    let wall = Date().timeIntervalSince1970
                    _ = queue.offer(camera: name, frame: frame, wallNow: wall, monotonicNow: now) { dueTasks(now: now) }
                }
            } catch {
                let message = "\(error)"
                logger.error("camera failed; reopening", metadata: ["camera": "\(name)", "error": "\(message)"])
                source.close()
                opened = false
                openFailures = 1
                lock.withLock { snapshot.lastError = message }
            }
            updateCounters()
            publishStatus()
        }
    }

    /// Tasks due at `now`, marked as scheduled (next due one interval later; a task that waited longer
    /// than its interval runs once, not once per missed interval). Called under the queue's lock.
    private func dueTasks(now: Double) -> [TaskConfiguration] {
        lock.withLock {
            var out: [TaskConfiguration] = []
            for i in schedule.indices where schedule[i].due <= now {
                out.append(schedule[i].task)
                let next = schedule[i].due + schedule[i].task.interval
                schedule[i].due = next > now ? next : now + schedule[i].task.interval
            }
            return out
        }
    }

    /// Adds the current source's counters to `base` before it is replaced.
    private func retire() {
        let c = source.health.counters
        base.frames += c.frames
        base.dropped += c.dropped
        base.corrupt += c.corrupt
        base.reconnects += c.reconnects
    }

    private func updateCounters() {
        let c = source.health.counters
        let last = source.health.lastEvent
        lock.withLock {
            snapshot.frames = base.frames + c.frames
            snapshot.dropped = base.dropped + c.dropped + base.corrupt + c.corrupt
            snapshot.reconnects = base.reconnects + c.reconnects + ownReconnects
            if let e = last, e.isError || e.state != .online, !e.reason.isEmpty { snapshot.lastError = e.reason }
        }
    }
}

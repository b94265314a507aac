// The queue between the cameras and the one inference worker (issue 5, Pipeline). Bounded by
// construction: at most one job per camera, holding one frame (copied into a buffer the camera
// reuses) and the tasks that fell due on it. Policy: latest frame wins — while a camera's job waits
// unstarted, each newer frame replaces its pixels (and tasks falling due meanwhile join it); once
// the worker has started a job its frame is fixed and the camera just keeps capturing. The worker
// takes one task at a time, round-robin over the cameras, so a camera with many tasks cannot
// starve the others.
import Capture
import Foundation

/// One camera's frame waiting for (or under) inference, with the tasks still to run on it.
final class FrameJob: @unchecked Sendable {
    let camera: String
    /// The pixels, owned by the job until it is done (then they return to the camera's slot).
    let image: RGBImage
    var sequence: UInt64 = 0
    /// Capture time on CLOCK_MONOTONIC (latency is measured from here).
    var capturedMonotonic = 0.0
    /// Capture time in seconds since 1970 (the payload's `ts`).
    var capturedWall = 0.0
    /// Tasks not started yet, in the order they fell due.
    var tasks: [TaskConfiguration] = []
    /// The worker has taken a task: the frame no longer changes.
    var started = false

    init(camera: String, image: RGBImage) {
        self.camera = camera
        self.image = image
    }

    /// Copies `frame` in (the buffer grows only if the frame is larger than any before).
    func load(_ frame: Frame, wallNow: Double, monotonicNow: Double) {
        image.reshape(width: frame.width, height: frame.height)
        frame.image.withRGBBytes { src in
            image.withMutableRGBBytes { dst in
                guard let d = dst.baseAddress, let s = src.baseAddress, src.count > 0 else { return }
                d.update(from: s, count: src.count)
            }
        }
        sequence = frame.sequence
        capturedMonotonic = frame.timestamp
        capturedWall = wallNow - max(0, monotonicNow - frame.timestamp)
    }
}

/// What `InferenceQueue.offer` did with a frame.
enum OfferResult: Equatable {
    /// Nothing was due and no job was waiting.
    case idle
    /// A new job was queued.
    case queued
    /// The waiting job took this newer frame (the older one is dropped: latest frame wins).
    case replaced
    /// The camera's job is running; the frame is not needed.
    case busy
}

/// The bounded, fair hand-over from cameras to the inference worker.
final class InferenceQueue: @unchecked Sendable {
    private struct Slot {
        var job: FrameJob?
        /// The buffer of the last finished job, reused by the next one.
        var spare: RGBImage?
    }

    private let cond = MonotonicCondition()
    private var slots: [String: Slot] = [:]
    /// Cameras in the order the worker visits them.
    private var order: [String] = []
    private var cursor = 0
    private var stopped = false
    /// Frames replaced in waiting jobs (latest frame wins), since start.
    private(set) var replacedFrames: UInt64 = 0

    /// Adds `camera` (idempotent).
    func add(camera: String) {
        cond.withLock {
            if slots[camera] == nil { slots[camera] = Slot(); order.append(camera) }
        }
    }

    /// Removes `camera` and its waiting job; a job under inference finishes, its remaining tasks are dropped.
    func remove(camera: String) {
        cond.withLock {
            slots[camera]?.job?.tasks = []
            slots[camera] = nil
            order.removeAll { $0 == camera }
            cursor = 0
        }
    }

    /// Drops the tasks not yet started for `camera` (its tasks changed on reload) and calls
    /// `reschedule` with them, under the queue's lock, so that no frame is offered in between.
    func dropPending(camera: String, reschedule: ([TaskConfiguration]) -> Void = { _ in }) {
        cond.withLock {
            var dropped: [TaskConfiguration] = []
            if let job = slots[camera]?.job {
                dropped = job.tasks
                job.tasks = []
                if !job.started { slots[camera]?.spare = job.image; slots[camera]?.job = nil }
            }
            reschedule(dropped)
        }
    }

    /// Offers the camera's newest frame. `due` runs under the queue's lock only when the frame can
    /// be used (no job, or a job not started yet) and returns the tasks due now (marking them
    /// scheduled); a job is made only when some task is due.
    func offer(camera: String, frame: Frame, wallNow: Double, monotonicNow: Double,
               due: () -> [TaskConfiguration]) -> OfferResult {
        cond.lock()
        defer { cond.unlock() }
        guard !stopped, var slot = slots[camera] else { return .idle }
        if let job = slot.job {
            if job.started { return .busy }
            job.load(frame, wallNow: wallNow, monotonicNow: monotonicNow)
            replacedFrames += 1
            for t in due() where !job.tasks.contains(where: { $0.name == t.name }) { job.tasks.append(t) }
            return .replaced
        }
        let tasks = due()
        guard !tasks.isEmpty else { return .idle }
        let job = FrameJob(camera: camera, image: slot.spare ?? RGBImage(width: frame.width, height: frame.height))
        slot.spare = nil
        job.load(frame, wallNow: wallNow, monotonicNow: monotonicNow)
        job.tasks = tasks
        slot.job = job
        slots[camera] = slot
        cond.broadcast()
        return .queued
    }

    /// The next task to run, round-robin over cameras, waiting up to `timeout` seconds; nil on
    /// timeout or after `stop()`.
    func take(timeout: Double) -> (job: FrameJob, task: TaskConfiguration)? {
        let deadline = monotonicNow() + timeout
        cond.lock()
        defer { cond.unlock() }
        while !stopped {
            if let picked = pickLocked() { return picked }
            let left = deadline - monotonicNow()
            if left <= 0 { return nil }
            cond.wait(seconds: left)
        }
        return nil
    }

    private func pickLocked() -> (job: FrameJob, task: TaskConfiguration)? {
        guard !order.isEmpty else { return nil }
        for step in 0..<order.count {
            let i = (cursor + step) % order.count
            guard let job = slots[order[i]]?.job, !job.tasks.isEmpty else { continue }
            cursor = (i + 1) % order.count
            job.started = true
            return (job, job.tasks.removeFirst())
        }
        return nil
    }

    /// The worker finished a task of `job`: when none is left, the camera may queue a new one.
    func finished(_ job: FrameJob) {
        cond.withLock {
            guard job.tasks.isEmpty, slots[job.camera]?.job === job else { return }
            slots[job.camera]?.job = nil
            slots[job.camera]?.spare = job.image
        }
    }

    /// Tasks waiting, over all cameras (the health message's `queue_depth`).
    var depth: Int { cond.withLock { slots.values.reduce(0) { $0 + ($1.job?.tasks.count ?? 0) } } }

    /// Wakes the worker and refuses further work.
    func stop() {
        cond.withLock {
            stopped = true
            cond.broadcast()
        }
    }
}

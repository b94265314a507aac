// The one inference worker the cameras share (issue 5, Pipeline): a thread that takes a task from
// the queue, runs Florence-2 on the job's frame (the model's own worker pool supplies the other
// threads), publishes the result and records its latency. A new model (reload) is loaded beside the
// running one and swapped in between two tasks.
import Capture
import Compute
import Florence2
import Foundation
import Logging

/// A model file loaded for the daemon: weights mapped, memory planned and allocated, generation
/// parameters from the file and the configuration.
final class LoadedModel: @unchecked Sendable {
    let configuration: ModelConfiguration
    let model: Florence2Model
    let parameters: GenerationParameters
    /// The file's name, as results carry it.
    let name: String
    /// The memory plan's total in bytes.
    let planBytes: Int

    /// Loads `configuration.path`; fails before allocating when the precision differs from
    /// `precision` or the plan exceeds `memory_budget`.
    init(_ configuration: ModelConfiguration, logger: Logger) throws {
        let probe = try GGUFFile(path: configuration.path)
        let config = try Florence2Config(file: probe)
        if let want = configuration.precision {
            let have = try probe.stringIfPresent("ocellus.precision") ?? "unknown"
            guard have == want.rawValue else {
                throw DaemonError("model.precision is \(want.rawValue) but \(configuration.path) holds \(have) weights")
            }
        }
        let limits = configuration.limits(for: config)
        let file = try Florence2ModelFile(path: configuration.path, limits: limits, threads: limits.threads,
                                          budgetBytes: configuration.memoryBudget, logger: logger)
        model = try Florence2Model(file: file, pool: WorkerPool(threads: limits.threads), logger: logger)
        var p = GenerationParameters(config: config.generation, maxNewTokens: configuration.maxNewTokens)
        p.numBeams = limits.numBeams
        parameters = p
        self.configuration = configuration
        name = (configuration.path as NSString).lastPathComponent
        planBytes = file.plan.totalBytes
    }
}

/// An error of the daemon itself, with a message for the log, the health topic and `STATUS=`.
public struct DaemonError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Runs the queue's tasks on the current model and publishes the results.
final class InferenceWorker: @unchecked Sendable {
    private let queue: InferenceQueue
    private let logger: Logger
    private let lock = NSLock()
    private var model: LoadedModel
    private var pendingModel: LoadedModel?
    private var latencies: [String: [String: LatencyWindow]] = [:]
    private var errors: [String: String] = [:]
    private var completed: UInt64 = 0
    private var stopping = false
    private var thread: JoinableThread?
    /// Where results go: (camera, task, payload JSON, retained).
    private let publish: @Sendable (String, TaskConfiguration, [UInt8]) -> Void
    private let progressed: @Sendable () -> Void

    /// Longest idle wait between progress reports (the watchdog's inference loop).
    private let idleTimeout: Double

    /// A worker on `queue`. `progressed` runs after every task, every decoder step and every
    /// `idleTimeout` seconds of waiting.
    init(model: LoadedModel, queue: InferenceQueue, logger: Logger, idleTimeout: Double = 1,
         publish: @escaping @Sendable (String, TaskConfiguration, [UInt8]) -> Void,
         progressed: @escaping @Sendable () -> Void) {
        self.model = model
        self.queue = queue
        self.logger = logger
        self.idleTimeout = idleTimeout
        self.publish = publish
        self.progressed = progressed
        attach(model)
    }

    /// Thrown from the decode-step hook when the worker is stopping.
    private struct Cancelled: Error {}

    /// Reports progress on every decoder step (a long generation is not a hang) and ends a
    /// generation early when the daemon stops.
    private func attach(_ m: LoadedModel) {
        m.model.onDecodeStep = { [weak self] in
            guard let self else { return }
            self.progressed()
            if self.lock.withLock({ self.stopping }) { throw Cancelled() }
        }
    }

    func start() {
        // The model's pool threads do most of the work; this one drives them.
        thread = JoinableThread(name: "inference") { [self] in loop() }
    }

    /// Ends the running generation at its next decoder step, then stops.
    func stop() {
        lock.withLock { stopping = true }
        queue.stop()
        thread?.join()
        thread = nil
    }

    /// Uses `next` from the next task on; the current model is released once the swap is done.
    func swap(to next: LoadedModel) {
        attach(next)
        lock.withLock { pendingModel = next }
    }

    /// The model in use (or about to be).
    var current: LoadedModel { lock.withLock { pendingModel ?? model } }

    /// Tasks completed since start.
    var completedCount: UInt64 { lock.withLock { completed } }

    /// p50 and p95 per task name of `camera`, in seconds.
    func latency(camera: String) -> [String: [String: Double]] {
        lock.withLock {
            var out: [String: [String: Double]] = [:]
            for (task, w) in latencies[camera] ?? [:] {
                if let p50 = w.percentile(50), let p95 = w.percentile(95) {
                    out[task] = ["p50": (p50 * 1000).rounded() / 1000, "p95": (p95 * 1000).rounded() / 1000]
                }
            }
            return out
        }
    }

    /// The last inference error of `camera`, if any.
    func lastError(camera: String) -> String? { lock.withLock { errors[camera] } }

    /// Forgets the latencies of tasks `camera` no longer has (or of the whole camera).
    func forget(camera: String, keeping names: Set<String> = []) {
        lock.withLock {
            if names.isEmpty { latencies[camera] = nil; errors[camera] = nil; return }
            latencies[camera] = latencies[camera]?.filter { names.contains($0.key) }
        }
    }

    private func loop() {
        while true {
            let swapped: LoadedModel? = lock.withLock {
                guard let next = pendingModel else { return nil }
                let old = model
                model = next
                pendingModel = nil
                return old
            }
            if let old = swapped {
                logger.info("model swapped", metadata: ["from": "\(old.name)", "to": "\(model.name)"])
            }
            if lock.withLock({ stopping }) { return }
            progressed()
            guard let (job, task) = queue.take(timeout: idleTimeout) else { continue }
            run(task, on: job)
            queue.finished(job)
            progressed()
        }
    }

    private func run(_ task: TaskConfiguration, on job: FrameJob) {
        let m = lock.withLock { model }
        do {
            let out = try m.model.run(image: job.image, task: task.task, text: task.text, parameters: m.parameters)
            let latency = max(0, monotonicNow() - job.capturedMonotonic)
            let payload = ResultPayload(result: out.result, camera: job.camera, prompt: task.text,
                                        frame: FramePayload(seq: job.sequence, w: job.image.width, h: job.image.height),
                                        timestamp: (job.capturedWall * 1000).rounded() / 1000, model: m.name, latency: latency)
            let data = try payload.json()
            lock.withLock {
                latencies[job.camera, default: [:]][task.name, default: LatencyWindow()].record(latency)
                completed += 1
            }
            publish(job.camera, task, Array(data))
            logger.debug("result", metadata: ["camera": "\(job.camera)", "task": "\(task.name)",
                                              "latency_s": "\(payload.latency_s)", "frame": "\(job.sequence)"])
        } catch is Cancelled {
            logger.info("inference cancelled: stopping", metadata: ["camera": "\(job.camera)", "task": "\(task.name)"])
        } catch {
            let message = "\(task.name): \(error)"
            lock.withLock { errors[job.camera] = message }
            logger.error("inference failed", metadata: ["camera": "\(job.camera)", "task": "\(task.name)", "error": "\(error)"])
        }
    }
}

// ocellusd's control loop (issue 5): start-up (configuration, model, broker, cameras, READY=1),
// the health timer (health topic and STATUS=), the watchdog (WATCHDOG=1 only while capture,
// inference and publishing progress), reload on SIGHUP (validate, then apply the difference, or keep
// the old configuration and report why) and a clean stop on SIGTERM (STOPPING=1, `offline`).
import Capture
import Florence2
import Foundation
import Logging
import MQTT

/// The version results and discovery carry.
public enum OcellusVersion {
    /// Semantic version of this build.
    public static let string = "0.1.0"
}

/// The running daemon. `run()` blocks until `requestStop()`; signals arrive through
/// `requestReload()` and `requestStop()` from any thread.
public final class DaemonService: @unchecked Sendable {
    /// How to start.
    public struct Options: Sendable {
        /// The YAML file (read at start and on every reload).
        public var configPath: String
        /// Applied to every configuration read (the demo points the broker at its own Mosquitto).
        public var override: (@Sendable (inout DaemonConfiguration) -> Void)?
        /// `CREDENTIALS_DIRECTORY` and friends.
        public var environment: [String: String]

        public init(configPath: String, override: (@Sendable (inout DaemonConfiguration) -> Void)? = nil,
                    environment: [String: String] = ProcessInfo.processInfo.environment) {
            self.configPath = configPath
            self.override = override
            self.environment = environment
        }
    }

    private enum Event { case reload, stop }

    private let options: Options
    private var logger: Logger
    private let notifier = SystemdNotifier()
    private let watchdog: ProgressWatchdog
    private let events = MonotonicCondition()
    private var pending: [Event] = []

    // State touched by the control thread; `lock` guards what other threads read.
    private let lock = NSLock()
    private var configuration: DaemonConfiguration!
    private var publisherRef: Publisher!
    private var queue = InferenceQueue()
    private var worker: InferenceWorker!
    private var cameras: [String: CameraRunner] = [:]
    private var cameraTurns: [String: UInt64] = [:]
    private var lastError: String?
    private let started = monotonicNow()
    private var lastFrames: [String: (frames: Int, at: Double)] = [:]
    /// The publisher's confirmations at the last watchdog check, and when they last changed.
    private var lastConfirmed = (count: -1, at: 0.0)
    /// Monotonic deadlines of the timers.
    private var nextHealth = 0.0
    private var nextWatchdog = Double.infinity
    private var watchdogInterval: Double?

    /// A daemon for `options`; nothing starts until `run()`.
    public init(options: Options, logger: Logger = Logger(label: "ocellusd")) {
        self.options = options
        self.logger = logger
        watchdog = ProgressWatchdog(notifier: notifier)
    }

    private var publisher: Publisher { lock.withLock { publisherRef } }

    // MARK: Requests (any thread)

    /// Asks for a reload (SIGHUP).
    public func requestReload() { post(.reload) }
    /// Asks for a clean stop (SIGTERM, SIGINT).
    public func requestStop() { post(.stop) }

    private func post(_ e: Event) {
        events.withLock {
            pending.append(e)
            events.broadcast()
        }
    }

    // MARK: Configuration

    /// Reads, overrides and checks the file; throws `ConfigurationError` with every error.
    private func readConfiguration() throws -> DaemonConfiguration {
        var c = try DaemonConfiguration.load(path: options.configPath)
        options.override?(&c)
        let check = ConfigurationCheck(c, environment: options.environment)
        if !check.errors.isEmpty { throw ConfigurationError(source: options.configPath, issues: check.issues) }
        for w in check.warnings { logger.warning("\(Self.redacted("\(options.configPath):\(w)"))") }
        return c
    }

    // MARK: Run

    /// Starts everything, runs until a stop is requested, then shuts down cleanly.
    /// - Throws: a bad configuration, an unloadable model or a broker setting that cannot be used
    ///   (nothing is published then).
    public func run() throws {
        let config = try readConfiguration()
        DaemonLogLevel.set(config.logLevel)
        logger.info("starting", metadata: ["version": "\(OcellusVersion.string)", "config": "\(options.configPath)",
                                           "node": "\(config.nodeId)", "cameras": "\(config.cameras.filter(\.enabled).count)"])
        // A large model on a slow SD card can take a while to map and fault in: ask systemd for time
        // beyond TimeoutStartSec (harmless when not under systemd).
        notifier.extendTimeout(microseconds: 120_000_000)
        let model = try LoadedModel(config.model, logger: logger)
        logger.info("model loaded", metadata: ["model": "\(model.name)", "plan_bytes": "\(model.planBytes)",
                                               "beams": "\(model.parameters.numBeams)", "max_new_tokens": "\(model.parameters.maxNewTokens)"])
        let pub = try Publisher(configuration: config, logger: logger, environment: options.environment)
        lock.withLock {
            configuration = config
            publisherRef = pub
        }
        publishState("starting", reason: nil)
        try pub.start()
        watchdogInterval = SystemdNotifier.watchdogInterval().map { Double($0.components.seconds) + Double($0.components.attoseconds) * 1e-18 }
        worker = InferenceWorker(model: model, queue: queue, logger: logger,
                                 idleTimeout: min(1, (watchdogInterval ?? 4) / 4),
                                 publish: { [weak self] camera, task, data in self?.publishResult(camera, task, data) },
                                 progressed: { [weak self] in self?.watchdog.progressed(.inference) })
        worker.start()
        for c in config.cameras {
            if c.enabled { startCamera(c) } else { publisher.publishRetained(topics.cameraStatus(c.name), Array("disabled".utf8)) }
        }
        publishDiscovery(config, previous: nil)
        publishState("running", reason: nil)
        let health = healthPayload()
        notifier.ready(status: health.statusLine)
        publishHealth(health)
        logger.info("ready", metadata: ["status": "\(health.statusLine)"])
        loop()
        shutdown()
    }

    private var topics: Topics { publisher.topics }

    private func loop() {
        nextHealth = monotonicNow() + configuration.health.interval
        if let w = watchdogInterval {
            logger.info("watchdog enabled", metadata: ["interval_s": "\(w)"])
            nextWatchdog = monotonicNow() + w / 2
        }
        while true {
            let event: Event? = events.withLock {
                while pending.isEmpty {
                    let left = min(nextHealth, nextWatchdog) - monotonicNow()
                    if left <= 0 { break }
                    events.wait(seconds: left)
                }
                return pending.isEmpty ? nil : pending.removeFirst()
            }
            switch event {
            case .stop?:
                return
            case .reload?:
                reload()
            case nil:
                break
            }
            runTimers()
        }
    }

    /// The watchdog check and the health message, when due.
    private func runTimers() {
        let now = monotonicNow()
        if now >= nextWatchdog, let w = watchdogInterval {
            checkWatchdog()
            nextWatchdog = now + w / 2
        }
        if now >= nextHealth {
            publishHealth(healthPayload())
            nextHealth = now + configuration.health.interval
        }
    }

    /// Runs `work` on its own thread while this one keeps the watchdog and health timers going
    /// (a model load on reload can take longer than the watchdog interval).
    private func keepingTimers<T>(_ work: @escaping @Sendable () throws -> T) throws -> T {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            box.result = Result { try work() }
            done.signal()
        }
        while done.wait(timeout: .now() + min(1, (watchdogInterval ?? 4) / 4)) == .timedOut {
            runTimers()
        }
        return try box.result!.get()
    }

    private func shutdown() {
        logger.info("stopping")
        notifier.stopping()
        publishState("stopping", reason: nil)
        for (_, c) in cameras { c.requestStop() }   // all at once, then wait for each
        worker.stop()   // the running generation ends at its next decoder step
        for (_, c) in cameras { c.stop() }
        let pub = publisher
        for c in configuration.cameras where c.enabled { pub.publishRetained(topics.cameraStatus(c.name), Array("offline".utf8)) }
        pub.stop(timeout: 5)
        logger.info("stopped")
    }

    // MARK: Cameras

    private func startCamera(_ c: CameraConfiguration) {
        let runner = CameraRunner(c, queue: queue, logger: logger,
                                  statusChanged: { [weak self] camera, status in self?.cameraStatus(camera, status) },
                                  progressed: { [weak self] in self?.cameraProgressed(c.name) })
        lock.withLock { cameraTurns[c.name] = 0 }
        cameras[c.name] = runner
        runner.start()
    }

    private func stopCamera(_ name: String) {
        cameras.removeValue(forKey: name)?.stop()
        lock.withLock { cameraTurns[name] = nil }
        lastFrames[name] = nil
    }

    private func cameraStatus(_ camera: String, _ status: String) {
        publisher.publishRetained(topics.cameraStatus(camera), Array(status.utf8))
        logger.notice("camera \(status)", metadata: ["camera": "\(camera)"])
    }

    private func cameraProgressed(_ name: String) {
        lock.withLock { if cameraTurns[name] != nil { cameraTurns[name]! &+= 1 } }
    }

    // MARK: Publishing

    /// Publishes a result, unless a reload removed or changed its camera or task meanwhile (a
    /// late result must not bring back retained state that the reload cleared). The check and the
    /// publish happen under the lock that the reload takes to change the configuration.
    private func publishResult(_ camera: String, _ task: TaskConfiguration, _ data: [UInt8]) {
        lock.withLock {
            guard let c = configuration.camera(named: camera), c.enabled, c.task(named: task.name) == task else {
                logger.debug("result dropped: its camera or task changed", metadata: ["camera": "\(camera)", "task": "\(task.name)"])
                return
            }
            let pub: Publisher = publisherRef
            let topic = pub.topics.result(camera: camera, name: task.name)
            if task.retainsResults {
                pub.publishRetained(topic, data, contentType: "application/json")
            } else {
                pub.publishEvent(topic, data, contentType: "application/json")
            }
        }
    }

    private func publishState(_ status: String, reason: String?) {
        let obj: [String: Any] = ["status": status, "reason": reason as Any? ?? NSNull(), "version": OcellusVersion.string]
        guard let data = try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        publisher.publishRetained(topics.state, Array(data), contentType: "application/json")
    }

    private func discoveryTopic(_ c: DaemonConfiguration, camera: String) -> String {
        Discovery.topic(prefix: c.homeAssistant.discoveryPrefix, node: c.nodeId, camera: camera)
    }

    /// Publishes discovery for `config`'s cameras and removes what `previous` announced that is gone.
    private func publishDiscovery(_ config: DaemonConfiguration, previous: DaemonConfiguration?) {
        let pub = publisher
        var keep = Set<String>()
        if config.homeAssistant.discovery {
            for c in config.cameras {
                let topic = discoveryTopic(config, camera: c.name)
                keep.insert(topic)
                do {
                    let data = try Discovery.payload(topics: pub.topics, camera: c.name, tasks: c.tasks.map { ($0.name, $0.task) },
                                                     version: OcellusVersion.string, qos: config.broker.qos)
                    pub.publishRetained(topic, Array(data), contentType: "application/json")
                } catch {
                    logger.error("discovery payload failed", metadata: ["camera": "\(c.name)", "error": "\(error)"])
                }
            }
        }
        if let old = previous, old.homeAssistant.discovery {
            for c in old.cameras where !keep.contains(discoveryTopic(old, camera: c.name)) {
                pub.clearRetained(discoveryTopic(old, camera: c.name))
            }
        }
    }

    // MARK: Health

    private func healthPayload() -> HealthPayload {
        let config = configuration!
        let now = monotonicNow()
        var cams: [String: CameraHealth] = [:]
        for c in config.cameras {
            guard c.enabled, let runner = cameras[c.name] else {
                cams[c.name] = CameraHealth(status: "disabled", fps: 0, dropped_frames: 0, reconnects: 0, latency_s: [:], last_error: nil)
                continue
            }
            let s = runner.health
            var fps = 0.0
            if let last = lastFrames[c.name], now > last.at { fps = Double(s.frames - last.frames) / (now - last.at) }
            lastFrames[c.name] = (s.frames, now)
            cams[c.name] = CameraHealth(status: s.status, fps: (fps * 10).rounded() / 10, dropped_frames: UInt64(s.dropped),
                                        reconnects: UInt64(s.reconnects), latency_s: worker.latency(camera: c.name),
                                        last_error: worker.lastError(camera: c.name) ?? s.lastError)
        }
        let counters = publisher.counters
        return HealthPayload(ts: (Date().timeIntervalSince1970 * 1000).rounded() / 1000,
                             uptime_s: ((monotonicNow() - started) * 10).rounded() / 10,
                             rss_bytes: residentSetBytes(), queue_depth: queue.depth,
                             outbox_dropped: UInt64(counters.dropped), cameras: cams,
                             last_error: lock.withLock { lastError })
    }

    private func publishHealth(_ h: HealthPayload) {
        guard let data = try? h.json() else { return }
        let expiry = UInt32(max(60, 3 * configuration.health.interval).rounded(.up))
        publisher.publishRetained(topics.health, Array(data), contentType: "application/json", messageExpiry: expiry)
        notifier.status(h.statusLine)
        let degraded = h.cameras.values.contains { $0.status == "offline" }
        publishState(degraded || h.last_error != nil ? "degraded" : "running",
                     reason: h.last_error ?? (degraded ? "a camera is offline" : nil))
    }

    // MARK: Watchdog

    private func checkWatchdog() {
        let allTurned: Bool = lock.withLock {
            let ok = cameraTurns.values.allSatisfy { $0 > 0 }
            for k in cameraTurns.keys { cameraTurns[k] = 0 }
            return ok
        }
        if allTurned { watchdog.progressed(.capture) }
        // Publishing progresses when the client has nothing to send, is reconnecting (a broker
        // that is down must not get the daemon restarted), or got a confirmation within two
        // keep-alives (libmosquitto notices a silent broker after 1.5; until then messages wait).
        let pub = publisher
        let c = pub.counters
        let now = monotonicNow()
        if c.confirmed != lastConfirmed.count { lastConfirmed = (c.confirmed, now) }
        if !pub.isConnected || c.queued + c.inFlight == 0 || now - lastConfirmed.at < 2 * Double(pub.broker.keepalive) {
            watchdog.progressed(.publish)
        }
        let r = watchdog.check()
        if !r.pinged { logger.warning("watchdog not pinged: no progress", metadata: ["stalled": "\(r.stalled)"]) }
    }

    // MARK: Reload

    private func reload() {
        notifier.reloading()
        publishState("reloading", reason: nil)
        logger.notice("reloading", metadata: ["config": "\(options.configPath)"])
        let old = configuration!
        let new: DaemonConfiguration
        do {
            new = try readConfiguration()
        } catch {
            rejectReload(error)
            return
        }
        let diff = DaemonConfiguration.diff(old, new)
        // The steps that can fail come first, so that a failure leaves the old configuration whole.
        var model: LoadedModel?
        var pub: Publisher?
        do {
            if diff.reloadModel {
                notifier.extendTimeout(microseconds: 120_000_000)
                let cfg = new.model, log = logger
                model = try keepingTimers { try LoadedModel(cfg, logger: log) }
            }
            if diff.reconnectBroker || diff.outbox {
                pub = try Publisher(configuration: new, logger: logger, environment: options.environment)
            }
        } catch {
            rejectReload(error)
            return
        }
        if diff.logLevel { DaemonLogLevel.set(new.logLevel) }
        if let m = model { worker.swap(to: m) }
        if let p = pub {
            // New results go to the new publisher from here on; the old one's state follows.
            let oldPub: Publisher = lock.withLock {
                let o: Publisher = publisherRef
                publisherRef = p
                return o
            }
            p.adoptRetained(from: oldPub)
            do { try p.start() } catch { logger.error("broker start failed", metadata: ["error": "\(error)"]) }
            oldPub.stop(timeout: 2)
        }
        lock.withLock { configuration = new }
        for (name, change) in diff.cameras {
            switch change {
            case .added:
                if let c = new.camera(named: name) { startCamera(c) }
            case .removed:
                stopCamera(name)
                worker.forget(camera: name)
                if new.camera(named: name) != nil {
                    publisher.publishRetained(topics.cameraStatus(name), Array("disabled".utf8))
                } else {
                    clearCamera(name, tasks: old.camera(named: name)?.tasks ?? [])
                }
            case .reopen:
                stopCamera(name)
                if let c = new.camera(named: name) {
                    clearStaleResults(name, old: old.camera(named: name)?.tasks ?? [], new: c.tasks)
                    startCamera(c)
                }
            case .tasks:
                guard let c = new.camera(named: name), let runner = cameras[name] else { continue }
                runner.updateTasks(c.tasks)
                clearStaleResults(name, old: old.camera(named: name)?.tasks ?? [], new: c.tasks)
            }
        }
        if diff.health { nextHealth = monotonicNow() + new.health.interval }
        if diff.republishDiscovery || pub != nil { publishDiscovery(new, previous: old) }
        lock.withLock { lastError = nil }
        let summary = diff.isEmpty ? "no changes" : diff.summary.joined(separator: "; ")
        logger.notice("reloaded", metadata: ["changes": "\(summary)"])
        let health = healthPayload()
        publishHealth(health)
        notifier.ready(status: "reloaded (\(summary)); " + health.statusLine)
    }

    /// Forgets the latencies of tasks a camera no longer has, and clears the retained results of
    /// tasks that are gone or no longer retained.
    private func clearStaleResults(_ camera: String, old: [TaskConfiguration], new: [TaskConfiguration]) {
        worker.forget(camera: camera, keeping: Set(new.map(\.name)))
        for t in old where t.retainsResults && !new.contains(where: { $0.name == t.name && $0.retainsResults }) {
            publisher.clearRetained(topics.result(camera: camera, name: t.name))
        }
    }

    /// Removes a deleted camera's retained status and results.
    private func clearCamera(_ name: String, tasks: [TaskConfiguration]) {
        let pub = publisher
        pub.clearRetained(topics.cameraStatus(name))
        for t in tasks where t.retainsResults { pub.clearRetained(topics.result(camera: name, name: t.name)) }
    }

    private func rejectReload(_ error: Error) {
        let text: String
        if let e = error as? ConfigurationError {
            let errs = e.errors
            for i in errs { logger.error("\(Self.redacted("\(options.configPath):\(i)"))") }
            text = "reload rejected, previous configuration kept: \(errs.count) error\(errs.count == 1 ? "" : "s") in \(options.configPath): "
                + errs.map { "\($0)" }.joined(separator: "; ")
        } else {
            logger.error("reload failed", metadata: ["error": "\(error)"])
            text = "reload rejected, previous configuration kept: \(error)"
        }
        let redacted = Self.redacted(text)
        lock.withLock { lastError = redacted }
        let health = healthPayload()
        publishHealth(health)
        notifier.ready(status: redacted)
        logger.error("\(redacted)")
    }

    /// `text` with the user information of any URL (`mqtt://user:secret@host`) replaced by `***`:
    /// error messages quote bad values, and these go to the health topic and `STATUS=`.
    public static func redacted(_ text: String) -> String {
        text.replacingOccurrences(of: #"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'"]+@"#, with: "$1***@", options: .regularExpression)
    }
}

/// A result handed from one thread to another (written before a semaphore signal, read after).
private final class ResultBox<T>: @unchecked Sendable { var result: Result<T, Error>? }

// MARK: - Log level

/// The daemon's log level, changeable on reload (`log_level`); the handler reads it on every message.
public enum DaemonLogLevel {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var level: Logger.Level = .info

    /// The current level.
    public static var current: Logger.Level { lock.withLock { level } }
    /// Sets the level.
    public static func set(_ l: Logger.Level) { lock.withLock { level = l } }
}

/// Lines on standard error (`journalctl` adds time and unit), at `DaemonLogLevel.current`:
/// `LEVEL label: message key=value ...`.
public struct DaemonLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level {
        get { DaemonLogLevel.current }
        set { DaemonLogLevel.set(newValue) }
    }
    private let label: String
    /// Whether to prefix an ISO 8601 time (when not under systemd, which adds its own).
    private let timestamps: Bool

    public init(label: String, timestamps: Bool) {
        self.label = label
        self.timestamps = timestamps
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = ""
        if timestamps {
            line += ISO8601DateFormatter.string(from: Date(), timeZone: .current, formatOptions: [.withInternetDateTime]) + " "
        }
        line += "\(event.level) \(label): \(event.message)"
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        for k in all.keys.sorted() { line += " \(k)=\(all[k]!)" }
        line += "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}

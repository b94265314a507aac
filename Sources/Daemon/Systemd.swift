// systemd integration: the notify protocol (sd_notify(3) through libsystemd) — READY, RELOADING
// with MONOTONIC_USEC, STOPPING, STATUS, and a watchdog that pings only on real progress.
import CSystemd
import Foundation

// MARK: - Notifier

/// Sends service state to systemd when the daemon runs under it (`$NOTIFY_SOCKET` set); does
/// nothing otherwise. Return values are ignored, as sd_notify(3) recommends.
public struct SystemdNotifier: Sendable {
    /// Whether a notify socket is configured.
    public var isActive: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// A notifier for this process.
    public init() {}

    /// Sends `state` (newline-separated `KEY=VALUE` assignments).
    public func send(_ state: String) {
        guard isActive else { return }
        _ = sd_notify(0, state)
    }

    /// Start-up (or a reload) finished: the model is loaded and the sources are open.
    public func ready(status: String? = nil) {
        send(status.map { "READY=1\nSTATUS=\(Self.oneLine($0))" } ?? "READY=1")
    }

    /// A reload begins; systemd ≥ 253 needs the monotonic timestamp, 252 ignores it.
    public func reloading(monotonicMicroseconds: UInt64 = SystemdNotifier.monotonicMicroseconds()) {
        send("RELOADING=1\nMONOTONIC_USEC=\(monotonicMicroseconds)")
    }

    /// Shutting down.
    public func stopping() { send("STOPPING=1") }

    /// The one-line status `systemctl status` shows.
    public func status(_ text: String) { send("STATUS=\(Self.oneLine(text))") }

    /// A watchdog keep-alive.
    public func watchdogPing() { send("WATCHDOG=1") }

    /// Asks for more start-up time (slow model loads).
    public func extendTimeout(microseconds: UInt64) { send("EXTEND_TIMEOUT_USEC=\(microseconds)") }

    /// The watchdog interval systemd expects pings within, if enabled for this process
    /// (`$WATCHDOG_USEC`, and `$WATCHDOG_PID` naming this process when set).
    public static func watchdogInterval() -> Duration? {
        var usec: UInt64 = 0
        let r = sd_watchdog_enabled(0, &usec)
        guard r > 0, usec > 0 else { return nil }
        return .microseconds(Int64(usec))
    }

    /// CLOCK_MONOTONIC in microseconds.
    public static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }

    /// `text` without newlines (a status is one line; a newline would start a new assignment).
    static func oneLine(_ text: String) -> String {
        String(text.map { $0 == "\n" || $0 == "\r" ? " " : $0 })
    }
}

// MARK: - Watchdog

/// Pings the watchdog only while every registered loop (capture, inference, publishing) has made
/// progress since the previous ping; a stuck loop therefore lets systemd restart the service.
public final class ProgressWatchdog: @unchecked Sendable {
    /// The loops that must progress.
    public enum Loop: Int, CaseIterable, Sendable { case capture = 0, inference, publish }

    private var counters: [UInt64]
    private var lastSeen: [UInt64]
    private let lock = NSLock()
    private let notifier: SystemdNotifier

    /// A watchdog sending through `notifier`.
    public init(notifier: SystemdNotifier = SystemdNotifier()) {
        counters = [UInt64](repeating: 0, count: Loop.allCases.count)
        lastSeen = [UInt64](repeating: 0, count: Loop.allCases.count)
        self.notifier = notifier
    }

    /// Records progress of `loop` (a lock and an add; any thread).
    public func progressed(_ loop: Loop) {
        lock.lock()
        counters[loop.rawValue] &+= 1
        lock.unlock()
    }

    /// Called every half watchdog interval: pings and returns true if every loop in `required`
    /// progressed since the last check; otherwise returns the loops that did not, and does not ping.
    @discardableResult
    public func check(required: [Loop] = Loop.allCases) -> (pinged: Bool, stalled: [Loop]) {
        lock.lock()
        defer { lock.unlock() }
        var stalled: [Loop] = []
        for l in required where counters[l.rawValue] == lastSeen[l.rawValue] { stalled.append(l) }
        lastSeen = counters
        if stalled.isEmpty { notifier.watchdogPing() }
        return (stalled.isEmpty, stalled)
    }
}

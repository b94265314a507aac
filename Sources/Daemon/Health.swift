// Health: per-camera counters and per-task latency percentiles over a fixed window, the process's
// RSS and uptime, published on the health topic and summarized in systemd's STATUS=.
import Foundation

// MARK: - Latency window

/// The last `capacity` latencies of one task (a ring; recording allocates nothing), with p50 and
/// p95 by nearest rank over what the ring holds.
public struct LatencyWindow: Sendable {
    private var values: [Double]
    private var next = 0
    private var filled = 0

    /// A window of `capacity` samples (default 256).
    public init(capacity: Int = 256) {
        precondition(capacity >= 1)
        values = [Double](repeating: 0, count: capacity)
    }

    /// Records one latency in seconds.
    public mutating func record(_ seconds: Double) {
        values[next] = seconds
        next = (next + 1) % values.count
        filled = min(filled + 1, values.count)
    }

    /// Samples held.
    public var count: Int { filled }

    /// The `p`-th percentile (0...100) by nearest rank, nil when empty.
    public func percentile(_ p: Double) -> Double? {
        guard filled > 0 else { return nil }
        let sorted = values[0..<filled].sorted()
        let rank = Int((p / 100 * Double(filled)).rounded(.up))
        return sorted[max(0, min(filled - 1, rank - 1))]
    }
}

// MARK: - Payload

/// One camera's health.
public struct CameraHealth: Codable, Equatable, Sendable {
    /// `online`, `offline` or `disabled`.
    public var status: String
    /// Frames captured per second over the last health interval.
    public var fps: Double
    /// Frames dropped since start (ring overruns, sequence gaps, buffer errors).
    public var dropped_frames: UInt64
    /// Reopens since start.
    public var reconnects: UInt64
    /// Per task slug: latency p50 and p95 in seconds.
    public var latency_s: [String: [String: Double]]
    /// The last error, if any (no secrets: device paths and errno text only).
    public var last_error: String?

    public init(status: String, fps: Double, dropped_frames: UInt64, reconnects: UInt64,
                latency_s: [String: [String: Double]], last_error: String?) {
        self.status = status
        self.fps = fps
        self.dropped_frames = dropped_frames
        self.reconnects = reconnects
        self.latency_s = latency_s
        self.last_error = last_error
    }
}

/// The health message (`<prefix>/<node>/health`).
public struct HealthPayload: Codable, Equatable, Sendable {
    public var ts: Double
    public var uptime_s: Double
    public var rss_bytes: Int
    /// Frames waiting for the inference worker.
    public var queue_depth: Int
    /// Results dropped by the outbox while the broker was away.
    public var outbox_dropped: UInt64
    public var cameras: [String: CameraHealth]
    /// The last error of the daemon itself (for example a rejected reload), if any.
    public var last_error: String?

    public init(ts: Double, uptime_s: Double, rss_bytes: Int, queue_depth: Int, outbox_dropped: UInt64,
                cameras: [String: CameraHealth], last_error: String?) {
        self.ts = ts
        self.uptime_s = uptime_s
        self.rss_bytes = rss_bytes
        self.queue_depth = queue_depth
        self.outbox_dropped = outbox_dropped
        self.cameras = cameras
        self.last_error = last_error
    }

    /// The JSON bytes (sorted keys).
    public func json() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try e.encode(self)
    }

    /// One line for systemd's STATUS=: cameras online, worst p95, RSS, last error.
    public var statusLine: String {
        let online = cameras.values.filter { $0.status == "online" }.count
        let p95 = cameras.values.flatMap { $0.latency_s.values.compactMap { $0["p95"] } }.max()
        var s = "\(online)/\(cameras.count) cameras online"
        if let p95 { s += String(format: ", p95 %.2f s", p95) }
        s += ", RSS \(rss_bytes >> 20) MiB"
        if let e = last_error { s += ", last error: \(e)" }
        return s
    }
}

// MARK: - Process

/// This process's resident set size in bytes (from /proc/self/statm), 0 if unreadable.
public func residentSetBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .ascii) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count >= 2, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

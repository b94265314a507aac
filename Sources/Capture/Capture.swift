// FrameSource: what every camera-like input looks like to the pipeline (mirrors the FrameSource /
// V4L2 / file-replay split in DESIGN.md §8), its health (Frigate-style online/offline with
// counters, edge-daemon.md §1 and §5.3) and the injectable clock that paces sources and backoff.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Frame

/// One frame, borrowed: valid only inside the `withLatestFrame` call that hands it out. The pixels
/// live in the source's single reused `RGBImage`; copy them to keep them.
public struct Frame {
    /// The source's frame number (V4L2 `sequence`; for files and patterns, frames since start).
    public let sequence: UInt64
    /// When the frame was captured, in seconds on the source's clock (monotonic).
    public let timestamp: Double
    /// The pixels, `height`×`width`×3 RGB.
    public let image: RGBImage
    /// Width in pixels.
    public var width: Int { image.width }
    /// Height in pixels.
    public var height: Int { image.height }
}

// MARK: - FrameSource

/// A source of RGB frames: a V4L2 camera, image files, or a synthetic pattern.
/// Life cycle: `open` (negotiate; throws typed errors naming the source) → `start` → repeated
/// `withLatestFrame` → `close`. One owner thread at a time.
public protocol FrameSource: AnyObject {
    /// What the source is (device path, file or folder, `pattern`), for logs and errors.
    var name: String { get }
    /// State and counters, for health reporting; transitions are reported to `health.onEvent`.
    var health: SourceHealth { get }
    /// Opens and negotiates. - Throws: a typed error naming the source and what is wrong.
    func open() throws
    /// Starts producing frames.
    func start() throws
    /// Waits up to `maxWait` seconds for the newest frame and calls `body` with it (the frame is
    /// borrowed for the call only). Returns nil when no frame came in time (the source may be
    /// reconnecting: see `health`). Recoverable faults (unplug, stall, a bad file in a folder) are
    /// handled inside and counted, not thrown.
    func withLatestFrame<R>(maxWait: Double, _ body: (Frame) throws -> R) throws -> R?
    /// Stops and releases everything. Idempotent.
    func close()
}

// MARK: - Health

/// Where a source stands.
public enum SourceState: String, Sendable, Equatable {
    /// Not opened, or closed.
    case closed
    /// Delivering frames.
    case online
    /// Lost (unplug, I/O error); resources released, a reopen is pending.
    case offline
    /// Trying to reopen.
    case reconnecting
    /// No frame for the stall timeout; about to reopen.
    case stalled
}

/// Running totals since the source was created.
public struct SourceCounters: Sendable, Equatable {
    /// Frames handed to callers.
    public var frames = 0
    /// Frames the driver (or pacing) dropped: gaps in the sequence numbers.
    public var dropped = 0
    /// Frames discarded as corrupt (`V4L2_BUF_FLAG_ERROR`, undecodable MJPEG, an unreadable file).
    public var corrupt = 0
    /// Older frames drained from the ring and requeued unseen because a newer one was ready.
    public var skipped = 0
    /// Errors of any kind (each also reported as an event).
    public var errors = 0
    /// Successful reopens after going offline or stalling.
    public var reconnects = 0
    /// Stalls detected.
    public var stalls = 0
    /// An all-zero set of counters.
    public init() {}
}

/// A state transition or error, with a human-readable reason.
public struct SourceEvent: Sendable, Equatable {
    /// The state after the event.
    public let state: SourceState
    /// Why (an error message, "unplugged: poll revents 0x1a", ...); empty for plain transitions.
    public let reason: String
    /// When, on the source's clock (seconds).
    public let time: Double
    /// True for an error that did not change the state (a corrupt frame, a bad file).
    public let isError: Bool
}

/// A source's state and counters. Sources update it; callers read it and may set `onEvent`.
public final class SourceHealth {
    /// Current state.
    public private(set) var state: SourceState = .closed
    /// Counters since creation.
    public internal(set) var counters = SourceCounters()
    /// The latest event.
    public private(set) var lastEvent: SourceEvent?
    /// Called synchronously on every event (transition or error), on the capture thread.
    public var onEvent: ((SourceEvent) -> Void)?
    private let clock: CaptureClock

    /// Health measured on `clock`.
    public init(clock: CaptureClock) { self.clock = clock }

    /// Moves to `state` (no event when it is already there and `reason` is empty).
    func transition(_ new: SourceState, _ reason: String = "") {
        if new == state && reason.isEmpty { return }
        state = new
        emit(SourceEvent(state: new, reason: reason, time: clock.now(), isError: false))
    }

    /// Counts and reports an error that leaves the state as it is.
    func error(_ reason: String) {
        counters.errors += 1
        emit(SourceEvent(state: state, reason: reason, time: clock.now(), isError: true))
    }

    private func emit(_ e: SourceEvent) {
        lastEvent = e
        onEvent?(e)
    }
}

// MARK: - Clock

/// Time and sleeping, injectable so pacing, stall and backoff logic runs instantly under test.
public protocol CaptureClock: AnyObject {
    /// Seconds on a monotonic clock.
    func now() -> Double
    /// Sleeps `seconds` (no-op when ≤ 0).
    func sleep(_ seconds: Double)
}

/// The system's monotonic clock (`CLOCK_MONOTONIC`) and `nanosleep`.
public final class MonotonicClock: CaptureClock, Sendable {
    /// The system clock.
    public init() {}

    /// Seconds since an arbitrary point (boot), monotonic.
    public func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Sleeps `seconds`, resuming after signals.
    public func sleep(_ seconds: Double) {
        guard seconds > 0 else { return }
        var req = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
        var rem = timespec()
        while nanosleep(&req, &rem) != 0 && errno == EINTR { req = rem }
    }
}

// MARK: - Pacing

/// Hands out frame numbers at a fixed rate: frame k is due at `start + k/fps`. When the caller is
/// late, it jumps to the newest due frame and counts the skipped numbers as dropped (like a camera).
struct Pacer {
    let fps: Double
    var start = 0.0
    var next: UInt64 = 0

    init(fps: Double) {
        precondition(fps > 0, "fps \(fps) must be positive")
        self.fps = fps
    }

    /// The next frame number and its due time, waiting on `clock` for it up to `maxWait` seconds.
    /// Returns nil (after sleeping `maxWait`) when it is not due in time. `dropped` gets the skips.
    mutating func take(clock: CaptureClock, maxWait: Double, dropped: inout Int) -> (UInt64, Double)? {
        let now = clock.now()
        let newest = UInt64(max(0, ((now - start) * fps).rounded(.down)))
        if newest > next {
            dropped += Int(newest - next)
            next = newest
        }
        let due = start + Double(next) / fps
        if due > now {
            if due - now > maxWait { clock.sleep(maxWait); return nil }
            clock.sleep(due - now)
        }
        defer { next += 1 }
        return (next, due)
    }
}

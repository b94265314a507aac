// V4L2Camera: mmap streaming from a V4L2 capture device (K-DOC v4l/mmap.rst flow, as summarised in
// edge-daemon.md §5.1), format negotiation (§5.2) and unplug/stall recovery with backoff (§5.3,
// Frigate's watchdog model), all through the V4L2DeviceIO seam.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CV4L2
import CV4L2Shim

// MARK: - Configuration

/// What to ask a camera for. The driver may grant something else; `V4L2Camera.negotiated` says what.
public struct CameraConfig: Sendable {
    /// Device path; prefer the stable `/dev/v4l/by-id/...` names (videoN numbers change on replug).
    public var device: String
    /// Requested frame size (the driver picks the nearest it supports).
    public var width: Int
    /// Requested frame height.
    public var height: Int
    /// Requested frame rate.
    public var fps: Double
    /// Acceptable formats in order of preference (formats the driver offers natively come before
    /// formats libv4lconvert emulates, whatever their place here).
    public var formats: [PixelFormat]
    /// Driver buffers to ask for (the driver may grant fewer or more).
    public var bufferCount: Int
    /// No frame for this many seconds while streaming means a stall: reopen.
    public var stallTimeout: Double
    /// First reopen delay after going offline, doubled per failed attempt up to `backoffMax`.
    public var backoffInitial: Double
    /// Longest reopen delay.
    public var backoffMax: Double

    /// A request for `device` at `width`×`height` and `fps`.
    public init(device: String, width: Int = 640, height: Int = 480, fps: Double = 10,
                formats: [PixelFormat] = PixelFormat.convertible, bufferCount: Int = 4,
                stallTimeout: Double = 5, backoffInitial: Double = 1, backoffMax: Double = 30) {
        self.device = device
        self.width = width
        self.height = height
        self.fps = fps
        self.formats = formats
        self.bufferCount = bufferCount
        self.stallTimeout = stallTimeout
        self.backoffInitial = backoffInitial
        self.backoffMax = backoffMax
    }
}

/// A format a device offers, for error messages and logs.
public struct FormatOffer: Sendable, Equatable, CustomStringConvertible {
    /// Its fourcc.
    public let format: PixelFormat
    /// The driver's description ("YUYV 4:2:2").
    public let name: String
    /// True when libv4lconvert emulates it (V4L2_FMT_FLAG_EMULATED).
    public let emulated: Bool
    /// Discrete sizes ("640x480", with their discrete rates as "640x480@30/15"), or one
    /// "WxH-WxH" range for stepwise drivers.
    public let sizes: [String]

    public var description: String {
        "\(format)\(emulated ? " (emulated)" : "") [\(sizes.isEmpty ? "any size" : sizes.joined(separator: " "))]"
    }
}

/// What the driver granted.
public struct NegotiatedFormat: Sendable, Equatable, CustomStringConvertible {
    /// Pixel format streamed.
    public let format: PixelFormat
    /// Frame size granted.
    public let width: Int, height: Int
    /// Bytes per row of the first plane.
    public let bytesPerLine: Int
    /// Driver's bound on one frame's bytes.
    public let sizeImage: Int
    /// Frame rate granted (nil when the driver does not support setting it).
    public let fps: Double?
    /// Driver buffers granted and mapped.
    public let buffers: Int
    /// The device's card name.
    public let card: String
    /// The node the path resolved to at this open (`/dev/video2` for a by-id link; it changes on replug).
    public let node: String

    public var description: String {
        "\(format) \(width)x\(height)" + (fps.map { " @ \(($0 * 100).rounded() / 100) fps" } ?? "") + ", \(buffers) buffers, \(card)" + (node.isEmpty ? "" : " (\(node))")
    }
}

// MARK: - Errors

/// Why a camera cannot be opened. Each case names the device; format errors list what it offers.
public enum CameraError: Error, CustomStringConvertible, Equatable {
    /// No device at the path (or it was removed); `available` lists the capture nodes present.
    case missing(device: String, available: [String])
    /// Another process holds the device.
    case busy(device: String)
    /// No permission to open the node.
    case permissionDenied(device: String)
    /// The node is not a streaming video capture device (a metadata node, an output device, ...).
    case notCaptureDevice(device: String, card: String, capabilities: UInt32)
    /// None of the requested formats is offered.
    case formatNotOffered(device: String, requested: [PixelFormat], offered: [FormatOffer])
    /// The driver granted no buffers.
    case noBuffers(device: String)
    /// A negotiation step failed otherwise.
    case failed(device: String, error: SystemError)

    public var description: String {
        switch self {
        case .missing(let d, let a):
            return "\(d): no such video device" + (a.isEmpty ? " (no V4L2 devices on this machine)" : "; present: \(a.joined(separator: ", "))")
        case .busy(let d): return "\(d): device busy (another program is streaming from it; close it and retry)"
        case .permissionDenied(let d): return "\(d): permission denied (add the user to the 'video' group, or DeviceAllow=char-video4linux rw under systemd)"
        case .notCaptureDevice(let d, let c, let caps):
            return "\(d) (\(c)): not a streaming video capture device (device_caps 0x\(String(caps, radix: 16)))"
        case .formatNotOffered(let d, let r, let o):
            return "\(d): none of \(r.map(\.description).joined(separator: ", ")) is offered; the device offers " + (o.isEmpty ? "no formats" : o.map(\.description).joined(separator: "; "))
        case .noBuffers(let d): return "\(d): the driver granted no streaming buffers"
        case .failed(let d, let e):
            return "\(d): \(e)" + (e.errno == ENOSPC ? " (USB bandwidth exhausted: use MJPEG, a smaller size, or another USB bus)" : "")
        }
    }
}

// MARK: - V4L2Camera

/// A V4L2 capture device streamed through mmap buffers. Hands out the newest frame (drains the
/// ring and requeues older buffers unseen), converts it into one reused RGBImage and requeues its
/// buffer before the caller sees it, so no driver buffer is held during inference.
///
/// Faults: POLLERR/POLLHUP/POLLNVAL, ENODEV or EIO (or any other failing device call while
/// streaming) → `offline`: streaming stopped, buffers unmapped, fd closed; reopened after
/// `backoffInitial`, doubling to `backoffMax`, renegotiating each time. No frame for
/// `stallTimeout` (flagged or undecodable frames do not count) → `stalled` → reopened at once. `V4L2_BUF_FLAG_ERROR` frames are dropped and
/// counted as corrupt; sequence gaps are counted as dropped.
public final class V4L2Camera: FrameSource {
    /// The device path.
    public var name: String { config.device }
    /// State and counters.
    public let health: SourceHealth
    /// The request.
    public let config: CameraConfig
    /// What the driver granted at the latest (re)open.
    public private(set) var negotiated: NegotiatedFormat?
    /// The formats the device offered at the latest (re)open.
    public private(set) var offers: [FormatOffer] = []

    private let io: V4L2DeviceIO
    private let clock: CaptureClock
    private let image = RGBImage(width: 0, height: 0)
    private let converter = PixelConverter()
    private var fd: Int32 = -1
    private var mapped: [(UnsafeMutableRawPointer, Int)] = []
    private var streaming = false
    private var wanted = false // start() called and close() not: keep (re)connecting
    private var lastSequence: UInt32?
    private var lastFrameAt = 0.0
    private var backoff: Double
    private var nextAttempt = 0.0

    /// A camera for `config`, over `io` (libv4l2 unless a test passes a fake), timed by `clock`.
    public init(_ config: CameraConfig, io: V4L2DeviceIO = LibV4L2IO(), clock: CaptureClock = MonotonicClock()) {
        precondition(config.fps > 0 && config.width > 0 && config.height > 0 && config.bufferCount > 0, "camera request \(config)")
        self.config = config
        self.io = io
        self.clock = clock
        health = SourceHealth(clock: clock)
        backoff = config.backoffInitial
    }

    deinit { teardown() }

    /// Opens and negotiates (capabilities, format, size, rate, buffers).
    /// - Throws: `CameraError` naming the device (missing, busy, not a capture device, format not offered).
    public func open() throws {
        teardown() // reopening an open camera starts afresh
        do { try connect() } catch { teardown(); throw error }
    }

    /// Queues the buffers and starts streaming.
    public func start() throws {
        precondition(fd >= 0, "V4L2Camera.start before open()")
        do { try startStreaming() } catch { teardown(); throw error }
        wanted = true
        health.transition(.online, "streaming \(negotiated!)")
    }

    /// The newest frame, waiting up to `maxWait` seconds (through reconnects and stalls).
    public func withLatestFrame<R>(maxWait: Double, _ body: (Frame) throws -> R) throws -> R? {
        precondition(wanted, "V4L2Camera.withLatestFrame before start()")
        let deadline = clock.now() + maxWait
        var first = true
        while true {
            let now = clock.now()
            if !first && now >= deadline { return nil }
            first = false
            if fd < 0 {
                if now < nextAttempt {
                    clock.sleep(min(nextAttempt, deadline) - now)
                    if clock.now() < nextAttempt { return nil }
                }
                reconnect()
                continue
            }
            let stallLeft = lastFrameAt + config.stallTimeout - now
            if stallLeft <= 0 {
                health.counters.stalls += 1
                lose(.stalled, "no frame for \(config.stallTimeout) s", retryAfter: 0)
                continue
            }
            // POLLIN only: POLLPRI means V4L2 events, which we do not subscribe to (an unsubscribed
            // POLLPRI would spin). POLLERR/POLLHUP are reported regardless. Waits in slices of ≤ 10 s.
            let wait = max(0, min(deadline - now, stallLeft, 10))
            let revents: Int16
            do { revents = try io.poll(fd, events: Int16(POLLIN), timeoutMs: Int32((wait * 1000).rounded(.up))) } catch {
                lose(.offline, "\(error)")
                continue
            }
            if Int32(revents) & (POLLERR | POLLHUP | POLLNVAL) != 0 {
                lose(.offline, "unplugged: poll revents 0x\(String(revents, radix: 16))")
                continue
            }
            guard Int32(revents) & POLLIN != 0 else { continue }
            switch drain() {
            case .none: continue
            case .lost(let error): lose(.offline, "\(error)")
            case .frame(let seq, let ts):
                health.counters.frames += 1
                return try body(Frame(sequence: seq, timestamp: ts, image: image))
            }
        }
    }

    /// Stops streaming, unmaps and closes. Idempotent.
    public func close() {
        wanted = false
        teardown()
        backoff = config.backoffInitial
        health.transition(.closed)
    }

    // MARK: - Streaming

    private enum Drained {
        case none
        case frame(UInt64, Double)
        case lost(SystemError)
    }

    /// Dequeues every ready buffer, keeps the newest good one, requeues the rest at once; converts
    /// the newest into `image` and requeues it too.
    private func drain() -> Drained {
        var newest: v4l2_buffer?
        do {
            // Bounded: a driver refilling requeued buffers as fast as we drain cannot keep us here.
            for _ in 0..<(2 * mapped.count) {
                var b = v4l2_buffer()
                b.type = ocv_V4L2_BUF_TYPE_VIDEO_CAPTURE
                b.memory = ocv_V4L2_MEMORY_MMAP
                do { try ioctl(ocv_VIDIOC_DQBUF, &b) } catch where error.errno == EAGAIN { break }
                if let last = lastSequence {
                    let gap = b.sequence &- last
                    if gap > 1 && gap < 1 << 31 { health.counters.dropped += Int(gap - 1) }
                }
                lastSequence = b.sequence
                if b.flags & ocv_V4L2_BUF_FLAG_ERROR != 0 {
                    health.counters.corrupt += 1
                    health.error("frame \(b.sequence) flagged V4L2_BUF_FLAG_ERROR; dropped")
                    try queue(b.index)
                    continue
                }
                if let old = newest {
                    health.counters.skipped += 1
                    try queue(old.index)
                }
                newest = b
            }
            guard let b = newest, let n = negotiated else { return .none }
            newest = nil
            let (base, length) = mapped[Int(b.index)]
            var failure: ConvertError?
            do {
                try converter.convert(n.format, base, bytesUsed: min(Int(b.bytesused), length), width: n.width, height: n.height, stride: n.bytesPerLine, into: image)
            } catch { failure = error }
            try queue(b.index)
            if let failure {
                health.counters.corrupt += 1
                health.error("frame \(b.sequence): \(failure); dropped")
                return .none
            }
            lastFrameAt = clock.now() // only a usable frame counts against a stall
            let ts = b.flags & ocv_V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC != 0
                ? Double(b.timestamp.tv_sec) + Double(b.timestamp.tv_usec) * 1e-6 : clock.now()
            return .frame(UInt64(b.sequence), ts)
        } catch {
            return .lost(error)
        }
    }

    private func queue(_ index: UInt32) throws(SystemError) {
        var b = v4l2_buffer()
        b.type = ocv_V4L2_BUF_TYPE_VIDEO_CAPTURE
        b.memory = ocv_V4L2_MEMORY_MMAP
        b.index = index
        try ioctl(ocv_VIDIOC_QBUF, &b)
    }

    // MARK: - Recovery

    /// Releases the device and schedules a reopen `retryAfter` seconds on (default: the backoff).
    private func lose(_ state: SourceState, _ reason: String, retryAfter: Double? = nil) {
        teardown()
        health.counters.errors += state == .offline ? 1 : 0
        health.transition(state, reason)
        if let r = retryAfter {
            nextAttempt = clock.now() + r
        } else {
            nextAttempt = clock.now() + backoff
            backoff = min(backoff * 2, config.backoffMax)
        }
    }

    /// One reopen attempt: renegotiate and restart streaming, or go back to offline with the next delay.
    private func reconnect() {
        health.transition(.reconnecting, "reopening \(config.device)")
        do {
            try connect()
            try startStreaming()
        } catch {
            lose(.offline, "reopen failed: \(error)")
            return
        }
        backoff = config.backoffInitial
        health.counters.reconnects += 1
        health.transition(.online, "reconnected: \(negotiated!)")
    }

    // MARK: - Negotiation

    /// open → QUERYCAP → ENUM_FMT/ENUM_FRAMESIZES → S_FMT (read back) → S_PARM → REQBUFS →
    /// QUERYBUF + mmap per buffer.
    private func connect() throws {
        let dev = config.device
        do { fd = try io.open(dev) } catch {
            switch error.errno {
            case ENOENT, ENODEV, ENXIO: throw CameraError.missing(device: dev, available: Self.availableDevices())
            case EBUSY: throw CameraError.busy(device: dev)
            case EACCES, EPERM: throw CameraError.permissionDenied(device: dev)
            default: throw CameraError.failed(device: dev, error: error)
            }
        }
        func step<T>(_ body: () throws(SystemError) -> T) throws -> T {
            do { return try body() } catch {
                switch error.errno {
                case EBUSY: throw CameraError.busy(device: dev)
                case ENODEV: throw CameraError.missing(device: dev, available: Self.availableDevices())
                default: throw CameraError.failed(device: dev, error: error)
                }
            }
        }

        var cap = v4l2_capability()
        try step { () throws(SystemError) in try ioctl(ocv_VIDIOC_QUERYCAP, &cap) }
        let caps = cap.capabilities & ocv_V4L2_CAP_DEVICE_CAPS != 0 ? cap.device_caps : cap.capabilities
        let card = withUnsafeBytes(of: cap.card) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        guard caps & ocv_V4L2_CAP_VIDEO_CAPTURE != 0, caps & ocv_V4L2_CAP_STREAMING != 0 else {
            throw CameraError.notCaptureDevice(device: dev, card: card, capabilities: caps)
        }

        offers = try step { () throws(SystemError) in try enumerateFormats() }
        // Acceptable formats the device offers: native before emulated, then in the caller's order.
        let candidates = config.formats.filter { f in offers.contains { !$0.emulated && $0.format == f } }
            + config.formats.filter { f in offers.contains { $0.emulated && $0.format == f } && !offers.contains { !$0.emulated && $0.format == f } }
        var granted: v4l2_format?
        for want in candidates {
            var f = v4l2_format()
            f.type = ocv_V4L2_BUF_TYPE_VIDEO_CAPTURE
            f.fmt.pix.width = UInt32(config.width)
            f.fmt.pix.height = UInt32(config.height)
            f.fmt.pix.pixelformat = want.rawValue
            f.fmt.pix.field = ocv_V4L2_FIELD_ANY
            try step { () throws(SystemError) in try ioctl(ocv_VIDIOC_S_FMT, &f) }
            // The driver may substitute another format (vivid turns MJPG into YUYV): take it only if acceptable.
            if config.formats.contains(PixelFormat(rawValue: f.fmt.pix.pixelformat)) { granted = f; break }
        }
        guard let f = granted else {
            throw CameraError.formatNotOffered(device: dev, requested: config.formats, offered: offers)
        }
        let format = PixelFormat(rawValue: f.fmt.pix.pixelformat)
        let w = Int(f.fmt.pix.width), h = Int(f.fmt.pix.height)
        let minStride = format == .yuyv ? w * 2 : format == .rgb24 ? w * 3 : w
        let stride = max(Int(f.fmt.pix.bytesperline), (format == .mjpeg || format == .jpeg) ? 0 : minStride)

        var fps: Double?
        var parm = v4l2_streamparm()
        parm.type = ocv_V4L2_BUF_TYPE_VIDEO_CAPTURE
        if (try? ioctl(ocv_VIDIOC_G_PARM, &parm)) != nil, parm.parm.capture.capability & ocv_V4L2_CAP_TIMEPERFRAME != 0 {
            parm.parm.capture.timeperframe = v4l2_fract(numerator: 1000, denominator: UInt32((config.fps * 1000).rounded()))
            try step { () throws(SystemError) in try ioctl(ocv_VIDIOC_S_PARM, &parm) }
            let t = parm.parm.capture.timeperframe
            if t.numerator > 0 { fps = Double(t.denominator) / Double(t.numerator) }
        }

        var req = v4l2_requestbuffers()
        req.count = UInt32(config.bufferCount)
        req.type = ocv_V4L2_BUF_TYPE_VIDEO_CAPTURE
        req.memory = ocv_V4L2_MEMORY_MMAP
        try step { () throws(SystemError) in try ioctl(ocv_VIDIOC_REQBUFS, &req) }
        guard req.count > 0 else { throw CameraError.noBuffers(device: dev) }
        for i in 0..<req.count {
            var b = v4l2_buffer()
            b.type = ocv_V4L2_BUF_TYPE_VIDEO_CAPTURE
            b.memory = ocv_V4L2_MEMORY_MMAP
            b.index = i
            try step { () throws(SystemError) in try ioctl(ocv_VIDIOC_QUERYBUF, &b) }
            let length = Int(b.length), offset = Int64(b.m.offset)
            let p = try step { () throws(SystemError) in try io.mmap(fd, length: length, offset: offset) }
            mapped.append((p, length))
        }
        negotiated = NegotiatedFormat(format: format, width: w, height: h, bytesPerLine: stride,
                                      sizeImage: Int(f.fmt.pix.sizeimage), fps: fps, buffers: Int(req.count), card: card,
                                      node: Self.resolve(dev))
        image.reshape(width: w, height: h)
    }

    /// QBUF every buffer and STREAMON.
    private func startStreaming() throws {
        let dev = config.device
        do {
            for i in 0..<mapped.count { try queue(UInt32(i)) }
            var type = Int32(bitPattern: ocv_V4L2_BUF_TYPE_VIDEO_CAPTURE)
            try ioctl(ocv_VIDIOC_STREAMON, &type)
        } catch {
            switch error.errno {
            case EBUSY: throw CameraError.busy(device: dev)
            case ENODEV: throw CameraError.missing(device: dev, available: Self.availableDevices())
            default: throw CameraError.failed(device: dev, error: error)
            }
        }
        streaming = true
        lastSequence = nil
        lastFrameAt = clock.now()
    }

    /// STREAMOFF (errors ignored: after an unplug everything fails), munmap all, REQBUFS 0, close.
    private func teardown() {
        guard fd >= 0 else { return }
        if streaming {
            var type = Int32(bitPattern: ocv_V4L2_BUF_TYPE_VIDEO_CAPTURE)
            try? ioctl(ocv_VIDIOC_STREAMOFF, &type)
            streaming = false
        }
        for (p, n) in mapped { io.munmap(p, length: n) }
        if !mapped.isEmpty {
            var req = v4l2_requestbuffers()
            req.count = 0
            req.type = ocv_V4L2_BUF_TYPE_VIDEO_CAPTURE
            req.memory = ocv_V4L2_MEMORY_MMAP
            try? ioctl(ocv_VIDIOC_REQBUFS, &req)
        }
        mapped.removeAll(keepingCapacity: true)
        io.close(fd)
        fd = -1
    }

    /// ENUM_FMT until EINVAL, with each format's frame sizes.
    private func enumerateFormats() throws(SystemError) -> [FormatOffer] {
        var out: [FormatOffer] = []
        var i: UInt32 = 0
        while true {
            var d = v4l2_fmtdesc()
            d.index = i
            d.type = ocv_V4L2_BUF_TYPE_VIDEO_CAPTURE
            do { try ioctl(ocv_VIDIOC_ENUM_FMT, &d) } catch where error.errno == EINVAL { break }
            let name = withUnsafeBytes(of: d.description) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            var sizes: [String] = []
            var j: UInt32 = 0
            while true {
                var s = v4l2_frmsizeenum()
                s.index = j
                s.pixel_format = d.pixelformat
                do { try ioctl(ocv_VIDIOC_ENUM_FRAMESIZES, &s) } catch where error.errno == EINVAL || error.errno == ENOTTY { break }
                if s.type == ocv_V4L2_FRMSIZE_TYPE_DISCRETE {
                    let rates = try frameRates(d.pixelformat, s.discrete.width, s.discrete.height)
                    sizes.append("\(s.discrete.width)x\(s.discrete.height)" + (rates.isEmpty ? "" : "@" + rates.joined(separator: "/")))
                } else {
                    sizes.append("\(s.stepwise.min_width)x\(s.stepwise.min_height)-\(s.stepwise.max_width)x\(s.stepwise.max_height)")
                    break
                }
                j += 1
            }
            out.append(FormatOffer(format: PixelFormat(rawValue: d.pixelformat), name: name,
                                   emulated: d.flags & ocv_V4L2_FMT_FLAG_EMULATED != 0, sizes: sizes))
            i += 1
        }
        return out
    }

    /// ENUM_FRAMEINTERVALS for one discrete size: rates in frames per second ("30", "7.5").
    private func frameRates(_ format: UInt32, _ w: UInt32, _ h: UInt32) throws(SystemError) -> [String] {
        var out: [String] = []
        var k: UInt32 = 0
        while true {
            var iv = v4l2_frmivalenum()
            iv.index = k
            iv.pixel_format = format
            iv.width = w
            iv.height = h
            do { try ioctl(ocv_VIDIOC_ENUM_FRAMEINTERVALS, &iv) } catch where error.errno == EINVAL || error.errno == ENOTTY { break }
            guard iv.type == ocv_V4L2_FRMIVAL_TYPE_DISCRETE else { break } // continuous or stepwise: S_PARM decides
            if iv.discrete.numerator > 0 {
                let fps = Double(iv.discrete.denominator) / Double(iv.discrete.numerator)
                out.append(fps == fps.rounded() ? String(Int(fps)) : String((fps * 100).rounded() / 100))
            }
            k += 1
        }
        return out
    }

    // MARK: - Helpers

    /// One ioctl on the open fd, named in its error.
    private func ioctl<T>(_ request: UInt, _ arg: inout T) throws(SystemError) {
        let fd = self.fd
        let io = self.io
        do {
            try withUnsafeMutableBytes(of: &arg) { (p) throws(SystemError) in try io.ioctl(fd, request, p.baseAddress!) }
        } catch {
            throw SystemError(call: Self.ioctlName(request), errno: error.errno)
        }
    }

    /// "VIDIOC_DQBUF" and so on, for messages. Plain comparisons: no allocation, as it runs at
    /// the end of every ring drain, where DQBUF's EAGAIN is normal.
    public static func ioctlName(_ request: UInt) -> String {
        if request == ocv_VIDIOC_DQBUF { return "VIDIOC_DQBUF" }
        if request == ocv_VIDIOC_QBUF { return "VIDIOC_QBUF" }
        if request == ocv_VIDIOC_QUERYCAP { return "VIDIOC_QUERYCAP" }
        if request == ocv_VIDIOC_ENUM_FMT { return "VIDIOC_ENUM_FMT" }
        if request == ocv_VIDIOC_ENUM_FRAMESIZES { return "VIDIOC_ENUM_FRAMESIZES" }
        if request == ocv_VIDIOC_ENUM_FRAMEINTERVALS { return "VIDIOC_ENUM_FRAMEINTERVALS" }
        if request == ocv_VIDIOC_G_FMT { return "VIDIOC_G_FMT" }
        if request == ocv_VIDIOC_S_FMT { return "VIDIOC_S_FMT" }
        if request == ocv_VIDIOC_G_PARM { return "VIDIOC_G_PARM" }
        if request == ocv_VIDIOC_S_PARM { return "VIDIOC_S_PARM" }
        if request == ocv_VIDIOC_REQBUFS { return "VIDIOC_REQBUFS" }
        if request == ocv_VIDIOC_QUERYBUF { return "VIDIOC_QUERYBUF" }
        if request == ocv_VIDIOC_STREAMON { return "VIDIOC_STREAMON" }
        if request == ocv_VIDIOC_STREAMOFF { return "VIDIOC_STREAMOFF" }
        return "ioctl 0x\(String(request, radix: 16))"
    }

    /// `path` with symbolic links resolved ("" when it does not resolve, as for a fake device).
    static func resolve(_ path: String) -> String {
        guard let p = realpath(path, nil) else { return "" }
        defer { free(p) }
        return String(cString: p)
    }

    /// Capture nodes on this machine: the stable `/dev/v4l/by-id` names, then `/dev/video*`.
    public static func availableDevices() -> [String] {
        func list(_ dir: String, prefix: String) -> [String] {
            guard let d = opendir(dir) else { return [] }
            defer { closedir(d) }
            var out: [String] = []
            while let e = readdir(d) {
                let n = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                if n.hasPrefix(prefix) && n != "." && n != ".." { out.append(dir + "/" + n) }
            }
            return out.sorted()
        }
        return list("/dev/v4l/by-id", prefix: "") + list("/dev", prefix: "video")
    }
}

// A scripted V4L2 device behind the V4L2DeviceIO seam: capabilities, formats and sizes offered,
// a driver-side buffer ring with sequence numbers and flags, and faults (unplug with POLLERR|POLLHUP
// and ENODEV, EIO, busy, stalls) at chosen points. It models the kernel behaviour recorded in
// edge-daemon.md §5.1-5.3 (vivid in a QEMU guest), not libv4l2's.
import CV4L2
import CV4L2Shim
import Glibc
@testable import Capture

final class FakeV4L2Device: V4L2DeviceIO {
    struct Format {
        var format: PixelFormat
        var name: String
        var sizes: [(Int, Int)]
        var emulated = false
        var rates: [Int] = [] // discrete frame rates offered at every size (ENUM_FRAMEINTERVALS)
    }

    /// What a poll call finds.
    enum Step {
        /// `count` frames arrive (1/fps apart), after the driver dropped `gapBefore` frames; `flags` on each.
        case frames(Int, gapBefore: UInt32 = 0, flags: UInt32 = 0)
        /// Nothing arrives: poll sleeps its whole timeout and returns 0.
        case silence
        /// The device is removed: poll gives POLLERR|POLLHUP|POLLPRI, every call ENODEV, and the
        /// next `reopenFailures` opens fail with ENODEV.
        case unplug(reopenFailures: Int)
        /// Poll says POLLIN, then DQBUF fails with `errno` (EIO: a fatal driver error).
        case dqbufError(Int32)
    }

    // Script.
    var card = "Fake Camera"
    var caps: UInt32 = ocv_V4L2_CAP_VIDEO_CAPTURE | ocv_V4L2_CAP_STREAMING
    var formats: [Format]
    var grantBuffers: Int? // REQBUFS count granted (nil: as asked)
    var openErrno: Int32?
    var substitute: [PixelFormat: PixelFormat] = [:] // S_FMT turns key into value
    var steps: [Step] = [] { didSet { nextStep = 0 } }
    private var nextStep = 0
    var fps = 30.0
    /// Fills a buffer for frame `sequence`.
    var fill: (_ sequence: UInt32, _ format: PixelFormat, _ w: Int, _ h: Int, _ stride: Int, _ buffer: UnsafeMutableRawBufferPointer) -> Int

    // Observed.
    var log: [String] = []
    private(set) var opens = 0
    private(set) var openFds = 0
    private(set) var mappedCount = 0
    private(set) var sFmtRequests: [(PixelFormat, Int, Int)] = []

    // Driver state.
    private let clock: ManualClock
    private var unplugged = false
    private var reopenFailures = 0
    private var pendingDQError: Int32?
    private struct Current { var format: PixelFormat, w: Int, h: Int, stride: Int, size: Int }
    private var current: Current? // what S_FMT granted
    private var buffers: [UnsafeMutableRawBufferPointer] = []
    private var queued: [UInt32] = []   // in the driver's incoming queue
    private struct Done { var index: UInt32, sequence: UInt32, flags: UInt32, used: Int }
    private var done: [Done] = [] // filled, waiting for DQBUF
    private var streaming = false
    private var sequence: UInt32 = 0
    private let nextFd: Int32 = 40

    init(clock: ManualClock, formats: [Format]) {
        self.clock = clock
        self.formats = formats
        log.reserveCapacity(1 << 16) // the no-allocation test counts the fake too
        done.reserveCapacity(64)
        queued.reserveCapacity(64)
        fill = { seq, _, _, _, _, buf in
            for i in 0..<buf.count { buf[i] = UInt8(truncatingIfNeeded: Int(seq) &+ i) }
            return buf.count
        }
    }

    deinit { for b in buffers { b.deallocate() } }

    func open(_ path: String) throws(SystemError) -> Int32 {
        log.append("open")
        opens += 1
        if let e = openErrno { throw SystemError(call: "open \(path)", errno: e) }
        if unplugged {
            if reopenFailures > 0 {
                reopenFailures -= 1
                throw SystemError(call: "open \(path)", errno: ENODEV)
            }
            unplugged = false
        }
        openFds += 1
        return nextFd
    }

    func close(_ fd: Int32) {
        log.append("close")
        openFds -= 1
        streaming = false
        queued.removeAll(); done.removeAll()
    }

    func mmap(_ fd: Int32, length: Int, offset: Int64) throws(SystemError) -> UnsafeMutableRawPointer {
        guard !unplugged else { throw SystemError(call: "mmap", errno: ENODEV) }
        let i = Int(offset / 4096)
        precondition(i < buffers.count && buffers[i].count == length, "mmap of an unknown buffer")
        mappedCount += 1
        return buffers[i].baseAddress!
    }

    func munmap(_ start: UnsafeMutableRawPointer, length: Int) { mappedCount -= 1 }

    func poll(_ fd: Int32, events: Int16, timeoutMs: Int32) throws(SystemError) -> Int16 {
        log.append("poll")
        if unplugged { return Int16(POLLERR | POLLHUP | POLLPRI) }
        guard streaming, nextStep < steps.count else { clock.advance(Double(timeoutMs) / 1000); return 0 }
        nextStep += 1
        switch steps[nextStep - 1] {
        case .silence:
            clock.advance(Double(timeoutMs) / 1000)
            return 0
        case .unplug(let n):
            unplugged = true
            reopenFailures = n
            return Int16(POLLERR | POLLHUP | POLLPRI)
        case .dqbufError(let e):
            pendingDQError = e
            return Int16(POLLIN)
        case .frames(let n, let gap, let flags):
            sequence &+= gap
            // (frames are produced below)
            for _ in 0..<n {
                clock.advance(1 / fps)
                produce(flags: flags)
            }
            return done.isEmpty ? 0 : Int16(POLLIN)
        }
    }

    /// One frame from the sensor: into the oldest queued buffer, or lost when none is queued.
    private func produce(flags: UInt32) {
        defer { sequence &+= 1 }
        guard !queued.isEmpty, let c = current else { return }
        let i = popFirst(&queued)
        let used = fill(sequence, c.format, c.w, c.h, c.stride, buffers[Int(i)])
        done.append(Done(index: i, sequence: sequence, flags: flags, used: used))
    }

    func ioctl(_ fd: Int32, _ request: UInt, _ arg: UnsafeMutableRawPointer) throws(SystemError) {
        let name = V4L2Camera.ioctlName(request)
        log.append(name)
        if unplugged { throw SystemError(call: name, errno: ENODEV) }
        func fail(_ e: Int32) -> SystemError { SystemError(call: name, errno: e) }
        switch request {
        case ocv_VIDIOC_QUERYCAP:
            let c = arg.assumingMemoryBound(to: v4l2_capability.self)
            c.pointee = v4l2_capability()
            withUnsafeMutableBytes(of: &c.pointee.card) { b in for (k, ch) in card.utf8.prefix(31).enumerated() { b[k] = ch } }
            c.pointee.capabilities = caps | ocv_V4L2_CAP_DEVICE_CAPS
            c.pointee.device_caps = caps
        case ocv_VIDIOC_ENUM_FMT:
            let d = arg.assumingMemoryBound(to: v4l2_fmtdesc.self)
            guard Int(d.pointee.index) < formats.count else { throw fail(EINVAL) }
            let f = formats[Int(d.pointee.index)]
            d.pointee.pixelformat = f.format.rawValue
            d.pointee.flags = f.emulated ? ocv_V4L2_FMT_FLAG_EMULATED : 0
            withUnsafeMutableBytes(of: &d.pointee.description) { b in for (k, ch) in f.name.utf8.prefix(31).enumerated() { b[k] = ch } }
        case ocv_VIDIOC_ENUM_FRAMESIZES:
            let s = arg.assumingMemoryBound(to: v4l2_frmsizeenum.self)
            guard let f = formats.first(where: { $0.format.rawValue == s.pointee.pixel_format }),
                  Int(s.pointee.index) < f.sizes.count else { throw fail(EINVAL) }
            s.pointee.type = ocv_V4L2_FRMSIZE_TYPE_DISCRETE
            s.pointee.discrete.width = UInt32(f.sizes[Int(s.pointee.index)].0)
            s.pointee.discrete.height = UInt32(f.sizes[Int(s.pointee.index)].1)
        case ocv_VIDIOC_ENUM_FRAMEINTERVALS:
            let iv = arg.assumingMemoryBound(to: v4l2_frmivalenum.self)
            guard let f = formats.first(where: { $0.format.rawValue == iv.pointee.pixel_format }),
                  f.sizes.contains(where: { $0.0 == Int(iv.pointee.width) && $0.1 == Int(iv.pointee.height) }),
                  Int(iv.pointee.index) < f.rates.count else { throw fail(EINVAL) }
            iv.pointee.type = ocv_V4L2_FRMIVAL_TYPE_DISCRETE
            iv.pointee.discrete = v4l2_fract(numerator: 1, denominator: UInt32(f.rates[Int(iv.pointee.index)]))
        case ocv_VIDIOC_S_FMT:
            guard !streaming else { throw fail(EBUSY) }
            let p = arg.assumingMemoryBound(to: v4l2_format.self)
            var want = PixelFormat(rawValue: p.pointee.fmt.pix.pixelformat)
            sFmtRequests.append((want, Int(p.pointee.fmt.pix.width), Int(p.pointee.fmt.pix.height)))
            if let s = substitute[want] { want = s }
            let f = formats.first { $0.format == want } ?? formats[0]
            // Nearest offered size (what drivers do with an unsupported request).
            let rw = Int(p.pointee.fmt.pix.width), rh = Int(p.pointee.fmt.pix.height)
            let (w, h) = f.sizes.min { abs($0.0 - rw) + abs($0.1 - rh) < abs($1.0 - rw) + abs($1.1 - rh) }!
            let stride = f.format == .yuyv ? w * 2 : f.format == .nv12 ? w : f.format == .rgb24 ? w * 3 : 0
            let size = f.format == .nv12 ? w * h * 3 / 2 : f.format == .mjpeg ? w * h * 3 : stride * h
            current = Current(format: f.format, w: w, h: h, stride: stride, size: size)
            p.pointee.fmt.pix.pixelformat = f.format.rawValue
            p.pointee.fmt.pix.width = UInt32(w)
            p.pointee.fmt.pix.height = UInt32(h)
            p.pointee.fmt.pix.bytesperline = UInt32(stride)
            p.pointee.fmt.pix.sizeimage = UInt32(size)
        case ocv_VIDIOC_G_PARM:
            let p = arg.assumingMemoryBound(to: v4l2_streamparm.self)
            p.pointee.parm.capture.capability = ocv_V4L2_CAP_TIMEPERFRAME
            p.pointee.parm.capture.timeperframe = v4l2_fract(numerator: 1, denominator: UInt32(fps))
        case ocv_VIDIOC_S_PARM:
            // Grants the nearest whole rate up to 30.
            let p = arg.assumingMemoryBound(to: v4l2_streamparm.self)
            let t = p.pointee.parm.capture.timeperframe
            fps = min(30, max(1, (Double(t.denominator) / Double(t.numerator)).rounded()))
            p.pointee.parm.capture.timeperframe = v4l2_fract(numerator: 1, denominator: UInt32(fps))
        case ocv_VIDIOC_REQBUFS:
            let r = arg.assumingMemoryBound(to: v4l2_requestbuffers.self)
            for b in buffers { b.deallocate() }
            buffers = []
            if r.pointee.count == 0 { return }
            guard let size = current?.size else { throw fail(EINVAL) }
            r.pointee.count = UInt32(grantBuffers ?? Int(r.pointee.count))
            buffers = (0..<Int(r.pointee.count)).map { _ in .allocate(byteCount: size, alignment: 64) }
        case ocv_VIDIOC_QUERYBUF:
            let b = arg.assumingMemoryBound(to: v4l2_buffer.self)
            guard Int(b.pointee.index) < buffers.count else { throw fail(EINVAL) }
            b.pointee.length = UInt32(buffers[Int(b.pointee.index)].count)
            b.pointee.m.offset = b.pointee.index * 4096
        case ocv_VIDIOC_QBUF:
            let b = arg.assumingMemoryBound(to: v4l2_buffer.self)
            let i = b.pointee.index
            // Loops, not contains(where:): the no-allocation test counts the fake too.
            var known = false
            for k in 0..<queued.count where queued[k] == i { known = true }
            for k in 0..<done.count where done[k].index == i { known = true }
            guard Int(i) < buffers.count, !known else { throw fail(EINVAL) }
            queued.append(i)
        case ocv_VIDIOC_DQBUF:
            if let e = pendingDQError { pendingDQError = nil; throw fail(e) }
            guard !done.isEmpty else { throw fail(EAGAIN) }
            let d = popFirst(&done)
            let b = arg.assumingMemoryBound(to: v4l2_buffer.self)
            b.pointee.index = d.index
            b.pointee.sequence = d.sequence
            b.pointee.flags = d.flags | ocv_V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC
            b.pointee.bytesused = UInt32(d.used)
            b.pointee.length = UInt32(buffers[Int(d.index)].count)
            let t = clock.now()
            b.pointee.timestamp = timeval(tv_sec: Int(t), tv_usec: Int((t - Double(Int(t))) * 1e6))
        case ocv_VIDIOC_STREAMON:
            guard !buffers.isEmpty else { throw fail(EINVAL) }
            streaming = true
        case ocv_VIDIOC_STREAMOFF:
            streaming = false
            queued.removeAll(); done.removeAll()
        default:
            throw fail(ENOTTY)
        }
    }

    /// `a.removeFirst()` by hand: in debug builds removeFirst allocates, and the no-allocation test counts the fake too.
    private func popFirst<T>(_ a: inout [T]) -> T {
        let first = a[0]
        for k in 1..<a.count { a[k - 1] = a[k] }
        a.removeLast()
        return first
    }

    /// Buffers the camera currently holds (dequeued, not yet requeued): must be 0 between calls.
    var heldByCaller: Int { streaming ? buffers.count - queued.count - done.count : 0 }
}

// The narrow seam under V4L2Camera: the six calls it makes on a device (open, close, ioctl, mmap,
// munmap, poll), the libv4l2 implementation over CV4L2Shim, and the errno helper (after
// swift-system's `valueOrErrno` and NIO's System.swift: -1 and errno become a typed error, EINTR retried).
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CV4L2Shim

// MARK: - SystemError

/// A failed system call: which call (`open /dev/video0`, `VIDIOC_DQBUF`, ...) and its errno.
public struct SystemError: Error, Equatable, CustomStringConvertible {
    /// The call that failed.
    public let call: String
    /// The errno it left.
    public let errno: Int32

    /// A failure of `call` with `errno`.
    public init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call): \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// The errno helper: runs `body` until it does not fail with EINTR; -1 becomes `SystemError`.
@inline(__always)
func retryingEINTR(_ call: @autoclosure () -> String, _ body: () -> Int32) throws(SystemError) -> Int32 {
    while true {
        let rc = body()
        if rc != -1 { return rc }
        let e = errno
        if e != EINTR { throw SystemError(call: call(), errno: e) }
    }
}

// MARK: - The seam

/// The device calls V4L2Camera makes, and nothing else. `LibV4L2IO` is the real one; tests script
/// a fake. Each failing call throws `SystemError` with the errno the kernel (or fake) gave.
public protocol V4L2DeviceIO: AnyObject {
    /// Opens `path` read-write, non-blocking, close-on-exec; returns the fd.
    func open(_ path: String) throws(SystemError) -> Int32
    /// Closes `fd` (errors ignored: nothing useful can follow).
    func close(_ fd: Int32)
    /// `ioctl(fd, request, arg)`; `arg` points at the request's V4L2 struct.
    func ioctl(_ fd: Int32, _ request: UInt, _ arg: UnsafeMutableRawPointer) throws(SystemError)
    /// Maps `length` bytes of the device's buffer memory at `offset`, shared, read-write.
    func mmap(_ fd: Int32, length: Int, offset: Int64) throws(SystemError) -> UnsafeMutableRawPointer
    /// Unmaps what `mmap` returned.
    func munmap(_ start: UnsafeMutableRawPointer, length: Int)
    /// Polls `fd` for `events`, waiting up to `timeoutMs`; returns `revents` (0 on timeout).
    func poll(_ fd: Int32, events: Int16, timeoutMs: Int32) throws(SystemError) -> Int16
}

// MARK: - libv4l2

/// The real device calls, through libv4l2 (`v4l2_open` wraps the fd so libv4lconvert can emulate
/// RGB24 and friends for cameras that only speak exotic formats).
public final class LibV4L2IO: V4L2DeviceIO {
    /// The libv4l2 implementation.
    public init() {}

    public func open(_ path: String) throws(SystemError) -> Int32 {
        try retryingEINTR("open \(path)") { ocv_open(path) }
    }

    public func close(_ fd: Int32) { _ = ocv_close(fd) }

    public func ioctl(_ fd: Int32, _ request: UInt, _ arg: UnsafeMutableRawPointer) throws(SystemError) {
        _ = try retryingEINTR(V4L2Camera.ioctlName(request)) { ocv_ioctl(fd, request, arg) }
    }

    public func mmap(_ fd: Int32, length: Int, offset: Int64) throws(SystemError) -> UnsafeMutableRawPointer {
        guard let p = ocv_mmap(fd, length, offset) else { throw SystemError(call: "mmap", errno: errno) }
        return p
    }

    public func munmap(_ start: UnsafeMutableRawPointer, length: Int) { _ = ocv_munmap(start, length) }

    public func poll(_ fd: Int32, events: Int16, timeoutMs: Int32) throws(SystemError) -> Int16 {
        var p = pollfd(fd: fd, events: events, revents: 0)
        _ = try retryingEINTR("poll") { Glibc.poll(&p, 1, timeoutMs) }
        return p.revents
    }
}

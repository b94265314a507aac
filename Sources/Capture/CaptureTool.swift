// What `ocellus capture` does, as a library function so tests run it: pick a source from the
// SOURCE argument (device, image file or folder, `pattern`), take N frames, write them as JPEGs.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - CaptureTool

/// Frames from any source to JPEG files: the by-hand check of a camera.
public enum CaptureTool {
    /// The command's arguments.
    public struct Options: Sendable {
        /// A device path (`/dev/video0`, `/dev/v4l/by-id/...`), an image file or folder, or `pattern`.
        public var source: String
        /// Frames to write.
        public var frames: Int
        /// Output folder (created if missing); files are `frame-000000.jpg` and so on.
        public var outDir: String
        /// Requested frame size (cameras and the pattern; image files keep their own size).
        public var width: Int?, height: Int?
        /// Frame rate (default 10).
        public var fps: Double?
        /// Longest wait for any one frame before giving up, seconds.
        public var timeout: Double
        /// JPEG quality.
        public var quality: Int

        /// Options for `frames` frames from `source` into `outDir`.
        public init(source: String, frames: Int, outDir: String, width: Int? = nil, height: Int? = nil,
                    fps: Double? = nil, timeout: Double = 10, quality: Int = 90) {
            self.source = source
            self.frames = frames
            self.outDir = outDir
            self.width = width
            self.height = height
            self.fps = fps
            self.timeout = timeout
            self.quality = quality
        }
    }

    /// Why capturing stopped.
    public enum Failure: Error, CustomStringConvertible, Equatable {
        /// No frame came within the timeout; `state` and `reason` say what the source was doing.
        case noFrame(source: String, seconds: Double, state: SourceState, reason: String)
        /// The output folder could not be created.
        case outDir(path: String, reason: String)

        public var description: String {
            switch self {
            case .noFrame(let s, let t, let st, let r):
                return "\(s): no frame within \(t) s (source \(st.rawValue)\(r.isEmpty ? "" : ": " + r))"
            case .outDir(let p, let r): return "\(p): cannot create output folder: \(r)"
            }
        }
    }

    /// The source SOURCE names: `pattern`, a character device (or anything under /dev) as a
    /// V4L2 camera, otherwise an image file or folder.
    public static func source(for o: Options, clock: CaptureClock, io: V4L2DeviceIO) -> FrameSource {
        let fps = o.fps ?? 10
        if o.source == "pattern" {
            return SyntheticSource(width: o.width ?? 640, height: o.height ?? 480, fps: fps, clock: clock)
        }
        var st = stat()
        let isChar = stat(o.source, &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR
        if isChar || o.source.hasPrefix("/dev/") {
            return V4L2Camera(CameraConfig(device: o.source, width: o.width ?? 640, height: o.height ?? 480, fps: fps), io: io, clock: clock)
        }
        return ImageFileSource(path: o.source, fps: fps, clock: clock)
    }

    /// Opens the source, writes `frames` JPEGs into `outDir`, closes it. `log` gets one line for
    /// the negotiated format (cameras), one per file, and the counters at the end.
    /// Returns the paths written.
    /// - Throws: the source's typed error (`CameraError.missing` for an absent device, ...),
    ///   `Failure`, or `ImageFileError` when a file cannot be written.
    @discardableResult
    public static func run(_ o: Options, clock: CaptureClock = MonotonicClock(), io: V4L2DeviceIO = LibV4L2IO(),
                           log: (String) -> Void = { _ in }) throws -> [String] {
        precondition(o.frames >= 0, "frame count \(o.frames)")
        let src = source(for: o, clock: clock, io: io)
        try src.open()
        defer { src.close() }
        try makeDirectories(o.outDir)
        try src.start()
        if let cam = src as? V4L2Camera, let n = cam.negotiated { log("\(cam.name): \(n)") }
        if src is ImageFileSource && o.width != nil { log("\(src.name): --size does not apply to image files; frames keep their own size") }
        var written: [String] = []
        for k in 0..<o.frames {
            let path = o.outDir + "/" + "frame-" + String(repeating: "0", count: max(0, 6 - String(k).count)) + String(k) + ".jpg"
            let got = try src.withLatestFrame(maxWait: o.timeout) { f -> String in
                try ImageFile.writeJPEG(f.image, path: path, quality: o.quality)
                return "\(path): frame \(f.sequence), \(f.width)x\(f.height)"
            }
            guard let line = got else {
                throw Failure.noFrame(source: src.name, seconds: o.timeout, state: src.health.state, reason: src.health.lastEvent?.reason ?? "")
            }
            log(line)
            written.append(path)
        }
        let c = src.health.counters
        log("\(src.name): \(c.frames) frames, \(c.dropped) dropped, \(c.corrupt) corrupt, \(c.skipped) skipped, \(c.errors) errors, \(c.reconnects) reconnects, \(c.stalls) stalls")
        return written
    }

    /// `mkdir -p`.
    static func makeDirectories(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw Failure.outDir(path: path, reason: String(cString: strerror(errno)))
            }
        }
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { throw Failure.outDir(path: path, reason: "not a folder") }
    }
}

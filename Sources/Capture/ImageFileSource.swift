// ImageFileSource: replay of one picture or a folder of pictures as a camera would deliver them
// (the "debug replay / file source" row of edge-daemon.md's feature table), decoded by ImageFile.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Errors

/// Why a file source cannot run. Each case names the path.
public enum ImageSourceError: Error, CustomStringConvertible, Equatable {
    /// Nothing exists at the path.
    case missing(path: String)
    /// The folder holds no file with an image extension (.jpg .jpeg .png .ppm .pgm).
    case emptyFolder(path: String)
    /// Every file in the folder failed to decode; `failures` lists each file's error.
    case noReadableImages(path: String, failures: [String])

    public var description: String {
        switch self {
        case .missing(let p): return "\(p): no such file or folder"
        case .emptyFolder(let p): return "\(p): folder holds no .jpg, .jpeg, .png, .ppm or .pgm files"
        case .noReadableImages(let p, let f): return "\(p): no file in the folder decodes (\(f.joined(separator: "; ")))"
        }
    }
}

// MARK: - ImageFileSource

/// One image file (JPEG, PNG, PPM/PGM) repeated, or a folder's image files in name order played
/// in a loop, at `fps`. In a folder a file that fails to decode is reported (an error event naming
/// the file, `corrupt` counted) and skipped; only a folder where every file fails is fatal.
/// A single file is decoded once at `open`; folder files are decoded as they come up (this
/// allocates per frame: a replay tool, not the camera hot path).
public final class ImageFileSource: FrameSource {
    /// The file or folder.
    public let name: String
    /// State and counters.
    public let health: SourceHealth
    /// Frames per second.
    public let fps: Double
    /// The files played, in order (one entry for a single file). Filled by `open`.
    public private(set) var files: [String] = []
    private let clock: CaptureClock
    private let image = RGBImage(width: 0, height: 0)
    private var pacer: Pacer
    private var isFolder = false
    private var started = false

    /// Replays `path` (a file or a folder) at `fps`.
    public init(path: String, fps: Double = 1, clock: CaptureClock = MonotonicClock()) {
        name = path
        self.fps = fps
        self.clock = clock
        health = SourceHealth(clock: clock)
        pacer = Pacer(fps: fps)
    }

    /// Lists the folder (or decodes the single file).
    /// - Throws: `ImageSourceError.missing`/`.emptyFolder`, or the file's `ImageFileError`.
    public func open() throws {
        var st = stat()
        guard stat(name, &st) == 0 else { throw ImageSourceError.missing(path: name) }
        isFolder = (st.st_mode & S_IFMT) == S_IFDIR
        if isFolder {
            files = try Self.imageFiles(in: name)
            guard !files.isEmpty else { throw ImageSourceError.emptyFolder(path: name) }
        } else {
            files = [name]
            copy(try ImageFile.read(path: name))
        }
    }

    /// Starts the clock: the first frame is due now.
    public func start() throws {
        precondition(!files.isEmpty, "ImageFileSource.start before open()")
        pacer.start = clock.now()
        pacer.next = 0
        started = true
        health.transition(.online)
    }

    /// The next due picture (waiting up to `maxWait`), skipping files that fail to decode.
    /// - Throws: `ImageSourceError.noReadableImages` when every file of the folder fails in a row.
    public func withLatestFrame<R>(maxWait: Double, _ body: (Frame) throws -> R) throws -> R? {
        precondition(started, "ImageFileSource.withLatestFrame before start()")
        guard let (seq, due) = pacer.take(clock: clock, maxWait: maxWait, dropped: &health.counters.dropped) else { return nil }
        if isFolder {
            var failures: [String] = []
            var k = Int(seq % UInt64(files.count))
            while true {
                do {
                    copy(try ImageFile.read(path: files[k]))
                    break
                } catch {
                    health.counters.corrupt += 1
                    health.error("skipping \(error)")
                    failures.append("\(error)")
                    guard failures.count < files.count else {
                        throw ImageSourceError.noReadableImages(path: name, failures: failures)
                    }
                    k = (k + 1) % files.count
                }
            }
        }
        health.counters.frames += 1
        return try body(Frame(sequence: seq, timestamp: due, image: image))
    }

    /// Stops.
    public func close() {
        started = false
        health.transition(.closed)
    }

    // MARK: - Helpers

    private func copy(_ src: RGBImage) {
        image.reshape(width: src.width, height: src.height)
        src.withRGBBytes { s in image.withMutableRGBBytes { d in d.baseAddress!.update(from: s.baseAddress!, count: s.count) } }
    }

    /// Image files (by extension, case-insensitive) directly inside `folder`, sorted by name.
    static func imageFiles(in folder: String) throws -> [String] {
        guard let dir = opendir(folder) else { throw ImageSourceError.missing(path: folder) }
        defer { closedir(dir) }
        let exts: Set<String> = ["jpg", "jpeg", "png", "ppm", "pgm"]
        var out: [String] = []
        while let e = readdir(dir) {
            let entry = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard !entry.hasPrefix("."), let dot = entry.lastIndex(of: ".") else { continue }
            guard exts.contains(entry[entry.index(after: dot)...].lowercased()) else { continue }
            let path = folder.hasSuffix("/") ? folder + entry : folder + "/" + entry
            var st = stat()
            guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            out.append(path)
        }
        return out.sorted()
    }
}

// `ocellus capture`: N frames from a camera, image files or the test pattern, written as JPEGs
// (the by-hand check of a real camera). The work is `CaptureTool.run` in the Capture module.
import ArgumentParser
import Capture
import Foundation

// MARK: - CaptureCommand

/// Parses the arguments and runs `CaptureTool`; any failure is printed and exits with status 1.
struct CaptureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture",
        abstract: "Write N frames from a camera, image file or folder, or the test pattern as JPEG files.",
        discussion: "SOURCE is a V4L2 device (/dev/video0 or a stable /dev/v4l/by-id/... name), an image file or folder of images (JPEG, PNG, PPM) played in a loop, or 'pattern'."
    )

    @Option(name: .long, help: "Device path, image file or folder, or 'pattern'.")
    var source: String

    @Option(name: .long, help: "Frames to write.")
    var frames: Int = 10

    @Option(name: .long, help: "Output folder (created if missing).")
    var out: String

    @Option(name: .long, help: "Frame size WxH for cameras and the pattern (the camera may grant another).")
    var size: String?

    @Option(name: .long, help: "Frames per second.")
    var fps: Double?

    @Option(name: .long, help: "Seconds to wait for any one frame before giving up.")
    var timeout: Double = 10

    func validate() throws {
        guard frames >= 0 else { throw ValidationError("--frames must be ≥ 0") }
        if let fps, !(fps > 0) { throw ValidationError("--fps must be positive") }
        if let size, parseSize(size) == nil { throw ValidationError("--size '\(size)' is not WxH (for example 640x480)") }
    }

    func run() throws {
        let wh = size.flatMap(parseSize)
        let options = CaptureTool.Options(source: source, frames: frames, outDir: out, width: wh?.0, height: wh?.1, fps: fps, timeout: timeout)
        do {
            try CaptureTool.run(options) { print($0) }
        } catch {
            FileHandle.standardError.write(Data("ocellus capture: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    private func parseSize(_ s: String) -> (Int, Int)? {
        let parts = s.lowercased().split(separator: "x")
        guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]), w > 0, h > 0 else { return nil }
        return (w, h)
    }
}

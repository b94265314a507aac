// `ocellus capture`'s library function end to end: the pattern and a folder to JPEG files, a
// camera through the fake device, and the errors for a missing device and a non-camera node
// (those two through the real libv4l2 path).
import Foundation
import XCTest
@testable import Capture

final class CaptureToolTests: XCTestCase {
    private func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "ocellus-capturetool-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    func testPatternWritesNumberedJPEGs() throws {
        let out = try tempDir() + "/a/b"
        var lines: [String] = []
        let paths = try CaptureTool.run(.init(source: "pattern", frames: 3, outDir: out, width: 320, height: 240, fps: 5),
                                        clock: ManualClock()) { lines.append($0) }
        XCTAssertEqual(paths.map { ($0 as NSString).lastPathComponent }, ["frame-000000.jpg", "frame-000001.jpg", "frame-000002.jpg"])
        for (k, p) in paths.enumerated() {
            let img = try ImageFile.read(path: p)
            XCTAssertEqual([img.width, img.height], [320, 240])
            XCTAssertEqual(SyntheticSource.decodeCounter(img), UInt32(k))
        }
        XCTAssertTrue(lines.last?.contains("3 frames, 0 dropped") ?? false, "\(lines)")
    }

    func testFolderSource() throws {
        let dir = try tempDir(), inDir = dir + "/in"
        try FileManager.default.createDirectory(atPath: inDir, withIntermediateDirectories: true)
        try ImageFile.writeJPEG(RGBImage(width: 10, height: 6, bytes: [UInt8](repeating: 128, count: 180)), path: inDir + "/x.jpg")
        let paths = try CaptureTool.run(.init(source: inDir, frames: 2, outDir: dir + "/out", fps: 100), clock: ManualClock())
        XCTAssertEqual(paths.count, 2)
        XCTAssertEqual(try ImageFile.read(path: paths[1]).width, 10)
    }

    func testCameraThroughFakeDevice() throws {
        let clock = ManualClock()
        let fake = FakeV4L2Device(clock: clock, formats: [.init(format: .yuyv, name: "YUYV", sizes: [(64, 32)])])
        fake.steps = [.frames(1), .frames(1)]
        var lines: [String] = []
        let paths = try CaptureTool.run(.init(source: "/dev/v4l/by-id/fake", frames: 2, outDir: try tempDir(), width: 64, height: 32),
                                        clock: clock, io: fake) { lines.append($0) }
        XCTAssertEqual(paths.count, 2)
        XCTAssertTrue(lines[0].hasPrefix("/dev/v4l/by-id/fake: YUYV 64x32 @ 10.0 fps, 4 buffers"), lines[0])
        XCTAssertEqual(fake.openFds, 0)
        // A camera that stops delivering: a clear error after the timeout, not a hang.
        let silent = FakeV4L2Device(clock: clock, formats: [.init(format: .yuyv, name: "YUYV", sizes: [(64, 32)])])
        XCTAssertThrowsError(try CaptureTool.run(.init(source: "/dev/video9", frames: 1, outDir: try tempDir(), timeout: 3), clock: clock, io: silent)) {
            guard case CaptureTool.Failure.noFrame(let s, _, _, _)? = $0 as? CaptureTool.Failure else { return XCTFail("\($0)") }
            XCTAssertEqual(s, "/dev/video9")
        }
    }

    func testMissingDeviceIsClearError() throws {
        let dev = "/dev/v4l/by-id/usb-Nobody_Cam-video-index0"
        XCTAssertThrowsError(try CaptureTool.run(.init(source: dev, frames: 1, outDir: try tempDir()))) { e in
            guard case CameraError.missing(let d, _)? = e as? CameraError else { return XCTFail("\(e)") }
            XCTAssertEqual(d, dev)
            XCTAssertTrue("\(e)".hasPrefix(dev + ": no such video device"), "\(e)")
        }
    }

    func testNonCameraNodeThroughLibV4L2() throws {
        // /dev/null through the real libv4l2 seam: v4l2_open's QUERYCAP fails with ENOTTY.
        XCTAssertThrowsError(try V4L2Camera(CameraConfig(device: "/dev/null")).open()) { e in
            XCTAssertTrue("\(e)".hasPrefix("/dev/null:"), "\(e)")
            XCTAssertNotNil(e as? CameraError)
        }
    }
}

// The steady-state frame path allocates nothing (DESIGN.md rule 5): V4L2Camera's poll → drain →
// convert → requeue for YUYV and NV12 through the fake device, and the synthetic pattern. MJPEG
// frames make libjpeg-turbo's own per-image memory pools (jpeg_start_decompress mallocs them and
// jpeg_finish frees them; the tj* API gives no way to keep them): that count must be constant per
// frame, and nothing of ours may add to it.
import CMallocCounter
import XCTest
@testable import Capture

final class CaptureNoAllocationTests: XCTestCase {
    /// Allocations in each of two runs of 15 frames after a warm-up.
    private func allocations(_ format: PixelFormat, size: (Int, Int), fill: ((UInt32, PixelFormat, Int, Int, Int, UnsafeMutableRawBufferPointer) -> Int)? = nil) throws -> (Int64, Int64) {
        let clock = ManualClock()
        let fake = FakeV4L2Device(clock: clock, formats: [.init(format: format, name: "\(format)", sizes: [size])])
        if let fill { fake.fill = fill }
        fake.steps = Array(repeating: .frames(2), count: 40)
        let cam = V4L2Camera(CameraConfig(device: "/dev/video0", width: size.0, height: size.1, formats: [format]), io: fake, clock: clock)
        try cam.open(); try cam.start()
        var sum: UInt64 = 0
        for _ in 0..<5 { sum &+= try cam.withLatestFrame(maxWait: 1) { $0.sequence } ?? 0 }
        omc_start()
        for _ in 0..<15 { sum &+= try cam.withLatestFrame(maxWait: 1) { $0.sequence } ?? 0 }
        let a = omc_stop()
        omc_start()
        for _ in 0..<15 { sum &+= try cam.withLatestFrame(maxWait: 1) { $0.sequence } ?? 0 }
        let b = omc_stop()
        XCTAssertEqual(cam.health.counters.frames, 35, "\(sum)")
        XCTAssertEqual(cam.health.counters.corrupt, 0)
        return (a, b)
    }

    func testV4L2FramePathYUYVAndNV12() throws {
        for f in [PixelFormat.yuyv, .nv12] {
            let (a, b) = try allocations(f, size: (64, 32))
            XCTAssertEqual(a + b, 0, "\(f): \(a + b) allocations in 30 frames")
        }
    }

    func testV4L2FramePathMJPEG() throws {
        let jpeg = try ImageFile.encodeJPEG(RGBImage(width: 48, height: 32, bytes: (0..<(48 * 32 * 3)).map { UInt8($0 % 251) }))
        let (a, b) = try allocations(.mjpeg, size: (48, 32)) { _, _, _, _, _, b in
            b.copyBytes(from: jpeg)
            return jpeg.count
        }
        // libjpeg-turbo makes 8 or 9 allocations per image here (its first-use paths vary by one):
        // bounded and not growing, so nothing of ours allocates per frame.
        XCTAssertLessThanOrEqual(abs(a - b), 2, "MJPEG allocations per 15 frames must not grow: \(a) then \(b)")
        XCTAssertLessThanOrEqual(max(a, b), 15 * 10, "more than libjpeg-turbo's own pools: \(a), \(b) in 15 frames")
    }

    func testSyntheticSource() throws {
        let s = SyntheticSource(width: 64, height: 32, fps: 30, clock: ManualClock())
        try s.open(); try s.start()
        _ = try s.withLatestFrame(maxWait: 1) { $0.sequence }
        omc_start()
        for _ in 0..<10 { _ = try s.withLatestFrame(maxWait: 1) { $0.sequence } }
        XCTAssertEqual(omc_stop(), 0)
    }
}

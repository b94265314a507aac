// The synthetic and image-file sources end to end: determinism, pacing and the newest-frame
// jump, the frame counter surviving JPEG, folder replay with a corrupt file skipped.
import Foundation
import XCTest
@testable import Capture

final class SyntheticSourceTests: XCTestCase {
    func testDeterministicBySeedAndCounterInPixels() throws {
        func frames(seed: UInt64) throws -> [[UInt8]] {
            let clock = ManualClock()
            let s = SyntheticSource(width: 96, height: 64, fps: 10, seed: seed, clock: clock)
            try s.open(); try s.start()
            var out: [[UInt8]] = []
            for k in 0..<4 {
                let got = try s.withLatestFrame(maxWait: 1) { f -> [UInt8] in
                    XCTAssertEqual(f.sequence, UInt64(k))
                    XCTAssertEqual(SyntheticSource.decodeCounter(f.image), UInt32(k))
                    XCTAssertEqual(f.width, 96); XCTAssertEqual(f.height, 64)
                    return f.image.bytes
                }
                out.append(try XCTUnwrap(got))
            }
            XCTAssertEqual(s.health.counters.frames, 4)
            XCTAssertEqual(s.health.counters.dropped, 0)
            XCTAssertEqual(clock.sleeps.count, 3) // frames 1...3 waited 0.1 s each
            return out
        }
        let a = try frames(seed: 7), b = try frames(seed: 7), c = try frames(seed: 8)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a[0], c[0])
        XCTAssertNotEqual(a[0], a[3], "the shapes move")
    }

    func testLateCallerGetsNewestAndCountsDrops() throws {
        let clock = ManualClock()
        let s = SyntheticSource(width: 64, height: 32, fps: 10, clock: clock)
        try s.open(); try s.start()
        _ = try s.withLatestFrame(maxWait: 1) { _ in }
        clock.advance(0.55) // frames 1...5 are due; 5 is newest
        let seq = try s.withLatestFrame(maxWait: 1) { $0.sequence }
        XCTAssertEqual(seq, 5)
        XCTAssertEqual(s.health.counters.dropped, 4)
        XCTAssertNil(try s.withLatestFrame(maxWait: 0.01) { $0.sequence }, "frame 6 is 0.05 s away")
    }

    func testCounterSurvivesJPEG() throws {
        let clock = ManualClock()
        let s = SyntheticSource(width: 320, height: 240, fps: 1, clock: clock)
        try s.open(); try s.start()
        clock.advance(Double(0xA5C3_0F17)) // late by that many frames: the newest is 0xA5C30F17
        let jpeg = try XCTUnwrap(try s.withLatestFrame(maxWait: 1) { f -> [UInt8] in
            XCTAssertEqual(f.sequence, 0xA5C3_0F17)
            return try ImageFile.encodeJPEG(f.image, quality: 75)
        })
        XCTAssertEqual(SyntheticSource.decodeCounter(try ImageFile.decode(jpeg, name: "pattern.jpg")), 0xA5C3_0F17)
    }
}

final class ImageFileSourceTests: XCTestCase {
    private func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "ocellus-capture-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    private func solid(_ w: Int, _ h: Int, _ v: UInt8) -> RGBImage {
        RGBImage(width: w, height: h, bytes: [UInt8](repeating: v, count: w * h * 3))
    }

    func testFolderLoopsAndSkipsBadFile() throws {
        let dir = try tempDir()
        try ImageFile.writeJPEG(solid(16, 8, 40), path: dir + "/a.jpg")
        try Data("not an image".utf8).write(to: URL(fileURLWithPath: dir + "/b.png"))
        try ImageFile.writeJPEG(solid(8, 8, 200), path: dir + "/c.jpeg")
        try Data("ignored".utf8).write(to: URL(fileURLWithPath: dir + "/notes.txt"))
        let clock = ManualClock()
        let src = ImageFileSource(path: dir, fps: 5, clock: clock)
        var errors: [String] = []
        src.health.onEvent = { if $0.isError { errors.append($0.reason) } }
        try src.open()
        XCTAssertEqual(src.files.map { ($0 as NSString).lastPathComponent }, ["a.jpg", "b.png", "c.jpeg"])
        try src.start()
        var sizes: [Int] = []
        for _ in 0..<6 {
            let w = try XCTUnwrap(try src.withLatestFrame(maxWait: 1) { f -> Int in
                XCTAssertEqual(Int(f.image[x: 1, y: 1].g), f.width == 16 ? 40 : 200, accuracy: 3)
                return f.width
            })
            sizes.append(w)
        }
        // Frames 0..5 ask for files a, b, c, a, b, c; b fails and falls through to c.
        XCTAssertEqual(sizes, [16, 8, 8, 16, 8, 8])
        XCTAssertEqual(src.health.counters.corrupt, 2)
        XCTAssertEqual(errors.count, 2)
        XCTAssertTrue(errors[0].contains("b.png"), errors[0])
    }

    func testSingleFileAndErrors() throws {
        let dir = try tempDir()
        try ImageFile.writeJPEG(solid(12, 10, 90), path: dir + "/one.jpg")
        let src = ImageFileSource(path: dir + "/one.jpg", fps: 2, clock: ManualClock())
        try src.open(); try src.start()
        for k in 0..<3 {
            XCTAssertEqual(try src.withLatestFrame(maxWait: 1) { [$0.width, $0.height, Int($0.sequence)] }, [12, 10, k])
        }
        XCTAssertThrowsError(try ImageFileSource(path: dir + "/nope.jpg").open()) {
            XCTAssertEqual($0 as? ImageSourceError, .missing(path: dir + "/nope.jpg"))
        }
        let empty = dir + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        XCTAssertThrowsError(try ImageFileSource(path: empty).open()) {
            XCTAssertEqual($0 as? ImageSourceError, .emptyFolder(path: empty))
        }
        let bad = dir + "/bad"
        try FileManager.default.createDirectory(atPath: bad, withIntermediateDirectories: true)
        try Data("junk".utf8).write(to: URL(fileURLWithPath: bad + "/x.jpg"))
        let badSrc = ImageFileSource(path: bad, clock: ManualClock())
        try badSrc.open(); try badSrc.start()
        XCTAssertThrowsError(try badSrc.withLatestFrame(maxWait: 1) { _ in }) { e in
            guard case ImageSourceError.noReadableImages(let p, let f)? = e as? ImageSourceError else { return XCTFail("\(e)") }
            XCTAssertEqual(p, bad); XCTAssertTrue(f[0].contains("x.jpg"), f[0])
        }
        // A single file that does not decode fails at open, naming it.
        XCTAssertThrowsError(try ImageFileSource(path: bad + "/x.jpg").open()) { XCTAssertTrue("\($0)".contains("x.jpg"), "\($0)") }
    }
}

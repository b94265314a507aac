// Latency percentiles, the health payload and its systemd status line.
import Foundation
import XCTest
@testable import Daemon

final class HealthTests: XCTestCase {
    func testPercentilesByNearestRankOverTheWindow() {
        var w = LatencyWindow(capacity: 100)
        XCTAssertNil(w.percentile(50))
        for i in 1...100 { w.record(Double(i) / 100) }
        XCTAssertEqual(w.percentile(50), 0.50)
        XCTAssertEqual(w.percentile(95), 0.95)
        XCTAssertEqual(w.percentile(100), 1.00)
        // The ring keeps only the last 100: 100 more samples of 2 s replace all.
        for _ in 0..<100 { w.record(2) }
        XCTAssertEqual(w.count, 100)
        XCTAssertEqual(w.percentile(50), 2)
    }

    func testHealthPayloadAndStatusLine() throws {
        let cam = CameraHealth(status: "online", fps: 4.9, dropped_frames: 3, reconnects: 1,
                               latency_s: ["caption": ["p50": 0.9, "p95": 1.4]], last_error: nil)
        let off = CameraHealth(status: "offline", fps: 0, dropped_frames: 0, reconnects: 5, latency_s: [:],
                               last_error: "/dev/video2: No such device")
        let h = HealthPayload(ts: 1, uptime_s: 60, rss_bytes: 400 << 20, queue_depth: 0, outbox_dropped: 0,
                              cameras: ["porch": cam, "garage": off], last_error: "reload rejected: cameras.porch.fps")
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: h.json()) as? [String: Any])
        XCTAssertEqual(obj["rss_bytes"] as? Int, 400 << 20)
        let cams = try XCTUnwrap(obj["cameras"] as? [String: [String: Any]])
        XCTAssertEqual(cams["garage"]?["last_error"] as? String, "/dev/video2: No such device")
        XCTAssertEqual(h.statusLine, "1/2 cameras online, p95 1.40 s, RSS 400 MiB, last error: reload rejected: cameras.porch.fps")
    }

    func testResidentSetIsPlausible() {
        let rss = residentSetBytes()
        XCTAssertGreaterThan(rss, 1 << 20)
        XCTAssertLessThan(rss, 64 << 30)
    }
}

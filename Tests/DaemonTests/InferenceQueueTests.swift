// The queue between cameras and the inference worker: bounded (one job per camera), latest frame
// wins while a job waits, tasks taken round-robin over cameras, buffers reused.
import Foundation
import XCTest
@testable import Capture
@testable import Daemon
import Florence2

final class InferenceQueueTests: XCTestCase {
    private func frame(_ seq: UInt64, value: UInt8, w: Int = 8, h: Int = 4) -> Frame {
        Frame(sequence: seq, timestamp: Double(seq), image: RGBImage(width: w, height: h, bytes: [UInt8](repeating: value, count: w * h * 3)))
    }

    private func task(_ name: String) -> TaskConfiguration {
        TaskConfiguration(name: name, task: .caption, text: nil, interval: 1, retain: nil)
    }

    func testNothingDueMakesNoJob() {
        let q = InferenceQueue()
        q.add(camera: "a")
        XCTAssertEqual(q.offer(camera: "a", frame: frame(1, value: 1), wallNow: 0, monotonicNow: 1) { [] }, .idle)
        XCTAssertEqual(q.depth, 0)
        XCTAssertNil(q.take(timeout: 0.01))
    }

    func testLatestFrameWinsWhileTheJobWaitsAndIsFixedOnceStarted() throws {
        let q = InferenceQueue()
        q.add(camera: "a")
        XCTAssertEqual(q.offer(camera: "a", frame: frame(1, value: 1), wallNow: 100, monotonicNow: 1) { [task("caption")] }, .queued)
        // A newer frame replaces the waiting one; a task falling due meanwhile joins it, once.
        XCTAssertEqual(q.offer(camera: "a", frame: frame(2, value: 2), wallNow: 101, monotonicNow: 2) { [task("od"), task("caption")] }, .replaced)
        XCTAssertEqual(q.depth, 2, "one job, two tasks: the queue holds one frame per camera")
        XCTAssertEqual(q.replacedFrames, 1)
        let (job, first) = try XCTUnwrap(q.take(timeout: 0.1))
        XCTAssertEqual(first.name, "caption")
        XCTAssertEqual(job.sequence, 2)
        XCTAssertEqual(job.image.bytes.first, 2, "the newest pixels")
        XCTAssertEqual(job.capturedWall, 101, accuracy: 1e-9)
        // Started: new frames are not taken and do not consume the schedule.
        var asked = false
        XCTAssertEqual(q.offer(camera: "a", frame: frame(3, value: 3), wallNow: 102, monotonicNow: 3) { asked = true; return [task("x")] }, .busy)
        XCTAssertFalse(asked, "a busy camera's tasks stay due")
        XCTAssertEqual(job.image.bytes.first, 2)
        q.finished(job)
        let (same, second) = try XCTUnwrap(q.take(timeout: 0.1))
        XCTAssertTrue(same === job)
        XCTAssertEqual(second.name, "od")
        q.finished(job)
        // Done: the next job reuses the buffer.
        XCTAssertEqual(q.offer(camera: "a", frame: frame(4, value: 4), wallNow: 103, monotonicNow: 4) { [task("caption")] }, .queued)
        let (next, _) = try XCTUnwrap(q.take(timeout: 0.1))
        XCTAssertTrue(next.image === job.image, "one buffer per camera, reused")
        XCTAssertEqual(next.image.bytes.first, 4)
    }

    func testTasksAreTakenRoundRobinOverCameras() throws {
        let q = InferenceQueue()
        for c in ["a", "b", "c"] { q.add(camera: c) }
        _ = q.offer(camera: "a", frame: frame(1, value: 1), wallNow: 0, monotonicNow: 1) { [task("t1"), task("t2"), task("t3")] }
        _ = q.offer(camera: "b", frame: frame(1, value: 1), wallNow: 0, monotonicNow: 1) { [task("t1")] }
        _ = q.offer(camera: "c", frame: frame(1, value: 1), wallNow: 0, monotonicNow: 1) { [task("t1"), task("t2")] }
        var order: [String] = []
        while let (job, t) = q.take(timeout: 0.01) {
            order.append("\(job.camera).\(t.name)")
            q.finished(job)
        }
        XCTAssertEqual(order, ["a.t1", "b.t1", "c.t1", "a.t2", "c.t2", "a.t3"])
    }

    func testRemovingACameraDropsItsWaitingJob() {
        let q = InferenceQueue()
        q.add(camera: "a")
        _ = q.offer(camera: "a", frame: frame(1, value: 1), wallNow: 0, monotonicNow: 1) { [task("t1")] }
        q.remove(camera: "a")
        XCTAssertEqual(q.depth, 0)
        XCTAssertNil(q.take(timeout: 0.01))
        XCTAssertEqual(q.offer(camera: "a", frame: frame(2, value: 1), wallNow: 0, monotonicNow: 2) { [task("t1")] }, .idle, "unknown camera")
    }

    func testDropPendingForgetsOldTasksAfterAReload() throws {
        let q = InferenceQueue()
        q.add(camera: "a")
        _ = q.offer(camera: "a", frame: frame(1, value: 1), wallNow: 0, monotonicNow: 1) { [task("old")] }
        q.dropPending(camera: "a")
        XCTAssertNil(q.take(timeout: 0.01))
        _ = q.offer(camera: "a", frame: frame(2, value: 1), wallNow: 0, monotonicNow: 2) { [task("new")] }
        XCTAssertEqual(try XCTUnwrap(q.take(timeout: 0.1)).task.name, "new")
    }

    func testStopWakesAWaitingWorker() {
        let q = InferenceQueue()
        let done = expectation(description: "take returns")
        Thread.detachNewThread {
            XCTAssertNil(q.take(timeout: 30))
            done.fulfill()
        }
        Thread.sleep(forTimeInterval: 0.05)
        q.stop()
        wait(for: [done], timeout: 5)
    }
}

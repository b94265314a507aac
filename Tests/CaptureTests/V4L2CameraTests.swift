// V4L2Camera against the scripted FakeV4L2Device: negotiation and read-back, YUYV/NV12/MJPEG to
// RGB against a plain BT.601 reference, ring draining and the newest frame, sequence gaps, buffer
// errors, unplug → backoff → recovery, stall → reopen, and the open errors. All instant (ManualClock).
import CV4L2Shim
import Glibc
import XCTest
@testable import Capture

final class V4L2CameraTests: XCTestCase {
    private let dev = "/dev/v4l/by-id/usb-Fake_Cam_0001-video-index0"

    private func device(_ clock: ManualClock, _ formats: [FakeV4L2Device.Format]? = nil) -> FakeV4L2Device {
        FakeV4L2Device(clock: clock, formats: formats ?? [
            .init(format: .mjpeg, name: "Motion-JPEG", sizes: [(640, 480), (1280, 720)]),
            .init(format: .yuyv, name: "YUYV 4:2:2", sizes: [(16, 8), (320, 240), (640, 480)], rates: [30, 15]),
            .init(format: .rgb24, name: "RGB3", sizes: [(16, 8), (640, 480)], emulated: true),
        ])
    }

    private func camera(_ fake: FakeV4L2Device, _ clock: ManualClock, width: Int = 16, height: Int = 8,
                        formats: [PixelFormat] = PixelFormat.convertible, stall: Double = 5) -> V4L2Camera {
        V4L2Camera(CameraConfig(device: dev, width: width, height: height, fps: 30, formats: formats, stallTimeout: stall), io: fake, clock: clock)
    }

    /// BT.601 limited range, in floating point (the obvious formula the integer converter must match to ±1).
    private func ref(_ y: Int, _ u: Int, _ v: Int) -> [UInt8] {
        let c = 1.164 * Double(y - 16), d = Double(u - 128), e = Double(v - 128)
        return [c + 1.596 * e, c - 0.392 * d - 0.813 * e, c + 2.017 * d].map { UInt8(max(0, min(255, $0.rounded()))) }
    }

    private func assertClose(_ a: [UInt8], _ b: [UInt8], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        let worst = zip(a, b).map { abs(Int($0) - Int($1)) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 1, what, file: file, line: line)
    }

    // MARK: - Negotiation

    func testNegotiationPrefersNativeAndReadsBackGrant() throws {
        let clock = ManualClock(), fake = device(clock)
        fake.grantBuffers = 2
        let cam = V4L2Camera(CameraConfig(device: dev, width: 600, height: 450, fps: 12.4), io: fake, clock: clock)
        try cam.open()
        let n = try XCTUnwrap(cam.negotiated)
        // YUYV is the cheapest native format; the driver rounds 600x450 to 640x480 and 12.4 fps to 12.
        XCTAssertEqual(n.format, .yuyv)
        XCTAssertEqual([n.width, n.height, n.bytesPerLine, n.buffers], [640, 480, 1280, 2])
        XCTAssertEqual(n.fps, 12)
        XCTAssertEqual(n.card, "Fake Camera")
        XCTAssertEqual(fake.sFmtRequests.count, 1)
        XCTAssertEqual(cam.offers.map(\.description), ["MJPG [640x480 1280x720]", "YUYV [16x8@30/15 320x240@30/15 640x480@30/15]", "RGB3 (emulated) [16x8 640x480]"])
        XCTAssertEqual(fake.mappedCount, 2)
        cam.close()
        XCTAssertEqual(fake.mappedCount, 0)
        XCTAssertEqual(fake.openFds, 0)
    }

    func testDriverSubstitutionAndEmulatedLast() throws {
        let clock = ManualClock(), fake = device(clock)
        // Asking for MJPEG first: the driver hands YUYV instead (vivid does this); YUYV is acceptable.
        fake.substitute = [.mjpeg: .yuyv]
        let cam = camera(fake, clock, width: 640, height: 480, formats: [.mjpeg, .yuyv])
        try cam.open()
        XCTAssertEqual(cam.negotiated?.format, .yuyv)
        cam.close()
        // Only RGB24 acceptable: the emulated format is used when nothing native fits.
        let cam2 = camera(fake, clock, formats: [.rgb24])
        try cam2.open()
        XCTAssertEqual(cam2.negotiated?.format, .rgb24)
        cam2.close()
        // A substituted format that is not acceptable is refused.
        let fake3 = device(clock)
        fake3.substitute = [.mjpeg: .yuyv]
        XCTAssertThrowsError(try camera(fake3, clock, formats: [.mjpeg]).open()) {
            guard case CameraError.formatNotOffered? = $0 as? CameraError else { return XCTFail("\($0)") }
        }
        XCTAssertEqual(fake3.openFds, 0)
    }

    func testFormatNotOfferedNamesDeviceAndOffers() throws {
        let clock = ManualClock(), fake = device(clock)
        XCTAssertThrowsError(try camera(fake, clock, formats: [.nv12]).open()) { e in
            let msg = "\(e)"
            XCTAssertTrue(msg.contains(self.dev), msg)
            XCTAssertTrue(msg.contains("NV12"), msg)
            XCTAssertTrue(msg.contains("YUYV [16x8@30/15 320x240@30/15 640x480@30/15]"), msg)
            XCTAssertTrue(msg.contains("MJPG"), msg)
        }
        XCTAssertEqual(fake.openFds, 0)
        XCTAssertEqual(fake.mappedCount, 0)
    }

    func testBusyMissingAndNotACaptureDevice() {
        let clock = ManualClock()
        let busy = device(clock); busy.openErrno = EBUSY
        XCTAssertThrowsError(try camera(busy, clock).open()) {
            XCTAssertEqual($0 as? CameraError, .busy(device: self.dev))
            XCTAssertTrue("\($0)".contains("busy"))
        }
        let missing = device(clock); missing.openErrno = ENOENT
        XCTAssertThrowsError(try camera(missing, clock).open()) {
            guard case CameraError.missing(let d, _)? = $0 as? CameraError else { return XCTFail("\($0)") }
            XCTAssertEqual(d, self.dev)
            XCTAssertTrue("\($0)".contains("no such video device"))
        }
        let meta = device(clock); meta.caps = ocv_V4L2_CAP_STREAMING // a UVC metadata-like node
        XCTAssertThrowsError(try camera(meta, clock).open()) {
            guard case CameraError.notCaptureDevice(let d, let card, _)? = $0 as? CameraError else { return XCTFail("\($0)") }
            XCTAssertEqual(d, self.dev); XCTAssertEqual(card, "Fake Camera")
        }
        XCTAssertEqual(meta.openFds, 0)
        let noBuf = device(clock); noBuf.grantBuffers = 0
        XCTAssertThrowsError(try camera(noBuf, clock).open()) { XCTAssertEqual($0 as? CameraError, .noBuffers(device: self.dev)) }
    }

    // MARK: - Conversion

    /// YUYV: Y from the pixel position and sequence, U and V from the pair and row.
    private func fillYUYV(_ seq: UInt32, _ w: Int, _ h: Int, _ rowBytes: Int, _ b: UnsafeMutableRawBufferPointer) -> Int {
        for y in 0..<h {
            for x in stride(from: 0, to: w, by: 2) {
                let o = y * rowBytes + x * 2
                b[o] = UInt8((x * 13 + y * 7 + Int(seq)) % 256)
                b[o + 1] = UInt8((x * 9 + y * 31) % 256)
                b[o + 2] = UInt8(((x + 1) * 13 + y * 7 + Int(seq)) % 256)
                b[o + 3] = UInt8((x * 17 + y * 5 + 60) % 256)
            }
        }
        return rowBytes * h
    }

    func testYUYVToRGBMatchesReference() throws {
        let clock = ManualClock(), fake = device(clock)
        fake.fill = { seq, _, w, h, s, b in self.fillYUYV(seq, w, h, s, b) }
        fake.steps = [.frames(1)]
        let cam = camera(fake, clock, formats: [.yuyv])
        try cam.open(); try cam.start()
        let got = try XCTUnwrap(try cam.withLatestFrame(maxWait: 1) { f -> [UInt8] in
            XCTAssertEqual([f.width, f.height], [16, 8])
            return f.image.bytes
        })
        var want: [UInt8] = []
        for y in 0..<8 {
            for x in 0..<16 {
                let x0 = x & ~1
                want += ref((x * 13 + y * 7) % 256, (x0 * 9 + y * 31) % 256, (x0 * 17 + y * 5 + 60) % 256)
            }
        }
        assertClose(got, want, "YUYV")
    }

    func testNV12ToRGBMatchesReference() throws {
        let clock = ManualClock()
        let fake = device(clock, [.init(format: .nv12, name: "Y/CbCr 4:2:0", sizes: [(12, 6)])])
        fake.fill = { _, _, w, h, s, b in
            for y in 0..<h { for x in 0..<w { b[y * s + x] = UInt8((x * 19 + y * 23 + 16) % 256) } }
            for y in 0..<(h / 2) { for x in 0..<w { b[s * h + y * s + x] = UInt8((x * 37 + y * 11 + 3) % 256) } }
            return s * h * 3 / 2
        }
        fake.steps = [.frames(1)]
        let cam = camera(fake, clock, width: 12, height: 6)
        try cam.open(); try cam.start()
        let got = try XCTUnwrap(try cam.withLatestFrame(maxWait: 1) { $0.image.bytes })
        var want: [UInt8] = []
        for y in 0..<6 {
            for x in 0..<12 {
                let x0 = x & ~1, cy = y / 2
                want += ref((x * 19 + y * 23 + 16) % 256, (x0 * 37 + cy * 11 + 3) % 256, ((x0 + 1) * 37 + cy * 11 + 3) % 256)
            }
        }
        assertClose(got, want, "NV12")
    }

    func testMJPEGDecodesAndBadFramesAreDropped() throws {
        let clock = ManualClock()
        let fake = device(clock, [.init(format: .mjpeg, name: "Motion-JPEG", sizes: [(32, 16)])])
        let pattern = SyntheticSource(width: 32, height: 16, fps: 1, seed: 3, clock: ManualClock())
        try pattern.open(); try pattern.start()
        let jpeg = try XCTUnwrap(try pattern.withLatestFrame(maxWait: 1) { try ImageFile.encodeJPEG($0.image) })
        let expected = try ImageFile.decode(jpeg, name: "expected.jpg").bytes
        fake.fill = { seq, _, _, _, _, b in
            if seq == 1 { b[0] = 0; return 100 } // not a JPEG
            b.copyBytes(from: jpeg)
            return jpeg.count
        }
        fake.steps = [.frames(1), .frames(1), .frames(1)]
        let cam = camera(fake, clock, width: 32, height: 16)
        try cam.open(); try cam.start()
        XCTAssertEqual(try cam.withLatestFrame(maxWait: 1) { $0.image.bytes }, expected)
        let seq = try cam.withLatestFrame(maxWait: 1) { $0.sequence }
        XCTAssertEqual(seq, 2, "frame 1 did not decode and was dropped")
        XCTAssertEqual(cam.health.counters.corrupt, 1)
        XCTAssertTrue(cam.health.lastEvent?.reason.contains("SOI") ?? false)
    }

    // MARK: - Ring

    func testNewestFrameDrainsRingAndCountsGaps() throws {
        let clock = ManualClock(), fake = device(clock)
        fake.steps = [.frames(3), .frames(6), .frames(1), .frames(1, gapBefore: 5)]
        let cam = camera(fake, clock)
        try cam.open(); try cam.start()
        XCTAssertEqual(cam.negotiated?.buffers, 4)
        func next() throws -> UInt64 {
            try XCTUnwrap(try cam.withLatestFrame(maxWait: 1) { f -> UInt64 in
                XCTAssertEqual(fake.heldByCaller, 0, "a driver buffer is held while the caller runs")
                XCTAssertEqual(f.timestamp, clock.now(), accuracy: 2e-6, "the driver's monotonic timestamp")
                return f.sequence
            })
        }
        XCTAssertEqual(try next(), 2)  // frames 0, 1, 2 ready: 2 handed out, 0 and 1 requeued unseen
        XCTAssertEqual(cam.health.counters.skipped, 2)
        XCTAssertEqual(cam.health.counters.dropped, 0)
        XCTAssertEqual(try next(), 6)  // 6 frames into 4 buffers: 3...6 captured, 7 and 8 lost by the driver
        XCTAssertEqual(cam.health.counters.skipped, 5)
        XCTAssertEqual(try next(), 9)  // the gap 6 → 9 counts 7 and 8 as dropped
        XCTAssertEqual(cam.health.counters.dropped, 2)
        XCTAssertEqual(try next(), 15) // the driver skipped 10...14
        XCTAssertEqual(cam.health.counters.dropped, 7)
        XCTAssertEqual(cam.health.counters.frames, 4)
        XCTAssertEqual(cam.health.state, .online)
        XCTAssertNil(try cam.withLatestFrame(maxWait: 0.5) { $0.sequence }, "no frames scripted: times out")
    }

    func testBufferErrorFlagDropsFrameAndKeepsStreaming() throws {
        let clock = ManualClock(), fake = device(clock)
        fake.steps = [.frames(1, flags: ocv_V4L2_BUF_FLAG_ERROR), .frames(1)]
        let cam = camera(fake, clock)
        try cam.open(); try cam.start()
        XCTAssertEqual(try cam.withLatestFrame(maxWait: 1) { $0.sequence }, 1)
        XCTAssertEqual(cam.health.counters.corrupt, 1)
        XCTAssertEqual(cam.health.counters.errors, 1)
        XCTAssertEqual(cam.health.state, .online)
        XCTAssertEqual(fake.opens, 1, "no reopen for a flagged buffer")
        // Nothing but flagged frames for longer than the stall timeout is a stall.
        fake.steps = [.frames(200, flags: ocv_V4L2_BUF_FLAG_ERROR), .frames(1)]
        XCTAssertEqual(try cam.withLatestFrame(maxWait: 20) { $0.sequence }, 202)
        XCTAssertEqual(cam.health.counters.stalls, 1)
        XCTAssertEqual(cam.health.counters.corrupt, 5)
        XCTAssertEqual(cam.health.counters.dropped, 0, "the gap check restarts after the reopen")
        XCTAssertEqual(fake.opens, 2)
    }

    // MARK: - Recovery

    func testUnplugBacksOffThenRecoversAndRenegotiates() throws {
        let clock = ManualClock(), fake = device(clock)
        fake.steps = [.frames(1), .unplug(reopenFailures: 6), .frames(2)]
        let cam = camera(fake, clock)
        var states: [SourceState] = []
        cam.health.onEvent = { e in if !e.isError { states.append(e.state) } }
        try cam.open(); try cam.start()
        XCTAssertEqual(try cam.withLatestFrame(maxWait: 1) { $0.sequence }, 0)
        // Unplugged: a short wait returns nothing and leaves everything released.
        XCTAssertNil(try cam.withLatestFrame(maxWait: 0.5) { $0.sequence })
        XCTAssertEqual(cam.health.state, .offline)
        XCTAssertTrue(cam.health.lastEvent?.reason.contains("revents 0x1a") ?? false, "\(String(describing: cam.health.lastEvent))")
        XCTAssertEqual(fake.mappedCount, 0)
        XCTAssertEqual(fake.openFds, 0)
        // A long wait rides out six failed reopens with doubling delays, then streams again.
        let seq = try cam.withLatestFrame(maxWait: 1000) { $0.sequence }
        XCTAssertEqual(seq, 2)
        XCTAssertEqual(clock.sleeps, [0.5, 0.5, 2, 4, 8, 16, 30, 30])
        XCTAssertEqual(fake.opens, 8)
        XCTAssertEqual(fake.sFmtRequests.count, 2, "renegotiated on reopen")
        XCTAssertEqual(cam.health.counters.reconnects, 1)
        XCTAssertEqual(cam.health.state, .online)
        XCTAssertEqual(states.first, .online)
        XCTAssertEqual(states.last, .online)
        XCTAssertEqual(states.filter { $0 == .reconnecting }.count, 7)
        XCTAssertEqual(fake.mappedCount, 4)
        // Backoff restarts at 1 s after a recovery.
        fake.steps = [.dqbufError(EIO), .frames(1)]
        clock.sleeps = []
        XCTAssertEqual(try cam.withLatestFrame(maxWait: 100) { $0.sequence }, 3)
        XCTAssertEqual(clock.sleeps, [1])
        XCTAssertEqual(cam.health.counters.reconnects, 2)
        XCTAssertTrue(cam.health.counters.errors >= 8)
    }

    func testStallReopensAtOnce() throws {
        let clock = ManualClock(), fake = device(clock)
        fake.steps = [.frames(1), .silence, .frames(1)]
        let cam = camera(fake, clock, stall: 2)
        var reasons: [String] = []
        cam.health.onEvent = { if $0.state == .stalled { reasons.append($0.reason) } }
        try cam.open(); try cam.start()
        XCTAssertEqual(try cam.withLatestFrame(maxWait: 1) { $0.sequence }, 0)
        let t0 = clock.now()
        XCTAssertEqual(try cam.withLatestFrame(maxWait: 10) { $0.sequence }, 1)
        XCTAssertEqual(cam.health.counters.stalls, 1)
        XCTAssertEqual(cam.health.counters.reconnects, 1)
        XCTAssertEqual(reasons, ["no frame for 2.0 s"])
        XCTAssertEqual(fake.opens, 2)
        XCTAssertEqual(clock.sleeps, [], "a stall reopens without waiting")
        XCTAssertLessThan(clock.now() - t0, 2.1)
        cam.close()
        XCTAssertEqual(fake.openFds, 0)
        XCTAssertEqual(fake.mappedCount, 0)
        XCTAssertEqual(cam.health.state, .closed)
    }
}

final class SyscallTests: XCTestCase {
    func testEINTRIsRetriedAndErrnoBecomesTypedError() {
        var calls = 0
        let rc = try? retryingEINTR("fake") { () -> Int32 in
            calls += 1
            if calls < 3 { errno = EINTR; return -1 }
            return 7
        }
        XCTAssertEqual(rc, 7)
        XCTAssertEqual(calls, 3)
        XCTAssertThrowsError(try retryingEINTR("close 99") { Glibc.close(-1) }) { e in
            XCTAssertEqual(e as? SystemError, SystemError(call: "close 99", errno: EBADF))
            XCTAssertTrue("\(e)".hasPrefix("close 99: Bad file descriptor"), "\(e)")
        }
        XCTAssertEqual(V4L2Camera.ioctlName(ocv_VIDIOC_DQBUF), "VIDIOC_DQBUF")
    }
}

final class V4L2CameraWaitTests: XCTestCase {
    func testUnboundedWaitPollsInSlices() throws {
        let clock = ManualClock()
        let fake = FakeV4L2Device(clock: clock, formats: [.init(format: .yuyv, name: "YUYV", sizes: [(16, 8)])])
        fake.steps = [.silence, .silence, .frames(1)]
        let cam = V4L2Camera(CameraConfig(device: "/dev/video0", width: 16, height: 8, stallTimeout: 60), io: fake, clock: clock)
        try cam.open(); try cam.start()
        XCTAssertEqual(try cam.withLatestFrame(maxWait: .infinity) { $0.sequence }, 0)
        XCTAssertEqual(fake.log.filter { $0 == "poll" }.count, 3)
        XCTAssertEqual(cam.health.counters.stalls, 0)
    }
}

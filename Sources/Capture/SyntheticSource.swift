// SyntheticSource: a test pattern for demos and tests (in the spirit of vivid's test pattern
// generator): moving coloured shapes on a gradient, with the frame number written into the pixels.

// MARK: - SyntheticSource

/// Moving rectangles and discs on a gradient background, deterministic by `seed`, paced at `fps`.
/// The top band (`counterBandHeight` rows) encodes the frame number in 32 black/white cells, most
/// significant bit first; `SyntheticSource.decodeCounter` reads it back (robust to JPEG).
public final class SyntheticSource: FrameSource {
    /// Always "pattern".
    public let name = "pattern"
    /// State and counters.
    public let health: SourceHealth
    /// Frame size.
    public let width: Int, height: Int
    /// Frames per second.
    public let fps: Double
    /// The seed that fixes colours, sizes and paths.
    public let seed: UInt64
    private let clock: CaptureClock
    private let image: RGBImage
    private var pacer: Pacer
    private var shapes: [Shape] = []
    private var background: (UInt8, UInt8, UInt8) = (0, 0, 0)
    private var started = false

    /// Rows at the top that hold the frame counter.
    public var counterBandHeight: Int { max(4, height / 16) }

    private struct Shape {
        var disc: Bool
        var w: Int, h: Int
        var x0: Double, y0: Double, vx: Double, vy: Double // start (px) and speed (px per frame)
        var color: (UInt8, UInt8, UInt8)
    }

    /// A `width`×`height` pattern at `fps`; `width` ≥ 32 and `height` ≥ 16.
    public init(width: Int = 640, height: Int = 480, fps: Double = 10, seed: UInt64 = 1, clock: CaptureClock = MonotonicClock()) {
        precondition(width >= 32 && height >= 16, "pattern size \(width)x\(height) is below 32x16")
        self.width = width
        self.height = height
        self.fps = fps
        self.seed = seed
        self.clock = clock
        health = SourceHealth(clock: clock)
        image = RGBImage(width: width, height: height)
        pacer = Pacer(fps: fps)
    }

    /// Chooses the shapes and colours from the seed.
    public func open() throws {
        var rng = SplitMix64(seed: seed)
        func byte() -> UInt8 { UInt8(truncatingIfNeeded: rng.next() >> 56) }
        background = (byte() / 2, byte() / 2, byte() / 2)
        shapes = (0..<5).map { i in
            let w = max(4, width / 8 + Int(rng.next() % UInt64(max(1, width / 6))))
            let h = max(4, height / 8 + Int(rng.next() % UInt64(max(1, height / 6))))
            let speed = 1.0 + Double(rng.next() % 600) / 100
            let angle = Double(rng.next() % 6283) / 1000
            return Shape(disc: i % 2 == 1, w: w, h: h,
                         x0: Double(rng.next() % UInt64(width)), y0: Double(rng.next() % UInt64(height)),
                         vx: speed * cosApprox(angle), vy: speed * sinApprox(angle),
                         color: (byte() | 0x40, byte() | 0x40, byte() | 0x40))
        }
    }

    /// Starts the clock: frame 0 is due now.
    public func start() throws {
        pacer.start = clock.now()
        pacer.next = 0
        started = true
        health.transition(.online)
    }

    /// Renders the newest due frame (waiting for it up to `maxWait`) and calls `body` with it.
    public func withLatestFrame<R>(maxWait: Double, _ body: (Frame) throws -> R) throws -> R? {
        precondition(started, "SyntheticSource.withLatestFrame before start()")
        guard let (seq, due) = pacer.take(clock: clock, maxWait: maxWait, dropped: &health.counters.dropped) else { return nil }
        render(seq)
        health.counters.frames += 1
        return try body(Frame(sequence: seq, timestamp: due, image: image))
    }

    /// Stops.
    public func close() {
        started = false
        health.transition(.closed)
    }

    // MARK: - Rendering

    /// Draws frame `seq` into the reused image.
    func render(_ seq: UInt64) {
        let w = width, h = height, band = counterBandHeight
        image.withMutableRGBBytes { px in
            // Background: the seed's colour, shaded down the rows.
            for y in 0..<h {
                let shade = UInt8(y * 64 / h)
                let r = background.0 &+ shade, g = background.1 &+ shade / 2, b = background.2 &+ (63 - shade)
                var p = y * w * 3
                for _ in 0..<w { px[p] = r; px[p + 1] = g; px[p + 2] = b; p += 3 }
            }
            // Shapes: each bounces between the edges (a triangle wave of its straight path).
            let t = Double(seq)
            for k in 0..<shapes.count {
                let s = shapes[k]
                let cx = bounce(s.x0 + s.vx * t, Double(w - s.w)), cy = bounce(s.y0 + s.vy * t, Double(h - s.h))
                let x0 = Int(cx), y0 = max(band, Int(cy))
                for y in y0..<min(h, y0 + s.h) {
                    for x in x0..<min(w, x0 + s.w) {
                        if s.disc {
                            let dx = 2 * (x - x0) - s.w + 1, dy = 2 * (y - Int(cy)) - s.h + 1
                            if dx * dx * s.h * s.h + dy * dy * s.w * s.w > s.w * s.w * s.h * s.h { continue }
                        }
                        let p = (y * w + x) * 3
                        px[p] = s.color.0; px[p + 1] = s.color.1; px[p + 2] = s.color.2
                    }
                }
            }
            // Counter: 32 cells, bit 31 first; white = 1.
            for y in 0..<band {
                for x in 0..<w {
                    let cell = x * 32 / w
                    let v: UInt8 = (UInt32(truncatingIfNeeded: seq) >> (31 - UInt32(cell))) & 1 == 1 ? 255 : 0
                    let p = (y * w + x) * 3
                    px[p] = v; px[p + 1] = v; px[p + 2] = v
                }
            }
        }
    }

    /// The frame number drawn in `image`'s top band (the centre of each cell, thresholded at mid-grey).
    public static func decodeCounter(_ image: RGBImage) -> UInt32 {
        let band = max(4, image.height / 16), y = band / 2
        var v: UInt32 = 0
        for cell in 0..<32 {
            let x = (2 * cell + 1) * image.width / 64
            let p = image[x: x, y: y]
            v = v << 1 | ((Int(p.r) + Int(p.g) + Int(p.b)) > 3 * 128 ? 1 : 0)
        }
        return v
    }
}

// MARK: - Helpers

/// `x` folded into 0...limit as a ball bouncing between the walls would be.
private func bounce(_ x: Double, _ limit: Double) -> Double {
    guard limit > 0 else { return 0 }
    let period = 2 * limit
    var m = x.truncatingRemainder(dividingBy: period)
    if m < 0 { m += period }
    return m <= limit ? m : period - m
}

/// sin and cos without Foundation, good to 1e-3 for the shape directions (Taylor series after
/// reducing to -π...π).
private func sinApprox(_ a: Double) -> Double {
    var x = a.truncatingRemainder(dividingBy: 2 * Double.pi)
    if x > Double.pi { x -= 2 * Double.pi }
    let x2 = x * x
    return x * (1 - x2 / 6 * (1 - x2 / 20 * (1 - x2 / 42 * (1 - x2 / 72 * (1 - x2 / 110)))))
}
private func cosApprox(_ a: Double) -> Double { sinApprox(a + Double.pi / 2) }

/// SplitMix64, the seeded generator behind the pattern.
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
